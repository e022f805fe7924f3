using Grpc.Core;
using MyDvpn.Protocol.Control;
using MyDvpn.SuperNode.Exits;
using MyDvpn.SuperNode.Sessions;
using static MyDvpn.SuperNode.Tests.Sessions.Flows.SessionStates;

namespace MyDvpn.SuperNode.Tests.Sessions.Flows;

/// <summary>A client's exit assignment, from its request to its release, as pure decisions.</summary>
public sealed class ExitAssignmentTests
{
    private static readonly DateTimeOffset Now = T0 + TimeSpan.FromSeconds(10);

    [Fact]
    public void A_request_is_persisted_and_the_exit_region_asked()
    {
        var decision = Attached(Enrolled()).Decide(new RequestExit(PeerId, ExitRegion, ClientKey), Now);

        var requested = Assert.IsType<ExitRequested>(Assert.Single(decision.Events));
        Assert.Equal(("new-id", ExitRegion), (requested.AssignmentId, requested.Region));
        var ask = decision.Effect<SessionEffect.AllocateExit>().Request;
        Assert.Equal(("new-id", ExitRegion, PeerId, Region), (ask.AssignmentId, ask.Region, ask.ClientPeerId, ask.ClientRegion));
        Assert.Equal(ExitPhase.Requested, decision.State.Exit!.Phase);
    }

    [Theory]
    [InlineData(PeerRole.Exit, RefusalReason.NotAnExitClient, StatusCode.PermissionDenied)]
    [InlineData(PeerRole.Client, RefusalReason.MalformedMessage, StatusCode.InvalidArgument)]
    public void A_request_the_session_cannot_take_is_refused_with_the_catalogues_status(PeerRole role, RefusalReason reason, StatusCode status)
    {
        var key = role == PeerRole.Client ? new byte[5] : ClientKey;

        var decision = Attached(Enrolled(role)).Decide(new RequestExit(PeerId, ExitRegion, key), Now);

        Assert.Empty(decision.Events);
        var failed = decision.Effect<SessionEffect.SendToPeer>().Message.ExitRequestFailed;
        Assert.Equal((reason, (int)status, ExitRegion), (failed.Reason, failed.GrpcStatus, failed.Region));
    }

    [Fact]
    public void Without_exit_allocation_a_request_is_refused_as_unavailable()
    {
        var decision = Attached(Enrolled(config: Config(exits: false))).Decide(new RequestExit(PeerId, ExitRegion, ClientKey), Now);

        Assert.Equal(RefusalReason.Unavailable, decision.Effect<SessionEffect.SendToPeer>().Message.ExitRequestFailed.Reason);
        Assert.Empty(decision.Events);
    }

    [Fact]
    public void An_allocated_exit_is_persisted_with_the_clients_setup_exit_which_is_delivered()
    {
        var requested = Attached(Enrolled()).Decide(new RequestExit(PeerId, ExitRegion, ClientKey), Now).State;
        var assignment = Assignment with { AssignmentId = "new-id" };

        var decision = requested.Decide(new AllocationFinished("new-id", new ExitAllocationResult.Allocated(assignment)), Now);

        Assert.IsType<ExitAssigned>(decision.Events[0]);
        Assert.IsType<CommandIssued>(decision.Events[1]);
        var setup = Assert.Single(decision.Sent());
        Assert.Equal((ExitSide.Client, "exit-1", "100.96.0.2/32"), (setup.SetupExit.Side, setup.SetupExit.CounterpartPeerId, setup.SetupExit.TunnelAddresses[0]));
        Assert.Equal(Now + ExitConfig.ClientSetupTimeout, setup.Deadline.ToDateTimeOffset());
        Assert.Equal((ExitPhase.SettingUp, setup.CommandId), (decision.State.Exit!.Phase, decision.State.Exit.SetupCommandId));
    }

    [Fact]
    public void A_refusal_is_persisted_and_told_and_a_call_that_gave_up_releases_what_the_region_may_have_done()
    {
        var requested = Attached(Enrolled()).Decide(new RequestExit(PeerId, ExitRegion, ClientKey), Now).State;

        var decision = requested.Decide(new AllocationFinished("new-id",
            new ExitAllocationResult.Refused(RefusalReason.RegionUnreachable, "no answer")), Now);

        Assert.IsType<ExitRequestRefused>(Assert.Single(decision.Events));
        Assert.Null(decision.State.Exit);
        Assert.False(decision.Effect<SessionEffect.ReleaseExit>().Tracked);
        var failed = decision.Effect<SessionEffect.SendToPeer>().Message.ExitRequestFailed;
        Assert.Equal((RefusalReason.RegionUnreachable, (int)StatusCode.Unavailable), (failed.Reason, failed.GrpcStatus));
    }

    [Fact]
    public void An_exit_allocated_after_the_request_was_given_up_is_released_at_once()
    {
        var decision = Attached(Enrolled()).Decide(new AllocationFinished("gone", new ExitAllocationResult.Allocated(Assignment)), Now);

        var release = decision.Effect<SessionEffect.ReleaseExit>();
        Assert.Equal(("gone", ExitRegion, false), (release.Request.AssignmentId, release.Request.Region, release.Tracked));
        Assert.Empty(decision.Events);
    }

    [Fact]
    public void A_client_that_fails_its_setup_exit_is_told_and_both_halves_are_rolled_back()
    {
        var decision = SettingUp().Decide(new CommandAnswered(PeerId, Failed(SetupId, "wg0 is missing")), Now);

        Assert.Equal(ExitPhase.Releasing, decision.State.Exit!.Phase);
        var failed = decision.Effect<SessionEffect.SendToPeer>().Message.ExitRequestFailed;
        Assert.Equal((RefusalReason.ExitSetupFailed, (int)StatusCode.Unavailable), (failed.Reason, failed.GrpcStatus));
        Assert.Contains("wg0 is missing", failed.Detail);
        Assert.True(decision.Effect<SessionEffect.ReleaseExit>().Tracked);
        var remove = Assert.Single(decision.Sent()).RemoveExit;
        Assert.Equal((AssignmentId, ExitSide.Client), (remove.AssignmentId, remove.Side));
    }

    [Fact]
    public void A_release_the_region_did_not_confirm_is_retried_and_a_confirmed_one_completes()
    {
        var releasing = ActiveExit().Decide(new ClientReleasesExit(PeerId, AssignmentId), Now).State;

        var unconfirmed = releasing.Decide(new ReleaseFinished(AssignmentId, "no SuperNode answered"), Now);
        var retry = unconfirmed.Effect<SessionEffect.StartTimer>();
        Assert.Equal((ExitAssignment.ReleaseTimer, ExitConfig.ReleaseRetry, RetryRelease.Instance), (retry.Key, retry.Delay, retry.Message));
        Assert.True(releasing.Decide(RetryRelease.Instance, Now).Effect<SessionEffect.ReleaseExit>().Tracked);

        var confirmed = releasing.Decide(new ReleaseFinished(AssignmentId, null), Now);
        Assert.IsType<ExitReleaseCompleted>(Assert.Single(confirmed.Events));
        Assert.Null(confirmed.State.Exit);
    }

    [Fact]
    public void A_client_release_removes_its_half_and_closes_its_relay_legs()
    {
        var decision = ActiveExit().Decide(new ClientReleasesExit(PeerId, AssignmentId), Now);

        Assert.Equal(new SessionEffect.CloseRelayLegs(AssignmentId), decision.Effect<SessionEffect.CloseRelayLegs>());
        Assert.Equal(ExitSide.Client, Assert.Single(decision.Sent()).RemoveExit.Side);
        // A second trigger while it is released changes nothing.
        Assert.Empty(decision.State.Decide(new ClientReleasesExit(PeerId, AssignmentId), Now).Events);
    }

    [Fact]
    public void A_disconnect_releases_the_exit_without_a_remove_exit_of_its_own()
    {
        var issuer = new IssueCommand(PeerId, new Command { Disconnect = new Disconnect { Reason = "operator" } });

        var decision = ActiveExit().Decide(issuer, Now);

        Assert.Equal(Command.BodyOneofCase.Disconnect, Assert.Single(decision.Sent()).BodyCase);
        Assert.Contains(decision.Events, e => e is ExitReleaseStarted { Reason: "disconnected: operator" });
    }

    [Theory]
    [InlineData(ExitPhase.Requested, typeof(SessionEffect.AllocateExit))]
    [InlineData(ExitPhase.Releasing, typeof(SessionEffect.ReleaseExit))]
    public void A_new_incarnation_goes_on_with_the_step_under_way(ExitPhase phase, Type effect)
    {
        var state = ActiveExit(attached: false);
        state = state with { Exit = state.Exit! with { Phase = phase } };

        Assert.Contains(state.DecideRecovered(Now).Effects, e => e.GetType() == effect);
    }

    [Fact]
    public void Asking_again_after_authenticating_anew_for_the_exit_it_holds_resends_its_setup_and_its_relay_leg()
    {
        var anew = Relayed(ActiveExit(), T0).Apply(new SessionStarted("s-2", PeerRole.Client, Now));

        var decision = anew.Decide(new RequestExit(PeerId, ExitRegion, ClientKey), Now);

        Assert.Equal([Command.BodyOneofCase.SetupExit, Command.BodyOneofCase.RelaySetup], decision.Sent().Select(c => c.BodyCase));
        Assert.All(decision.Events, e => Assert.IsType<CommandIssued>(e));
    }

    [Fact]
    public void Asking_again_in_the_session_it_applied_its_exit_in_sends_and_persists_nothing()
    {
        var decision = Relayed(ActiveExit(), T0).Decide(new RequestExit(PeerId, ExitRegion, ClientKey), Now);

        Assert.Empty(decision.Events);
        Assert.Empty(decision.Sent());
        Assert.Empty(decision.Effects.OfType<SessionEffect.SendToPeer>());
    }

    [Fact]
    public void Asking_again_while_its_resent_setup_is_in_flight_sends_and_persists_nothing_more()
    {
        var anew = ActiveExit().Apply(new SessionStarted("s-2", PeerRole.Client, Now));
        var resent = anew.Decide(new RequestExit(PeerId, ExitRegion, ClientKey), Now).State;

        var decision = resent.Decide(new RequestExit(PeerId, ExitRegion, ClientKey), Now);

        Assert.Empty(decision.Events);
        Assert.Empty(decision.Sent());
    }

    [Fact]
    public void A_resent_setup_the_client_failed_to_apply_is_sent_again_when_it_asks_again()
    {
        var anew = ActiveExit().Apply(new SessionStarted("s-2", PeerRole.Client, Now));
        var resent = anew.Decide(new RequestExit(PeerId, ExitRegion, ClientKey), Now);
        var setup = Assert.Single(resent.Sent());
        var failed = resent.State.Decide(new CommandAnswered(PeerId, Failed(setup.CommandId, "wg-mydvpn is missing")), Now).State;

        var decision = failed.Decide(new RequestExit(PeerId, ExitRegion, ClientKey), Now);

        Assert.Equal([Command.BodyOneofCase.SetupExit], decision.Sent().Select(c => c.BodyCase));
    }
}
