using Google.Protobuf;
using Grpc.Core;
using MyDvpn.Peer.Commands;
using MyDvpn.Peer.Control;
using MyDvpn.Protocol.Control;
using static MyDvpn.Peer.Tests.Control.ChannelStates;

namespace MyDvpn.Peer.Tests.Control;

/// <summary>The exit-request machine as a pure function: messages in, state and effects out, on a clock moved by hand.</summary>
public sealed class ExitRequestMachineTests
{
    private static readonly ExitRequestMachine Initial = ExitRequestMachine.Initial(Settings(), WireGuardKey);

    [Fact]
    public void A_client_asks_once_per_authenticated_stream_with_its_region_and_wireguard_key()
    {
        var asked = Initial.Decide(new StreamUp(1, ""), T0, Highest, held: null);
        var again = asked.State.Decide(new StreamUp(1, ""), T0, Highest, held: null);
        var reconnected = asked.State.Decide(StreamDown.Instance, T0, Highest, null).State.Decide(new StreamUp(2, ""), T0, Highest, held: null);

        var request = Assert.Single(asked.Effects<ChannelEffect.Send, ExitRequestMachine>()).Message.ExitRequest;
        Assert.Equal(new ExitRequest { Region = "us-east", WireguardPublicKey = ByteString.CopyFrom(WireGuardKey) }, request);
        Assert.Equal(ExitRequestState.Requested, asked.State.State);
        Assert.Contains(new ChannelEffect.StartTimer(ExitRequestMachine.TimeoutTimer, new ExitRequestUnanswered(1), Timings.ExitRequestTimeout), asked.Effects);
        Assert.Empty(again.Effects<ChannelEffect.Send, ExitRequestMachine>());
        Assert.Single(reconnected.Effects<ChannelEffect.Send, ExitRequestMachine>());
    }

    [Fact]
    public void An_unanswered_request_is_sent_again_on_the_same_stream_and_not_on_one_that_ended()
    {
        var asked = Initial.Decide(new StreamUp(1, ""), T0, Highest, null).State;

        var again = asked.Decide(new ExitRequestUnanswered(1), T0 + Timings.ExitRequestTimeout, Highest, null);
        var gone = asked.Decide(StreamDown.Instance, T0, Highest, null).State.Decide(new ExitRequestUnanswered(1), T0 + Timings.ExitRequestTimeout, Highest, null);

        Assert.Single(again.Effects<ChannelEffect.Send, ExitRequestMachine>());
        Assert.Empty(gone.Effects);
    }

    [Fact]
    public void A_refusal_that_may_pass_is_asked_again_after_the_backoff_and_shown_with_the_next_attempt()
    {
        var asked = Initial.Decide(new StreamUp(1, ""), T0, Highest, null).State;

        var failed = asked.Decide(Failure(StatusCode.ResourceExhausted, RefusalReason.NoExitAvailable), T0, Highest, null);
        var due = failed.State.Decide(ExitRequestDue.Instance, T0 + Timings.ExitRetryBase, Highest, null);

        Assert.Equal(ExitRequestState.WaitingRetry, failed.State.State);
        Assert.Equal(T0 + Timings.ExitRetryBase, failed.State.NextAttemptAt);
        Assert.Equal(new ExitRequestError("RESOURCE_EXHAUSTED", "NO_EXIT_AVAILABLE", "every exit is full", T0), failed.State.LastError);
        Assert.Contains(new ChannelEffect.StartTimer(ExitRequestMachine.RetryTimer, ExitRequestDue.Instance, Timings.ExitRetryBase), failed.Effects);
        Assert.Contains(new ChannelEffect.CancelTimer(ExitRequestMachine.TimeoutTimer), failed.Effects);
        Assert.Single(due.Effects<ChannelEffect.Send, ExitRequestMachine>());
        Assert.Equal(ExitRequestState.Requested, due.State.State);
        Assert.Equal(failed.State.LastError, due.State.LastError);
        // The next failure waits twice as long at most.
        Assert.Equal(T0 + 2 * Timings.ExitRetryBase, due.State.Decide(Failure(StatusCode.Unavailable, RefusalReason.ExitSetupFailed), T0, Highest, null).State.NextAttemptAt);
    }

    [Theory]
    [InlineData(RefusalReason.NotAnExitClient, StatusCode.PermissionDenied)]
    [InlineData(RefusalReason.UnknownRegion, StatusCode.ResourceExhausted)]
    public void A_permanent_refusal_stops_the_asking_whatever_its_status(RefusalReason reason, StatusCode status)
    {
        var asked = Initial.Decide(new StreamUp(1, ""), T0, Highest, null).State;

        var stopped = asked.Decide(Failure(status, reason), T0, Highest, null);
        var reconnected = stopped.State.Decide(StreamDown.Instance, T0, Highest, null).State.Decide(new StreamUp(2, ""), T0, Highest, null);

        Assert.Equal(ExitRequestState.Stopped, stopped.State.State);
        Assert.Null(stopped.State.NextAttemptAt);
        Assert.DoesNotContain(stopped.Effects, e => e is ChannelEffect.StartTimer);
        Assert.Contains(stopped.Effects<ChannelEffect.Log, ExitRequestMachine>(), l => l.Args.Contains(Refusals.ExplainExitRefusal(reason, "us-east")));
        Assert.Empty(reconnected.Effects<ChannelEffect.Send, ExitRequestMachine>());
    }

    [Fact]
    public void A_refusal_reason_this_version_does_not_know_is_asked_again()
    {
        var asked = Initial.Decide(new StreamUp(1, ""), T0, Highest, null).State;

        var failed = asked.Decide(Failure(StatusCode.PermissionDenied, (RefusalReason)999), T0, Highest, null);

        Assert.Equal(ExitRequestState.WaitingRetry, failed.State.State);
    }

    [Fact]
    public void An_exit_assigned_or_rotated_to_ends_the_asking_clears_the_error_and_starts_the_backoff_over()
    {
        var failed = Initial.Decide(new StreamUp(1, ""), T0, Highest, null).State
            .Decide(Failure(StatusCode.ResourceExhausted, RefusalReason.NoExitAvailable), T0, Highest, null).State;

        var assigned = failed.Decide(new ExitChanged.Assigned("a-1", "exit-1", "us-east", "198.51.100.7:51820"), T0, Highest, held: "a-1");
        var rotated = failed.Decide(new ExitChanged.Rotated("a-0", "exit-0", "a-1", "exit-1", "us-east", "198.51.100.7:51820", "exit-0 lost"), T0, Highest, held: "a-1");

        foreach (var settled in new[] { assigned, rotated })
        {
            Assert.Equal(ExitRequestState.Idle, settled.State.State);
            Assert.Null(settled.State.LastError);
            Assert.Null(settled.State.NextAttemptAt);
            Assert.Equal(0, settled.State.Backoff.Attempt);
            Assert.Contains(new ChannelEffect.CancelTimer(ExitRequestMachine.RetryTimer), settled.Effects);
            Assert.Contains(new ChannelEffect.CancelTimer(ExitRequestMachine.TimeoutTimer), settled.Effects);
        }
    }

    [Fact]
    public void An_exit_that_went_away_is_asked_for_again_after_the_reask_delay()
    {
        var holding = Initial.Decide(new StreamUp(1, "a-1"), T0, Highest, held: "a-1").State;

        var removed = holding.Decide(new ExitChanged.Removed("a-1", "the exit went offline"), T0, Highest, held: null);
        var due = removed.State.Decide(ExitRequestDue.Instance, T0 + Timings.ExitReaskDelay, Highest, null);

        Assert.Equal(ExitRequestState.WaitingRetry, removed.State.State);
        Assert.Equal(T0 + Timings.ExitReaskDelay, removed.State.NextAttemptAt);
        Assert.Single(due.Effects<ChannelEffect.Send, ExitRequestMachine>());
        Assert.Empty(holding.Decide(new ExitChanged.Removed("a-9", "another"), T0, Highest, held: "a-1").Effects);
    }

    [Fact]
    public void A_disconnect_stops_the_asking_until_the_agent_restarts()
    {
        var holding = Initial.Decide(new StreamUp(1, "a-1"), T0, Highest, held: "a-1").State;

        var disconnected = holding.Decide(new ExitChanged.Disconnected("operator"), T0, Highest, held: null);
        var reconnected = disconnected.State.Decide(StreamDown.Instance, T0, Highest, null).State.Decide(new StreamUp(2, ""), T0, Highest, null);

        Assert.Equal(ExitRequestState.Stopped, disconnected.State.State);
        Assert.Empty(reconnected.Effects);
    }

    [Fact]
    public void An_exit_the_session_no_longer_holds_is_dropped_before_asking_again()
    {
        var stale = Initial.Decide(new StreamUp(1, ""), T0, Highest, held: "a-0");
        var dropped = stale.State.Decide(StaleExitDropped.Instance, T0, Highest, held: null);
        var kept = Initial.Decide(new StreamUp(1, "a-0"), T0, Highest, held: "a-0");

        Assert.Equal([new ChannelEffect.DropStaleExit("a-0")], stale.Effects.Where(e => e is not ChannelEffect.Log));
        Assert.Single(dropped.Effects<ChannelEffect.Send, ExitRequestMachine>());
        Assert.Empty(kept.Effects<ChannelEffect.Send, ExitRequestMachine>());
        Assert.Empty(kept.Effects<ChannelEffect.DropStaleExit, ExitRequestMachine>());
        Assert.Equal(ExitRequestState.Idle, kept.State.State);
    }

    [Fact]
    public void A_peer_without_an_exit_region_or_as_an_exit_never_asks()
    {
        foreach (var settings in new[] { Settings(exitRegion: null), Settings(role: PeerRole.Exit) })
        {
            var machine = ExitRequestMachine.Initial(settings, WireGuardKey);

            Assert.Empty(machine.Decide(new StreamUp(1, ""), T0, Highest, null).Effects);
            Assert.Null(machine.Status.Region);
        }
    }

    [Fact]
    public void Once_closing_nothing_more_is_asked()
    {
        var closing = Initial.Decide(new StreamUp(1, ""), T0, Highest, null).State.Decide(ChannelClosing.Instance, T0, Highest, null);

        Assert.Contains(new ChannelEffect.CancelTimer(ExitRequestMachine.TimeoutTimer), closing.Effects);
        Assert.Contains(new ChannelEffect.CancelTimer(ExitRequestMachine.RetryTimer), closing.Effects);
        Assert.Empty(closing.State.Decide(new ExitRequestUnanswered(1), T0, Highest, null).Effects);
        Assert.Empty(closing.State.Decide(new ExitChanged.Removed("a-1", "gone"), T0, Highest, null).Effects);
    }

    private static ExitRequestFailed Failure(StatusCode status, RefusalReason reason) =>
        new() { Region = "us-east", GrpcStatus = (int)status, Reason = reason, Detail = "every exit is full" };
}
