using Grpc.Core;
using MyDvpn.Protocol.Control;
using MyDvpn.Protocol.SuperNode;
using MyDvpn.SuperNode.Exits;
using MyDvpn.SuperNode.Sessions;
using static MyDvpn.SuperNode.Tests.Sessions.Flows.SessionStates;

namespace MyDvpn.SuperNode.Tests.Sessions.Flows;

/// <summary>Moving a client to another exit, make-before-break, as pure decisions.</summary>
public sealed class ExitRotationTests
{
    private static readonly DateTimeOffset Now = T0 + TimeSpan.FromMinutes(5);

    private static readonly byte[] NextKey = Enumerable.Repeat((byte)0xE2, 32).ToArray();

    /// <summary>The new assignment the exit's region makes for the rotation (decisions name it "new-id").</summary>
    private static readonly ExitAssignmentRecord Next = Assignment with
    {
        AssignmentId = "new-id",
        ExitPeerId = "exit-2",
        ExitPublicKey = NextKey,
        ExitEndpoint = "198.51.100.8:51820",
        ClientAddress = "100.96.1.2/32",
        ExitAddress = "100.96.1.1/24",
    };

    private static RotateExit Lost() => new(PeerId, AssignmentId, RotationReason.ExitLost, "its stream ended 2 s ago");

    private static PeerState Rotating(RotationReason reason = RotationReason.ExitLost) =>
        ActiveExit().Decide(Lost() with { Reason = reason }, Now).State;

    private static Decision Allocated(RotationReason reason = RotationReason.ExitLost) =>
        Rotating(reason).Decide(new AllocationFinished("new-id", new ExitAllocationResult.Allocated(Next)), Now);

    [Fact]
    public void A_lost_exit_has_its_region_asked_for_another_exit_avoiding_it()
    {
        var decision = ActiveExit().Decide(Lost(), Now);

        var started = Assert.IsType<ExitRotationStarted>(Assert.Single(decision.Events));
        Assert.Equal((AssignmentId, "new-id", RotationReason.ExitLost, "exit-1"),
            (started.FromAssignmentId, started.RotationId, started.Reason, started.AvoidExitPeerId));
        var ask = decision.Effect<SessionEffect.AllocateExit>().Request;
        Assert.Equal(("new-id", ExitRegion, PeerId), (ask.AssignmentId, ask.Region, ask.ClientPeerId));
        Assert.Equal(["exit-1"], ask.AvoidExitPeerIds);
        Assert.Equal(AssignmentId, ask.KeepsAssignmentId);
        Assert.Equal(new SessionEffect.RememberRotationWaiter("new-id"), decision.Effect<SessionEffect.RememberRotationWaiter>());
        // The client keeps its exit meanwhile.
        Assert.Equal((AssignmentId, ExitPhase.Active), (decision.State.Exit!.AssignmentId, decision.State.Exit.Phase));
    }

    [Fact]
    public void A_rotation_of_an_assignment_the_session_does_not_hold_is_refused_and_one_under_way_is_not_started_twice()
    {
        var other = ActiveExit().Decide(Lost() with { AssignmentId = "older" }, Now);
        Assert.Empty(other.Events);
        Assert.False(Assert.IsType<RotationOutcome>(other.Effect<SessionEffect.Reply>().Message).Moved);

        var again = Rotating().Decide(Lost(), Now);
        Assert.Empty(again.Events);
        Assert.Equal(new SessionEffect.RememberRotationWaiter("new-id"), again.Effect<SessionEffect.RememberRotationWaiter>());
    }

    [Fact]
    public void The_new_exit_acked_the_client_gets_rotate_peer_from_the_old_key_to_the_new_exit()
    {
        var decision = Allocated();

        Assert.IsType<ExitRotationAllocated>(decision.Events[0]);
        Assert.IsType<CommandIssued>(decision.Events[1]);
        var rotate = Assert.Single(decision.Sent());
        Assert.Equal(Now + ExitConfig.ClientSetupTimeout, rotate.Deadline.ToDateTimeOffset());
        var body = rotate.RotatePeer;
        Assert.Equal(("new-id", AssignmentId, "exit-2", "100.96.1.2/32"), (body.AssignmentId, body.PreviousAssignmentId, body.CounterpartPeerId, body.TunnelAddresses[0]));
        Assert.Equal(ExitKey, body.OldPeerPublicKey.ToByteArray());
        Assert.Equal(NextKey, body.NewPeer.PublicKey.ToByteArray());
        Assert.Equal(["0.0.0.0/0"], body.NewPeer.AllowedIps);
        // Still the old exit until the client applied it: make before break.
        Assert.Equal(AssignmentId, decision.State.Exit!.AssignmentId);
        Assert.Empty(decision.Effects.OfType<SessionEffect.ReleaseExit>());
    }

    [Fact]
    public void The_client_applied_it_its_exit_is_the_new_one_and_the_old_assignment_is_given_back()
    {
        var allocated = Allocated();
        var rotate = Assert.Single(allocated.Sent());

        var decision = allocated.State.Decide(new CommandAnswered(PeerId, Done(rotate.CommandId)), Now);

        Assert.Contains(decision.Events, e => e is ExitRotated { FromAssignmentId: AssignmentId, ToAssignmentId: "new-id" });
        var exit = decision.State.Exit!;
        Assert.Equal(("new-id", ExitPhase.Active, "exit-2", Now), (exit.AssignmentId, exit.Phase, exit.Assignment!.ExitPeerId, exit.Since));
        Assert.Equal(new ExitRotationRecord(AssignmentId, "exit-1", RotationReason.ExitLost, "its stream ended 2 s ago", Now), exit.LastRotation);
        Assert.Null(exit.Rotation);
        var release = decision.Effect<SessionEffect.ReleaseExit>();
        Assert.Equal((AssignmentId, ExitRegion, true), (release.Request.AssignmentId, release.Request.Region, release.Tracked));
        Assert.Equal([AssignmentId], decision.State.Retiring.Select(r => r.AssignmentId));
        Assert.Equal(new SessionEffect.CloseRelayLegs(AssignmentId), decision.Effect<SessionEffect.CloseRelayLegs>());
        var outcome = decision.Effect<SessionEffect.AnnounceRotation>().Outcome;
        Assert.True(outcome.Moved);
        Assert.Equal(("exit-1", "exit-2"), (outcome.FromExitPeerId, outcome.ToExitPeerId));
        // The new path gets its direct-path timeout.
        Assert.Contains(decision.Effects, e => e is SessionEffect.StartTimer { Key: PathMonitoring.DirectPathTimer });
    }

    [Fact]
    public void A_drained_exits_client_that_fails_its_rotate_peer_keeps_its_exit_and_the_new_assignment_is_given_back()
    {
        var allocated = Allocated(RotationReason.ExitDrained);
        var rotate = Assert.Single(allocated.Sent());

        var decision = allocated.State.Decide(new CommandAnswered(PeerId, Failed(rotate.CommandId, "wg0 is missing")), Now);

        Assert.Contains(decision.Events, e => e is ExitRotationFailed);
        Assert.Equal((AssignmentId, ExitPhase.Active), (decision.State.Exit!.AssignmentId, decision.State.Exit.Phase));
        Assert.Null(decision.State.Exit.Rotation);
        Assert.Equal("new-id", decision.Effect<SessionEffect.ReleaseExit>().Request.AssignmentId);
        Assert.Empty(decision.Effects.OfType<SessionEffect.SendToPeer>());
        Assert.Contains("wg0 is missing", decision.Effect<SessionEffect.AnnounceRotation>().Outcome.Failure);
    }

    [Fact]
    public void A_lost_exits_client_no_other_exit_takes_keeps_its_exit_untold_for_the_exit_may_still_forward()
    {
        var decision = Rotating().Decide(new AllocationFinished("new-id",
            new ExitAllocationResult.Refused(RefusalReason.NoExitAvailable, "region us-east has no exit online")), Now);

        Assert.Contains(decision.Events, e => e is ExitRotationFailed);
        Assert.Equal((AssignmentId, ExitPhase.Active), (decision.State.Exit!.AssignmentId, decision.State.Exit.Phase));
        Assert.Null(decision.State.Exit.Rotation);
        Assert.Empty(decision.Sent());
        Assert.Empty(decision.Effects.OfType<SessionEffect.SendToPeer>());
        Assert.Empty(decision.Effects.OfType<SessionEffect.ReleaseExit>());
        Assert.Empty(decision.State.Retiring); // nothing was made at the region

        // The pool asks again later: a new rotation starts.
        var again = decision.State.Decide(Lost(), Now.AddSeconds(10));
        Assert.IsType<ExitRotationStarted>(Assert.Single(again.Events));
    }

    [Fact]
    public void A_lost_exits_client_no_other_exit_takes_gives_it_up_with_no_exit_available_once_its_path_test_fails()
    {
        var kept = Rotating().Decide(new AllocationFinished("new-id",
            new ExitAllocationResult.Refused(RefusalReason.NoExitAvailable, "region us-east has no exit online")), Now).State;
        var confirmed = kept.Decide(Report(Now), Now).State;
        Assert.True(confirmed.Path.DirectConfirmed);

        var failed = confirmed.Decide(Report(Now, rx: 500, tx: 4000) with { ProbeFailed = new ProbeFailure(ExitKey, TimeSpan.FromSeconds(2)) },
            Now.AddSeconds(5));

        var told = Assert.Single(failed.Effects.OfType<SessionEffect.SendToPeer>()).Message.ExitRequestFailed;
        Assert.Equal(RefusalReason.NoExitAvailable, told.Reason);
        Assert.Contains(failed.Events, e => e is ExitReleaseStarted);
        Assert.Equal(Command.BodyOneofCase.RemoveExit, Assert.Single(failed.Sent()).BodyCase);
        Assert.Empty(failed.Effects.OfType<SessionEffect.OpenRelayChain>());

        // An exit that was only drained (or a rotation that never ran) is relayed instead: the path may be what broke.
        var drained = Rotating(RotationReason.ExitDrained).Decide(new AllocationFinished("new-id",
            new ExitAllocationResult.Refused(RefusalReason.NoExitAvailable, "region us-east has no exit online")), Now).State.Decide(Report(Now), Now).State;
        var relayed = drained.Decide(Report(Now, rx: 500, tx: 4000) with { ProbeFailed = new ProbeFailure(ExitKey, TimeSpan.FromSeconds(2)) },
            Now.AddSeconds(5));
        Assert.Single(relayed.Effects.OfType<SessionEffect.OpenRelayChain>());
        Assert.Empty(relayed.Effects.OfType<SessionEffect.SendToPeer>());
    }

    [Fact]
    public void A_released_assignment_the_client_left_is_forgotten_and_one_the_region_did_not_confirm_is_asked_again()
    {
        var allocated = Allocated();
        var moved = allocated.State.Decide(new CommandAnswered(PeerId, Done(Assert.Single(allocated.Sent()).CommandId)), Now).State;

        var unconfirmed = moved.Decide(new ReleaseFinished(AssignmentId, "no SuperNode answered"), Now);
        var retry = unconfirmed.Effect<SessionEffect.StartTimer>();
        Assert.Equal((ExitRotation.RetiredReleaseTimerPrefix + AssignmentId, ExitConfig.ReleaseRetry), (retry.Key, retry.Delay));
        Assert.Equal(AssignmentId, moved.Decide(retry.Message, Now + ExitConfig.ReleaseRetry).Effect<SessionEffect.ReleaseExit>().Request.AssignmentId);

        var confirmed = moved.Decide(new ReleaseFinished(AssignmentId, null), Now);
        Assert.Equal(new ExitReleaseCompleted(AssignmentId, Now), Assert.Single(confirmed.Events));
        Assert.Empty(confirmed.State.Retiring);
        Assert.Equal("new-id", confirmed.State.Exit!.AssignmentId); // the current exit is untouched
    }

    [Fact]
    public void A_new_incarnation_asks_again_for_a_rotation_under_way_and_releases_what_the_client_left()
    {
        Assert.Equal("new-id", Rotating().DecideRecovered(Now).Effect<SessionEffect.AllocateExit>().Request.AssignmentId);

        var allocated = Allocated();
        var moved = allocated.State.Decide(new CommandAnswered(PeerId, Done(Assert.Single(allocated.Sent()).CommandId)), Now).State;
        Assert.Equal(AssignmentId, moved.DecideRecovered(Now).Effect<SessionEffect.ReleaseExit>().Request.AssignmentId);
    }

    [Fact]
    public void A_disconnect_during_a_rotation_ends_it_and_gives_back_both_assignments()
    {
        var allocated = Allocated(RotationReason.ExitDrained).State;

        var decision = allocated.Decide(new IssueCommand(PeerId, new Command { Disconnect = new Disconnect { Reason = "operator" } }), Now);

        Assert.Contains(decision.Events, e => e is ExitRotationFailed);
        Assert.Contains(decision.Events, e => e is ExitReleaseStarted { AssignmentId: AssignmentId });
        Assert.Equal(["new-id", AssignmentId], decision.Effects.OfType<SessionEffect.ReleaseExit>().Select(r => r.Request.AssignmentId));
    }

    [Fact]
    public void A_rotation_that_moved_the_client_is_counted_with_the_time_from_its_start()
    {
        var allocated = Rotating(RotationReason.ExitDrained)
            .Decide(new AllocationFinished("new-id", new ExitAllocationResult.Allocated(Next)), Now + TimeSpan.FromSeconds(1));

        var decision = allocated.State.Decide(new CommandAnswered(PeerId, Done(Assert.Single(allocated.Sent()).CommandId)),
            Now + TimeSpan.FromSeconds(3.5));

        Assert.Empty(allocated.Effects.OfType<SessionEffect.CountRotation>());
        Assert.Equal(new SessionEffect.CountRotation(RotationReason.ExitDrained, Moved: true, TimeSpan.FromSeconds(3.5)),
            decision.Effect<SessionEffect.CountRotation>());
    }

    [Fact]
    public void A_rotation_that_failed_or_was_abandoned_is_counted_as_not_moved_and_one_refused_is_not_counted()
    {
        var allocated = Allocated(RotationReason.Operator);
        var failed = allocated.State.Decide(new CommandAnswered(PeerId, Failed(Assert.Single(allocated.Sent()).CommandId, "wg0 is missing")),
            Now + TimeSpan.FromSeconds(2));
        Assert.Equal(new SessionEffect.CountRotation(RotationReason.Operator, Moved: false, TimeSpan.FromSeconds(2)),
            failed.Effect<SessionEffect.CountRotation>());

        var abandoned = Allocated().State.Decide(new IssueCommand(PeerId, new Command { Disconnect = new Disconnect { Reason = "operator" } }), Now);
        Assert.Equal(new SessionEffect.CountRotation(RotationReason.ExitLost, Moved: false, TimeSpan.Zero),
            abandoned.Effect<SessionEffect.CountRotation>());

        Assert.Empty(ActiveExit().Decide(Lost() with { AssignmentId = "older" }, Now).Effects.OfType<SessionEffect.CountRotation>());
        Assert.Empty(Rotating().Decide(Lost(), Now).Effects.OfType<SessionEffect.CountRotation>());
    }

    [Fact]
    public void The_sessions_view_shows_how_the_client_came_to_its_exit()
    {
        Assert.Null(Assert.Single(ActiveExit().View().Assignments).LastRotation);
        var allocated = Allocated();
        var moved = allocated.State.Decide(new CommandAnswered(PeerId, Done(Assert.Single(allocated.Sent()).CommandId)), Now).State;

        var shown = Assert.Single(moved.View().Assignments).ToProto();

        Assert.Equal(("new-id", "exit-2", ExitAssignmentRecord.Active), (shown.AssignmentId, shown.ExitPeerId, shown.State));
        Assert.Equal(
            new ExitRotationView
            {
                FromAssignmentId = AssignmentId,
                FromExitPeerId = "exit-1",
                Reason = RotationReason.ExitLost,
                Detail = "its stream ended 2 s ago",
                At = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(Now),
            },
            shown.LastRotation);
        Assert.Equal(moved.Exit!.LastRotation, ExitAssignmentRecord.FromProto(shown).LastRotation);
    }

    [Fact]
    public void A_session_with_a_rotation_under_way_or_an_assignment_to_give_back_is_not_idle()
    {
        Assert.False((Rotating() with { Stream = StreamState.Detached }).Idle);
        var allocated = Allocated();
        var moved = allocated.State.Decide(new CommandAnswered(PeerId, Done(Assert.Single(allocated.Sent()).CommandId)), Now).State;
        Assert.False((moved with { Stream = StreamState.Detached, Commands = moved.Commands }).Idle);
    }
}
