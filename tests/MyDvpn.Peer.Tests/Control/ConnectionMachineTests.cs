using Grpc.Core;
using Microsoft.Extensions.Logging;
using MyDvpn.Peer.Commands;
using MyDvpn.Peer.Control;
using MyDvpn.Protocol.Control;
using static MyDvpn.Peer.Tests.Control.ChannelStates;

namespace MyDvpn.Peer.Tests.Control;

/// <summary>The connection machine as a pure function: messages in, state and effects out, on a clock moved by hand.</summary>
public sealed class ConnectionMachineTests
{
    [Fact]
    public void Opening_a_stream_dials_the_first_supernode_starts_the_auth_deadline_and_counts_the_attempt()
    {
        var d = ConnectionMachine.Initial(Settings(), enrolled: true).Decide(Connect.Instance, T0, Highest);

        Assert.Equal(ConnectionPhase.AwaitingChallenge, d.State.Phase);
        Assert.Equal((1, 1, A), (d.State.Generation, d.State.Attempts, d.State.Endpoint));
        Assert.Contains(new ChannelEffect.OpenStream(1, A), d.Effects);
        Assert.Contains(new ChannelEffect.StartTimer(ConnectionMachine.AuthTimer, new AuthDeadline(1), Timings.AuthTimeout), d.Effects);
        Assert.Empty(d.State.Decide(Connect.Instance, T0, Highest).Effects);
    }

    [Fact]
    public void The_token_is_presented_until_the_peer_enrolled_and_the_enrollment_is_recorded_once()
    {
        var state = Open(ConnectionMachine.Initial(Settings(token: "t-1"), enrolled: false));

        var challenged = state.Decide(new Incoming(1, Challenge(), SuperA), T0, Highest);
        var authenticated = challenged.State.Decide(new Incoming(1, Authenticated(exitAssignmentId: "a-7")), T0, Highest);

        Assert.Equal(new ChannelEffect.AnswerChallenge(Challenge().AuthChallenge, PresentToken: true, SuperA), Assert.Single(challenged.Effects<ChannelEffect.AnswerChallenge, ConnectionMachine>()));
        Assert.Equal(ConnectionPhase.Connected, authenticated.State.Phase);
        Assert.Equal(("s-1", "super-a", 1), (authenticated.State.SessionId, authenticated.State.SuperNodeId, authenticated.State.Authentications));
        Assert.Contains(new ChannelEffect.SaveEnrollment("super-a", T0), authenticated.Effects);
        Assert.Contains(new ChannelEffect.CancelTimer(ConnectionMachine.AuthTimer), authenticated.Effects);
        Assert.Contains(new ChannelEffect.StartTimer(ConnectionMachine.SilenceTimer, new SilenceCheck(1), TimeSpan.FromMilliseconds(500), Periodic: true), authenticated.Effects);
        Assert.Contains(new ChannelEffect.TellExitRequestMachine(new StreamUp(1, "a-7")), authenticated.Effects);
        Assert.True(authenticated.State.Enrolled);

        var again = Reconnect(authenticated.State, T0).Decide(new Incoming(2, Challenge(), SuperA), T0, Highest);
        Assert.False(Assert.Single(again.Effects<ChannelEffect.AnswerChallenge, ConnectionMachine>()).PresentToken);
    }

    [Fact]
    public void A_challenge_naming_another_supernode_than_the_servers_certificate_is_not_answered_and_the_next_one_is_dialled()
    {
        var state = Open(ConnectionMachine.Initial(Settings(), enrolled: true));

        var d = state.Decide(new Incoming(1, Challenge("super-b"), SuperA), T0, Highest);

        Assert.Empty(d.Effects<ChannelEffect.AnswerChallenge, ConnectionMachine>());
        Assert.Equal(ConnectionPhase.Waiting, d.State.Phase);
        Assert.Equal("the server challenged as SuperNode 'super-b' but its certificate names SuperNode super-a of region eu-west (mydvpn://super/eu-west/super-a)",
            d.State.LastProblem);
        Assert.Contains(ChannelEffect.EndStream.Instance, d.Effects);
        Assert.Equal(B, d.State.Rotation.Current);
    }

    [Fact]
    public void A_challenge_on_a_stream_without_an_accepted_certificate_is_not_answered()
    {
        var state = Open(ConnectionMachine.Initial(Settings(), enrolled: true));

        var d = state.Decide(new Incoming(1, Challenge()), T0, Highest);

        Assert.Empty(d.Effects<ChannelEffect.AnswerChallenge, ConnectionMachine>());
        Assert.Equal(ConnectionPhase.Waiting, d.State.Phase);
    }

    [Fact]
    public void No_auth_response_by_the_deadline_ends_the_attempt_and_the_next_supernode_is_dialled_after_the_backoff()
    {
        var state = Open(ConnectionMachine.Initial(Settings(), enrolled: true));

        var d = state.Decide(new AuthDeadline(1), T0 + Timings.AuthTimeout, Highest);

        Assert.Equal(ConnectionPhase.Waiting, d.State.Phase);
        Assert.Equal("no AuthResponse within 10000 ms", d.State.LastProblem);
        Assert.Contains(ChannelEffect.EndStream.Instance, d.Effects);
        Assert.Contains(new ChannelEffect.TellExitRequestMachine(StreamDown.Instance), d.Effects);
        Assert.Equal(B, d.State.Rotation.Current);
        Assert.Contains(new ChannelEffect.StartTimer(ConnectionMachine.ConnectTimer, Connect.Instance, Timings.ReconnectBase), d.Effects);
        Assert.Equal(B, Assert.Single(d.State.Decide(Connect.Instance, T0, Highest).Effects<ChannelEffect.OpenStream, ConnectionMachine>()).Endpoint);
    }

    [Fact]
    public void A_deadline_of_a_stream_that_authenticated_or_ended_changes_nothing()
    {
        var connected = Connected(ConnectionMachine.Initial(Settings(), enrolled: true), T0);

        Assert.Empty(connected.Decide(new AuthDeadline(1), T0 + Timings.AuthTimeout, Highest).Effects);
        Assert.Empty(connected.Decide(new Incoming(0, Challenge(), SuperA), T0, Highest).Effects);
        Assert.Empty(connected.Decide(new StreamEnded(0, new StreamEnd(null, null, false, "old")), T0, Highest).Effects);
    }

    [Fact]
    public void A_stream_silent_for_three_heartbeats_is_dropped_and_dialled_again_at_the_same_supernode()
    {
        var connected = Connected(ConnectionMachine.Initial(Settings(), enrolled: true), T0);

        var early = connected.Decide(new SilenceCheck(1), T0 + TimeSpan.FromMilliseconds(2900), Highest);
        var heard = connected.Decide(new Incoming(1, new ControlMessage { Ping = new Ping { Sequence = 1 } }), T0 + TimeSpan.FromSeconds(2), Highest).State
            .Decide(new SilenceCheck(1), T0 + TimeSpan.FromMilliseconds(4500), Highest);
        var late = connected.Decide(new SilenceCheck(1), T0 + TimeSpan.FromMilliseconds(3100), Highest);

        Assert.Empty(early.Effects);
        Assert.Empty(heard.Effects);
        Assert.Equal(ConnectionPhase.Waiting, late.State.Phase);
        Assert.StartsWith("nothing heard for 3100 ms (3 heartbeat intervals of 1000 ms)", late.State.LastProblem, StringComparison.Ordinal);
        Assert.Equal(A, late.State.Rotation.Current);
        Assert.Contains(late.Effects, e => e is ChannelEffect.StartTimer { Key: ConnectionMachine.ConnectTimer });
    }

    [Fact]
    public void Backoff_grows_with_failed_attempts_and_a_stream_that_stayed_up_starts_it_over()
    {
        var state = ConnectionMachine.Initial(Settings(), enrolled: true);
        var waits = new List<TimeSpan>();
        for (var i = 0; i < 3; i++)
        {
            var failed = Open(state).Decide(new StreamEnded(state.Generation + 1, new StreamEnd(null, null, false, "refused")), T0, Highest);
            waits.Add(ReconnectDelay(failed));
            state = failed.State;
        }
        var stable = Connected(state, T0).Decide(new StreamEnded(state.Generation + 1, new StreamEnd(null, null, false, "closed")), T0 + Timings.StableAfter, Highest);
        var brief = Connected(state, T0).Decide(new StreamEnded(state.Generation + 1, new StreamEnd(null, null, false, "closed")), T0 + TimeSpan.FromSeconds(1), Highest);

        Assert.Equal([TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(4)], waits);
        Assert.Equal(TimeSpan.FromSeconds(1), ReconnectDelay(stable));
        Assert.Equal(TimeSpan.FromSeconds(8), ReconnectDelay(brief));
    }

    [Fact]
    public void A_permanent_refusal_stops_the_agent_with_the_catalogues_advice_and_dials_no_more()
    {
        var state = Open(ConnectionMachine.Initial(Settings(), enrolled: true));
        var revoked = new StreamEnd(RefusalReason.Revoked, "REVOKED", Permanent: true, "refused with REVOKED (revoked by an operator)",
            "revoked by an operator");

        var d = state.Decide(new StreamEnded(1, revoked), T0, Highest);

        Assert.Equal(ConnectionPhase.Stopped, d.State.Phase);
        var stop = Assert.Single(d.Effects<ChannelEffect.StopAgent, ConnectionMachine>()).Stop;
        Assert.Equal(new PeerStop(1, $"the SuperNode at {state.Endpoint} refused peer {state.Settings.Id} with REVOKED (revoked by an operator); " +
            RefusalCatalogue.AdviceFor(RefusalReason.Revoked)), stop);
        // The reason is named once (it was three times, by each layer that passed it on).
        Assert.Single(System.Text.RegularExpressions.Regex.Matches(stop.Reason, "REVOKED"));
        Assert.DoesNotContain(d.Effects, e => e is ChannelEffect.StartTimer);
        Assert.Empty(d.State.Decide(Connect.Instance, T0, Highest).Effects);
    }

    [Fact]
    public void Once_closing_a_stream_that_ends_is_not_dialled_again()
    {
        var closing = Connected(ConnectionMachine.Initial(Settings(), enrolled: true), T0).Decide(ChannelClosing.Instance, T0, Highest);

        var d = closing.State.Decide(new StreamEnded(1, new StreamEnd(null, null, false, "closed")), T0, Highest);

        Assert.Contains(new ChannelEffect.CancelTimer(ConnectionMachine.ConnectTimer), closing.Effects);
        Assert.DoesNotContain(d.Effects, e => e is ChannelEffect.StartTimer);
        Assert.Empty(d.State.Decide(Connect.Instance, T0, Highest).Effects);
    }

    [Fact]
    public void Connected_it_answers_pings_hands_commands_on_and_routes_exit_refusals()
    {
        var connected = Connected(ConnectionMachine.Initial(Settings(), enrolled: true), T0);
        var command = new Command { CommandId = "c-1", Disconnect = new Disconnect() };
        var failed = new ExitRequestFailed { Region = "us-east", GrpcStatus = (int)StatusCode.ResourceExhausted, Reason = RefusalReason.NoExitAvailable };

        var pong = connected.Decide(new Incoming(1, new ControlMessage { Ping = new Ping { Sequence = 9 } }), T0, Highest);
        var execute = connected.Decide(new Incoming(1, new ControlMessage { Command = command }), T0, Highest);
        var refusal = connected.Decide(new Incoming(1, new ControlMessage { ExitRequestFailed = failed }), T0, Highest);
        var answer = connected.Decide(new CommandAnswered(CommandResponses.Done("c-1")), T0, Highest);

        Assert.Equal(9ul, Assert.Single(pong.Effects<ChannelEffect.Send, ConnectionMachine>()).Message.Pong.Sequence);
        Assert.Equal([new ChannelEffect.Execute(command)], execute.Effects);
        Assert.Equal([new ChannelEffect.TellExitRequestMachine(failed)], refusal.Effects);
        Assert.Equal("c-1", Assert.Single(answer.Effects<ChannelEffect.Send, ConnectionMachine>()).Message.CommandResponse.CommandId);
    }

    [Fact]
    public void Anything_but_the_expected_message_before_authentication_drops_the_stream()
    {
        var state = Open(ConnectionMachine.Initial(Settings(), enrolled: true));

        var d = state.Decide(new Incoming(1, new ControlMessage { Ping = new Ping() }), T0, Highest);

        Assert.Equal(ConnectionPhase.Waiting, d.State.Phase);
        Assert.Equal("the SuperNode sent Ping while the peer waited for an AuthChallenge", d.State.LastProblem);
        Assert.Contains(ChannelEffect.EndStream.Instance, d.Effects);
    }

    [Fact]
    public void The_regions_supernodes_from_the_auth_response_are_dialled_after_the_configured_ones()
    {
        var connected = Open(ConnectionMachine.Initial(Settings(), enrolled: true)).Decide(new Incoming(1, Challenge(), SuperA), T0, Highest).State
            .Decide(new Incoming(1, Authenticated(region: [C])), T0, Highest).State;

        Assert.Equal([A, B, C], connected.Rotation.Endpoints);
        Assert.Equal(A, connected.Rotation.Current);
    }

    [Theory]
    [InlineData(0u, 10_000, false)]
    [InlineData(1u, 1_000, true)]
    [InlineData(999u, 1_000, true)]
    [InlineData(1_000u, 1_000, false)]
    [InlineData(30_000u, 30_000, false)]
    [InlineData(300_000u, 300_000, false)]
    [InlineData(300_001u, 300_000, true)]
    [InlineData(uint.MaxValue, 300_000, true)]
    public void Heartbeat_interval_the_supernode_asks_for_is_held_within_one_second_and_five_minutes(uint offeredMs, int usedMs, bool clamped)
    {
        var timings = new PeerTimings();

        Assert.Equal((TimeSpan.FromMilliseconds(usedMs), clamped), ConnectionMachine.HeartbeatFor(offeredMs, timings));
    }

    [Fact]
    public void A_clamped_heartbeat_is_used_for_silence_and_said_in_one_warning()
    {
        var open = Open(ConnectionMachine.Initial(Settings(), enrolled: true)).Decide(new Incoming(1, Challenge(), SuperA), T0, Highest).State;

        var tiny = open.Decide(new Incoming(1, Authenticated(heartbeatMs: 5)), T0, Highest);
        var usual = open.Decide(new Incoming(1, Authenticated(heartbeatMs: 2_000)), T0, Highest);

        Assert.Equal(Timings.MinHeartbeat, tiny.State.Heartbeat);
        var warning = Assert.Single(tiny.Effects<ChannelEffect.Log, ConnectionMachine>(), l => l.Level == LogLevel.Warning);
        Assert.Equal([(object?)"super-a", 5L, 1_000L, 300_000L, 1_000L], warning.Args);
        Assert.Empty(tiny.State.Decide(new SilenceCheck(1), T0 + TimeSpan.FromMilliseconds(2_900), Highest).Effects);
        Assert.Equal(ConnectionPhase.Waiting, tiny.State.Decide(new SilenceCheck(1), T0 + TimeSpan.FromMilliseconds(3_100), Highest).State.Phase);
        Assert.Equal(TimeSpan.FromSeconds(2), usual.State.Heartbeat);
        Assert.DoesNotContain(usual.Effects<ChannelEffect.Log, ConnectionMachine>(), l => l.Level == LogLevel.Warning);
    }

    private static ConnectionMachine Open(ConnectionMachine state) => state.Decide(Connect.Instance, T0, Highest).State;

    private static ConnectionMachine Connected(ConnectionMachine state, DateTimeOffset at) =>
        Open(state).Decide(new Incoming(state.Generation + 1, Challenge(), SuperA), at, Highest).State
            .Decide(new Incoming(state.Generation + 1, Authenticated()), at, Highest).State;

    private static ConnectionMachine Reconnect(ConnectionMachine state, DateTimeOffset at) =>
        Open(state.Decide(new StreamEnded(state.Generation, new StreamEnd(null, null, false, "closed")), at, Highest).State);

    private static TimeSpan ReconnectDelay(Decision<ConnectionMachine> d) =>
        Assert.Single(d.Effects<ChannelEffect.StartTimer, ConnectionMachine>(), t => t.Key == ConnectionMachine.ConnectTimer).Delay;
}
