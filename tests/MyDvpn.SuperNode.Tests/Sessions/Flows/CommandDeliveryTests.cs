using Google.Protobuf;
using MyDvpn.Protocol.Control;
using MyDvpn.SuperNode.Sessions;
using static MyDvpn.SuperNode.Tests.Sessions.Flows.SessionStates;

namespace MyDvpn.SuperNode.Tests.Sessions.Flows;

/// <summary>Command delivery as pure decisions: persisted first, delivered with backoff, ended by an answer or its deadline.</summary>
public sealed class CommandDeliveryTests
{
    private static readonly PeerSessionSettings Settings = PeerSessionSettings.Default;

    private static IssueCommand Setup(string id = "cmd-1") =>
        new(PeerId, new Command { CommandId = id, SetupExit = new SetupExit { AssignmentId = "x" } }, ReplyToPeerId: "exit-7");

    [Fact]
    public void An_issued_command_is_persisted_accepted_and_delivered_with_its_ack_timer()
    {
        var decision = Attached(Enrolled()).Decide(Setup(), T0);

        var issued = Assert.IsType<CommandIssued>(Assert.Single(decision.Events));
        Assert.Equal(T0 + Settings.DefaultDeadline, Command.Parser.ParseFrom(issued.Command).Deadline.ToDateTimeOffset());
        Assert.Equal(new SessionEffect.Reply(new CommandAccepted(PeerId, "cmd-1")), decision.Effect<SessionEffect.Reply>());
        Assert.Equal("cmd-1", Assert.Single(decision.Sent()).CommandId);
        Assert.Equal(Settings.WaitAfterDelivery(1), decision.Effect<SessionEffect.StartTimer>().Delay);
        Assert.Equal(1, decision.State.Commands.DeliveriesOf("cmd-1"));
    }

    [Fact]
    public void Without_a_stream_a_command_waits_for_one_until_its_deadline()
    {
        var decision = Enrolled().Decide(Setup(), T0);

        Assert.Empty(decision.Sent());
        Assert.Equal(Settings.DefaultDeadline, decision.Effect<SessionEffect.StartTimer>().Delay);
        Assert.Equal(0, decision.State.Commands.DeliveriesOf("cmd-1"));
    }

    [Fact]
    public void An_unanswered_command_is_delivered_again_with_backoff_then_fails_and_its_issuers_hear_of_it()
    {
        var state = Attached(Enrolled()).Decide(Setup(), T0).State;
        var now = T0;
        for (var delivery = 2; delivery <= Settings.MaxAttempts; delivery++)
        {
            now += Settings.WaitAfterDelivery(delivery - 1);
            var retry = state.Decide(new CommandTimerFired("cmd-1"), now);
            Assert.Equal("cmd-1", Assert.Single(retry.Sent()).CommandId);
            Assert.Equal(Settings.WaitAfterDelivery(delivery), retry.Effect<SessionEffect.StartTimer>().Delay);
            state = retry.State;
        }

        now += Settings.WaitAfterDelivery(Settings.MaxAttempts);
        var failed = state.Decide(new CommandTimerFired("cmd-1"), now);

        Assert.Equal(new CommandFailed("cmd-1", $"no answer after {Settings.MaxAttempts} deliveries", now), Assert.Single(failed.Events));
        var announce = failed.Effect<SessionEffect.Announce>();
        Assert.Equal(("cmd-1", "exit-7"), (announce.Outcome.CommandId, announce.ReplyToPeerId));
        Assert.Empty(failed.State.Commands.InFlight);
    }

    [Fact]
    public void The_deadline_ends_a_command_whatever_its_deliveries()
    {
        var issued = Enrolled().Decide(Setup(), T0).State;

        var failed = issued.Decide(new CommandTimerFired("cmd-1"), T0 + Settings.DefaultDeadline);

        Assert.Equal("deadline passed while no stream was attached", Assert.IsType<CommandFailed>(Assert.Single(failed.Events)).Reason);
    }

    [Fact]
    public void An_answer_completes_the_command_once_and_stops_its_timer()
    {
        var issued = Attached(Enrolled()).Decide(Setup(), T0).State;

        var answered = issued.Decide(new CommandAnswered(PeerId, Done("cmd-1")), T0);

        Assert.IsType<CommandCompleted>(Assert.Single(answered.Events));
        Assert.Equal(new SessionEffect.CancelTimer(CommandDelivery.TimerPrefix + "cmd-1"), answered.Effect<SessionEffect.CancelTimer>());
        Assert.True(answered.Effect<SessionEffect.Announce>().Outcome.Succeeded);
        Assert.Empty(answered.State.Decide(new CommandAnswered(PeerId, Done("cmd-1")), T0).Events);
    }

    [Fact]
    public void A_stream_that_attaches_gets_every_command_in_flight_in_issue_order()
    {
        var state = Enrolled().Decide(Setup("first"), T0).State.Decide(Setup("second"), T0).State;

        var attached = state.Decide(new AttachStream(PeerId, "s-1", Akka.Actor.ActorRefs.Nobody, ClientAddress), T0);

        Assert.Equal(["first", "second"], attached.Sent().Select(c => c.CommandId));
        Assert.True(attached.State.Stream.Attached);
    }

    [Theory]
    [InlineData(true, "peer revoked")]
    [InlineData(false, "peer not enrolled")]
    public void A_command_for_a_peer_revoked_or_not_enrolled_is_refused(bool enrolled, string reason)
    {
        var state = enrolled ? Enrolled().Apply(new PeerRevoked(PeerId)) : PeerState.Empty(PeerId, Region, Config());

        var decision = state.Decide(Setup(), T0);

        Assert.Empty(decision.Events);
        Assert.Equal(reason, Assert.IsType<CommandOutcome>(decision.Effect<SessionEffect.Reply>().Message).FailureReason);
    }

    [Fact]
    public void A_command_id_in_flight_is_accepted_again_and_its_latest_issuer_remembered()
    {
        var issued = Attached(Enrolled()).Decide(Setup(), T0).State;

        var again = issued.Decide(Setup(), T0);

        Assert.Empty(again.Events);
        Assert.Equal(new SessionEffect.RememberIssuer("cmd-1"), again.Effect<SessionEffect.RememberIssuer>());
    }

    [Fact]
    public void Revocation_closes_the_stream_fails_every_command_and_releases_the_exit()
    {
        var state = ActiveExit().Decide(Setup(), T0).State;

        var revoked = state.Decide(new RevokePeer(PeerId), T0);

        Assert.IsType<PeerRevoked>(revoked.Events[0]);
        Assert.Contains(revoked.Events, e => e is CommandFailed { CommandId: "cmd-1", Reason: "peer revoked" });
        Assert.Contains(revoked.Events, e => e is ExitReleaseStarted);
        Assert.Equal(RefusalReason.Revoked, revoked.Effect<SessionEffect.CloseStream>().Reason);
        Assert.False(revoked.State.Stream.Attached);
        Assert.IsType<PeerRevoked>(revoked.Effects.OfType<SessionEffect.Reply>().Single().Message);
    }
}
