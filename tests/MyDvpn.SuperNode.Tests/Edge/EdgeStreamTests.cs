using System.Threading.Channels;
using Akka.Actor;
using Akka.TestKit;
using Microsoft.Extensions.Logging;
using MyDvpn.Protocol.Control;
using MyDvpn.SuperNode.Edge;
using MyDvpn.SuperNode.Sessions;
using Xunit.Abstractions;

namespace MyDvpn.SuperNode.Tests.Edge;

/// <summary>
/// One peer stream's actor, between a real bounded queue (what the gRPC writer drains) and a probe as the peer's session,
/// on a manual clock: its heartbeat fires, and time passes, only when a test moves the clock.
/// </summary>
public sealed class EdgeStreamTests(ITestOutputHelper output) : Akka.TestKit.Xunit2.TestKit(output: output)
{
    private const string PeerId = "laptop-1";
    private const string SessionId = "session-1";

    /// <summary>How long a test waits for what the actor does on its own thread: only a failing test waits it out.</summary>
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(15);

    private static readonly EdgeSettings Settings = EdgeSettings.Default with
    {
        HeartbeatInterval = TimeSpan.FromSeconds(5),
        HeartbeatTimeout = TimeSpan.FromSeconds(15),
        OutboundQueue = 16,
    };

    private readonly ManualTimeProvider _clock = new();
    private readonly RecordingLogger _log = new(output, nameof(EdgeStream));
    private readonly Channel<ControlMessage> _outbound = Channel.CreateBounded<ControlMessage>(Settings.OutboundQueue);
    private readonly TaskCompletionSource<StreamRefusal> _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly LocalStreams _registry = new("super-1", "eu-west");

    [Fact]
    public void The_stream_attaches_itself_to_its_session_and_is_listed()
    {
        var sessions = CreateTestProbe();

        var edge = Start(sessions, exitCapacity: 4);

        Assert.Equal(new AttachStream(PeerId, SessionId, edge, "198.51.100.7", 4), sessions.ExpectMsg<AttachStream>(Patience));
        Assert.Equal(SessionId, Assert.Single(_registry.Snapshot()).SessionId);
    }

    [Fact]
    public async Task A_ping_goes_out_every_heartbeat_interval_of_the_clock_and_not_before()
    {
        var edge = Start();

        _clock.Advance(Settings.HeartbeatInterval - TimeSpan.FromMilliseconds(1));
        RoundTrip(edge);
        Assert.False(_outbound.Reader.TryRead(out _));

        _clock.Advance(TimeSpan.FromMilliseconds(1));
        var first = (await NextAsync()).Ping;
        _clock.Advance(Settings.HeartbeatInterval);
        var second = (await NextAsync()).Ping;

        Assert.Equal((1ul, _clock.GetUtcNow() - Settings.HeartbeatInterval), (first.Sequence, first.SentAt.ToDateTimeOffset()));
        Assert.Equal((2ul, _clock.GetUtcNow()), (second.Sequence, second.SentAt.ToDateTimeOffset()));
    }

    [Fact]
    public async Task A_peer_silent_past_the_heartbeat_timeout_is_closed()
    {
        var edge = Start();
        Watch(edge);

        // Heartbeats at 5, 10 and 15 s: silent for exactly the timeout is not past it.
        for (var i = 0; i < 3; i++)
            _clock.Advance(Settings.HeartbeatInterval);
        RoundTrip(edge);
        Assert.False(_closed.Task.IsCompleted);

        _clock.Advance(Settings.HeartbeatInterval);

        ExpectTerminated(edge, Patience);
        var refusal = await _closed.Task;
        Assert.Equal((RefusalReason.HeartbeatTimeout, "no message for 20.0 s"), (refusal.Reason, refusal.Detail));
        Assert.Empty(_registry.Snapshot());
    }

    [Fact]
    public void A_peer_that_keeps_talking_stays_open()
    {
        var edge = Start();

        for (var i = 0; i < 12; i++)
        {
            edge.Tell(new EdgeStream.Inbound(new ControlMessage { Ping = new Ping { Sequence = (ulong)i } }));
            _clock.Advance(Settings.HeartbeatInterval);
            RoundTrip(edge);
            while (_outbound.Reader.TryRead(out _))
            {
                // The writer drains the queue: our Pong and the stream's Ping.
            }
        }

        RoundTrip(edge);
        Assert.False(_closed.Task.IsCompleted);
    }

    [Fact]
    public async Task A_pong_measures_the_round_trip_on_the_clock_and_an_exit_tells_its_session()
    {
        var sessions = CreateTestProbe();
        var edge = Start(sessions, exitCapacity: 2);
        sessions.ExpectMsg<AttachStream>(Patience);
        _clock.Advance(Settings.HeartbeatInterval);
        var ping = (await NextAsync()).Ping;

        _clock.Advance(TimeSpan.FromMilliseconds(30));
        edge.Tell(new EdgeStream.Inbound(new ControlMessage { Pong = new Pong { Sequence = ping.Sequence, PingSentAt = ping.SentAt } }));

        Assert.Equal(new PeerRttMeasured(PeerId, TimeSpan.FromMilliseconds(30)), sessions.ExpectMsg<PeerRttMeasured>(Patience));
        Assert.Equal(TimeSpan.FromMilliseconds(30), Assert.Single(_registry.Snapshot()).LastRtt);
    }

    [Fact]
    public async Task A_command_is_written_to_the_stream_counted_until_answered_and_its_answer_goes_to_the_session()
    {
        var sessions = CreateTestProbe();
        var edge = Start(sessions);
        sessions.ExpectMsg<AttachStream>(Patience);
        var command = new Command { CommandId = "cmd-1", Disconnect = new Disconnect() };

        edge.Tell(new DeliverCommand(command));

        Assert.Equal(command, (await NextAsync()).Command);
        Assert.Equal(1, Assert.Single(_registry.Snapshot()).CommandsInFlight);
        var answer = new CommandResponse { CommandId = "cmd-1", Result = new CommandResult { Done = new Empty() } };
        edge.Tell(new EdgeStream.Inbound(new ControlMessage { CommandResponse = answer }));
        Assert.Equal(new CommandAnswered(PeerId, answer), sessions.ExpectMsg<CommandAnswered>(Patience));
        Assert.Equal(0, Assert.Single(_registry.Snapshot()).CommandsInFlight);
        // What the stream logs about a command carries the command's id beside the stream's own scope.
        Assert.All(_log.Entries.Where(e => e.Message.Contains("cmd-1", StringComparison.Ordinal)), e =>
            Assert.Equal(["command_id=cmd-1", "peer_id=laptop-1, session_id=session-1, region=eu-west"], e.Scopes));
        Assert.Equal(2, _log.Entries.Count(e => e.Message.Contains("cmd-1", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task Closing_ends_the_stream_with_the_reason_and_logs_it_in_the_peers_scope()
    {
        var edge = Start();
        Watch(edge);

        edge.Tell(new CloseStream(RefusalReason.Revoked, "peer revoked by the operator"));

        ExpectTerminated(edge, Patience);
        var refusal = await _closed.Task;
        Assert.Equal((RefusalReason.Revoked, "peer revoked by the operator"), (refusal.Reason, refusal.Detail));
        var entry = Assert.Single(_log.Entries, e => e.Message.StartsWith("Closing stream", StringComparison.Ordinal));
        Assert.Equal((LogLevel.Debug, "Closing stream of peer laptop-1: Revoked"), (entry.Level, entry.Message));
        Assert.Equal(["peer_id=laptop-1, session_id=session-1, region=eu-west"], entry.Scopes);
    }

    private IActorRef Start(TestProbe? sessions = null, int exitCapacity = 0)
    {
        var identity = new StreamInfo(PeerId, PeerRole.Exit, SessionId, "198.51.100.7", _clock.GetUtcNow(), null);
        var edge = Sys.ActorOf(EdgeStream.Props(identity, _outbound.Writer, _closed, (sessions ?? CreateTestProbe()).Ref, _registry, Settings,
            exitCapacity, _clock, _log));
        RoundTrip(edge);
        return edge;
    }

    /// <summary>
    /// Waits until <paramref name="edge"/> has handled everything sent to it before (timers fired by the clock included): an
    /// unhandled <see cref="Identify"/> answers after them.
    /// </summary>
    private void RoundTrip(IActorRef edge)
    {
        var probe = CreateTestProbe();
        edge.Tell(new Identify(null), probe.Ref);
        probe.ExpectMsg<ActorIdentity>(Patience);
    }

    private async Task<ControlMessage> NextAsync()
    {
        using var timeout = new CancellationTokenSource(Patience);
        return await _outbound.Reader.ReadAsync(timeout.Token);
    }
}
