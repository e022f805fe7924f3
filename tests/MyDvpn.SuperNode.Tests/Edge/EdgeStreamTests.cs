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
    public void An_attach_the_session_does_not_answer_is_sent_again_every_second_of_the_clock_until_it_is()
    {
        // An attach sent while the session's SuperNode is being removed is routed there by the shard region and lost.
        var sessions = CreateTestProbe();
        var edge = Start(sessions, sessionAnswers: false);
        var first = sessions.ExpectMsg<AttachStream>(Patience);

        _clock.Advance(EdgeStream.AttachRetry - TimeSpan.FromMilliseconds(1));
        RoundTrip(edge);
        sessions.ExpectNoMsg(TimeSpan.FromMilliseconds(100));
        _clock.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal(first, sessions.ExpectMsg<AttachStream>(Patience));

        edge.Tell(new StreamAttached(PeerId, SessionId), sessions.Ref);
        _clock.Advance(EdgeStream.AttachRetry * 5);
        RoundTrip(edge);
        sessions.ExpectNoMsg(TimeSpan.FromMilliseconds(100));
    }

    [Fact]
    public void A_session_that_stops_is_asked_again_until_its_next_incarnation_answers()
    {
        var sessions = CreateTestProbe();
        var session = CreateTestProbe();
        var edge = Start(sessions, sessionAnswers: false);
        sessions.ExpectMsg<AttachStream>(Patience);
        edge.Tell(new StreamAttached(PeerId, SessionId), session.Ref);
        RoundTrip(edge);

        Sys.Stop(session.Ref);
        sessions.ExpectMsg<AttachStream>(Patience);
        _clock.Advance(EdgeStream.AttachRetry);
        sessions.ExpectMsg<AttachStream>(Patience);
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

    /// <summary>
    /// A working agent for ten minutes of the clock: a Ping a second, a Pong to every Ping of the stream, a StatusReport
    /// every 5 s and after each of a few set-ups one more at once, an ExitRequest every 30 s, and its answers to commands
    /// — 40 at once after a reconnect. Nothing of it is dropped.
    /// </summary>
    [Fact]
    public void A_working_peer_never_meets_the_message_limits()
    {
        var sessions = CreateTestProbe();
        var edge = Start(sessions);
        var dropped = DroppedTotal();
        var reports = 0;
        var commands = 0;
        for (var second = 1; second <= 600; second++)
        {
            _clock.Advance(TimeSpan.FromSeconds(1));
            edge.Tell(new EdgeStream.Inbound(new ControlMessage { Ping = new Ping { Sequence = (ulong)second } }));
            if (second % 5 == 0 || second % 97 == 0)
            {
                edge.Tell(new EdgeStream.Inbound(new ControlMessage { StatusReport = new StatusReport() }));
                reports++;
            }
            if (second % 30 == 0)
                edge.Tell(new EdgeStream.Inbound(new ControlMessage { ExitRequest = new ExitRequest { Region = "us-east" } }));
            if (second == 300)
            {
                for (var i = 0; i < 40; i++)
                {
                    edge.Tell(new DeliverCommand(new Command { CommandId = $"c{i}" }));
                    RoundTrip(edge);
                    DrainAndAnswerPings(edge);
                }
                for (var i = 0; i < 40; i++)
                    edge.Tell(new EdgeStream.Inbound(new ControlMessage { CommandResponse = new CommandResponse { CommandId = $"c{i}" } }));
                commands = 40;
            }
            RoundTrip(edge);
            DrainAndAnswerPings(edge);
        }

        RoundTrip(edge);
        Assert.False(_closed.Task.IsCompleted);
        Assert.Equal(dropped, DroppedTotal());
        var received = sessions.ReceiveWhile(m => m, TimeSpan.FromMilliseconds(500));
        Assert.Equal(reports, received.OfType<HandshakesReported>().Count());
        Assert.Equal(20, received.OfType<RequestExit>().Count());
        Assert.Equal(commands, received.OfType<CommandAnswered>().Count());
    }

    /// <summary>Issue 13: no limit after login. Over a kind's limit a message is dropped and counted; a stream that keeps on is closed.</summary>
    [Fact]
    public async Task Messages_over_their_limit_are_dropped_and_counted_and_a_stream_that_keeps_flooding_is_closed_rate_limited()
    {
        var sessions = CreateTestProbe();
        var settings = Settings with
        {
            Messages = new StreamMessageRates
            {
                ExitRequests = new MessageRate { Burst = 3, PerSecond = 0.5 },
                Drops = new MessageRate { Burst = 5, PerSecond = 1 },
            },
        };
        var edge = Start(sessions, settings: settings);
        sessions.ExpectMsg<AttachStream>(Patience);
        Watch(edge);
        var dropped = EdgeStream.Dropped.WithLabels("exit_request", "rate_limited").Value;
        var request = new ControlMessage { ExitRequest = new ExitRequest { Region = "us-east" } };

        for (var i = 0; i < 8; i++)
            edge.Tell(new EdgeStream.Inbound(request));
        RoundTrip(edge);

        Assert.Equal(3, sessions.ReceiveWhile(m => m as RequestExit, TimeSpan.FromMilliseconds(300)).Count);
        Assert.Equal(dropped + 5, EdgeStream.Dropped.WithLabels("exit_request", "rate_limited").Value);
        Assert.False(_closed.Task.IsCompleted);
        Assert.Single(_log.Entries, e => e.Message.StartsWith("Dropping exit_request messages of peer laptop-1", StringComparison.Ordinal));

        // Two seconds on, one more is let through; the next one is the sixth drop within the drops' burst: closed.
        _clock.Advance(TimeSpan.FromSeconds(2));
        edge.Tell(new EdgeStream.Inbound(request));
        for (var i = 0; i < 4; i++)
            edge.Tell(new EdgeStream.Inbound(request));

        ExpectTerminated(edge, Patience);
        var refusal = await _closed.Task;
        Assert.Equal(RefusalReason.RateLimited, refusal.Reason);
        Assert.Contains("kept sending over its message limits", refusal.Detail, StringComparison.Ordinal);
        Assert.Single(sessions.ReceiveWhile(m => m as RequestExit, TimeSpan.FromMilliseconds(300)));
    }

    [Fact]
    public void Answers_to_commands_the_stream_waits_for_are_never_limited_and_stray_ones_are()
    {
        var sessions = CreateTestProbe();
        var settings = Settings with { Messages = new StreamMessageRates { StrayResponses = new MessageRate { Burst = 2, PerSecond = 0.1 } } };
        var edge = Start(sessions, settings: settings);
        sessions.ExpectMsg<AttachStream>(Patience);
        for (var i = 0; i < 10; i++)
        {
            edge.Tell(new DeliverCommand(new Command { CommandId = $"c{i}" }));
            RoundTrip(edge);
            while (_outbound.Reader.TryRead(out _))
            {
            }
        }

        for (var i = 0; i < 10; i++)
            edge.Tell(new EdgeStream.Inbound(new ControlMessage { CommandResponse = new CommandResponse { CommandId = $"c{i}" } }));
        // Answered again (duplicates) and answers to ids never sent: stray.
        for (var i = 0; i < 5; i++)
            edge.Tell(new EdgeStream.Inbound(new ControlMessage { CommandResponse = new CommandResponse { CommandId = $"c{i}" } }));
        RoundTrip(edge);

        var answered = sessions.ReceiveWhile(m => m as CommandAnswered, TimeSpan.FromMilliseconds(300));
        Assert.Equal([.. Enumerable.Range(0, 10).Select(i => $"c{i}"), "c0", "c1"], answered.Select(a => a!.Response.CommandId));
    }

    private static double DroppedTotal() =>
        new[] { "heartbeat", "status_report", "exit_request", "exit_release", "info_request", "stray_command_response" }
            .Sum(kind => EdgeStream.Dropped.WithLabels(kind, "rate_limited").Value);

    /// <summary>Empties the stream's queue as its writer would, answering the stream's Pings as an agent does.</summary>
    private void DrainAndAnswerPings(IActorRef edge)
    {
        while (_outbound.Reader.TryRead(out var message))
        {
            if (message.PayloadCase == ControlMessage.PayloadOneofCase.Ping)
                edge.Tell(new EdgeStream.Inbound(new ControlMessage { Pong = new Pong { Sequence = message.Ping.Sequence, PingSentAt = message.Ping.SentAt } }));
        }
    }

    /// <param name="sessions">The peer's session: answers every attach as a session does, unless <paramref name="sessionAnswers"/> is false.</param>
    private IActorRef Start(TestProbe? sessions = null, int exitCapacity = 0, EdgeSettings? settings = null, bool sessionAnswers = true)
    {
        sessions ??= CreateTestProbe();
        if (sessionAnswers)
        {
            sessions.SetAutoPilot(new DelegateAutoPilot((sender, message) =>
            {
                if (message is AttachStream attach)
                    sender.Tell(new StreamAttached(attach.PeerId, attach.SessionId));
                return AutoPilot.KeepRunning;
            }));
        }
        var identity = new StreamInfo(PeerId, PeerRole.Exit, SessionId, "198.51.100.7", _clock.GetUtcNow(), null);
        var edge = Sys.ActorOf(EdgeStream.Props(identity, _outbound.Writer, _closed, sessions.Ref, _registry, settings ?? Settings,
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
