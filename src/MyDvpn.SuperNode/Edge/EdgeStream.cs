using System.Threading.Channels;
using Akka.Actor;
using Google.Protobuf.WellKnownTypes;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using MyDvpn.Common;
using MyDvpn.Hosting;
using MyDvpn.Protocol.Control;
using MyDvpn.SuperNode.Sessions;
using MyDvpn.Telemetry;
using Prometheus;

namespace MyDvpn.SuperNode.Edge;

/// <summary>
/// One open, authenticated peer stream on this SuperNode (ARCHITECTURE §2 EdgeStream). It owns
/// the stream's outbound queue, heartbeats the peer, hands command answers to the peer's session
/// and is watched by it. When it stops, the stream ends; when the stream ends, it is stopped.
/// <para>
/// Its time (when the peer was last heard, pings, round trips) and its heartbeat timer come from its
/// <see cref="TimeProvider"/> (<see cref="ClockTimers"/>), so a test's manual clock moves both. It logs in a scope of the
/// stream's <c>peer_id</c>, <c>session_id</c> and <c>region</c>, with the <c>command_id</c> for a command.
/// </para>
/// </summary>
public sealed class EdgeStream : ReceiveActor
{
    private static readonly Histogram HeartbeatRtt = Metrics.CreateHistogram(
        "mydvpn_heartbeat_rtt_seconds", "Round trip of Ping/Pong on peer streams.",
        new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.0005, 2, 14) });
    private static readonly Gauge OpenStreams = Metrics.CreateGauge(
        "mydvpn_streams_open", "Authenticated peer streams held by this SuperNode.");
    internal static readonly Counter Dropped = Metrics.CreateCounter(
        "mydvpn_stream_messages_dropped_total", "Messages of authenticated peer streams dropped, by kind and reason.", "kind", "reason");

    /// <summary>The streams' series at zero before the first stream: every kind of message a limit may drop.</summary>
    public static void ShowAtZero()
    {
        OpenStreams.Inc(0);
        foreach (var kind in StreamMessageLimits.Kinds)
            Dropped.WithLabels(kind, "rate_limited");
    }

    /// <summary>A message the peer sent on its stream (other than the AuthRequest).</summary>
    public sealed record Inbound(ControlMessage Message);

    private sealed record HeartbeatTick
    {
        public static readonly HeartbeatTick Instance = new();
    }

    /// <summary>Asks the session again to take this stream, until it answers <see cref="StreamAttached"/>.</summary>
    private sealed record AttachAgain
    {
        public static readonly AttachAgain Instance = new();
    }

    /// <summary>
    /// How often an unanswered attach is sent again. An attach sent while the session's SuperNode is being removed can be
    /// routed to that node by the shard region and lost; the session answers a repeated attach of the same stream at once.
    /// </summary>
    public static readonly TimeSpan AttachRetry = TimeSpan.FromSeconds(1);

    private StreamInfo identity;
    /// <summary>Commands written to this stream that the peer has not answered yet.</summary>
    private readonly HashSet<string> unanswered = [];
    private readonly ChannelWriter<ControlMessage> outbound;
    private readonly TaskCompletionSource<StreamRefusal> closed;
    private readonly IActorRef sessions;
    private readonly LocalStreams registry;
    private readonly EdgeSettings settings;
    /// <summary>Clients the peer offered to serve as an exit when it authenticated; 0: none.</summary>
    private readonly int exitCapacity;
    private readonly TimeProvider time;
    private readonly ILogger log;
    private readonly ClockTimers timers;
    private readonly StreamMessageLimits limits;
    /// <summary>The kinds of message this stream has had dropped (each logged once).</summary>
    private readonly HashSet<string> droppedKinds = [];
    private DateTimeOffset lastHeard;
    private ulong pingSequence;
    private IActorRef? session;

    /// <param name="time">The clock of the heartbeat, silence and round trips; the system clock when null.</param>
    /// <param name="logger">Where the stream logs, in its peer's scope; nowhere when null.</param>
    public static Props Props(StreamInfo identity, ChannelWriter<ControlMessage> outbound, TaskCompletionSource<StreamRefusal> closed,
        IActorRef sessions, LocalStreams registry, EdgeSettings settings, int exitCapacity = 0, TimeProvider? time = null, ILogger? logger = null)
    {
        var clock = time ?? TimeProvider.System;
        var log = logger ?? NullLogger.Instance;
        return Akka.Actor.Props.Create(() => new EdgeStream(identity, outbound, closed, sessions, registry, settings, exitCapacity, clock, log));
    }

    public EdgeStream(StreamInfo initial, ChannelWriter<ControlMessage> outbound, TaskCompletionSource<StreamRefusal> closed,
        IActorRef sessions, LocalStreams registry, EdgeSettings settings, int exitCapacity, TimeProvider time, ILogger logger)
    {
        this.exitCapacity = exitCapacity;
        this.time = time;
        lastHeard = time.GetUtcNow();
        log = new ScopedLogger(logger, ("peer_id", initial.PeerId), ("session_id", initial.SessionId), ("region", registry.Region));
        var self = Self;
        timers = new ClockTimers(time, message => self.Tell(message));
        // Handlers read the field, which every Publish replaces: a captured parameter would publish stale copies.
        identity = initial;
        this.outbound = outbound;
        this.closed = closed;
        this.sessions = sessions;
        this.registry = registry;
        this.settings = settings;
        limits = new StreamMessageLimits(settings.Messages, time);

        Receive<Inbound>(OnInbound);
        Receive<DeliverCommand>(deliver =>
        {
            if (unanswered.Add(deliver.Command.CommandId))
                Publish(identity with { CommandsInFlight = unanswered.Count });
            using (log.BeginScope(new LogScope(("command_id", deliver.Command.CommandId))))
                log.LogDebug("Writing command {CommandId} ({Kind}) to the stream", deliver.Command.CommandId, deliver.Command.BodyCase);
            Send(new ControlMessage { Command = deliver.Command });
        });
        Receive<CloseStream>(close => Close(new StreamRefusal(close.Reason, close.Detail)));
        Receive<SendToPeer>(send => Send(send.Message));
        Receive<PeerAssignments>(changed => Publish(identity with { Assignments = changed.Assignments }));
        Receive<ClockTimers.Fired>(fired =>
        {
            switch (timers.Accept(fired))
            {
                case HeartbeatTick:
                    Heartbeat();
                    break;
                case AttachAgain:
                    sessions.Tell(Attach());
                    break;
            }
        });
        Receive<StreamAttached>(_ =>
        {
            timers.Cancel(nameof(AttachAgain));
            // The session may live on another SuperNode of the region and move (hand-off, crash):
            // watching it lets the stream re-attach to wherever sharding starts it next.
            if (!Sender.Equals(session))
            {
                if (session is not null)
                    Context.Unwatch(session);
                session = Sender;
                Context.Watch(session);
            }
        });
        Receive<Terminated>(terminated =>
        {
            if (!terminated.ActorRef.Equals(session))
                return;
            session = null;
            RequestAttach();
        });
    }

    protected override void PreStart()
    {
        RequestAttach();
        registry.Publish(identity);
        OpenStreams.Inc();
        timers.StartPeriodic(nameof(HeartbeatTick), HeartbeatTick.Instance, settings.HeartbeatInterval);
    }

    private void RequestAttach()
    {
        sessions.Tell(Attach());
        timers.StartPeriodic(nameof(AttachAgain), AttachAgain.Instance, AttachRetry);
    }

    private AttachStream Attach() => new(identity.PeerId, identity.SessionId, Self, identity.RemoteAddress, exitCapacity);

    protected override void PostStop()
    {
        timers.Dispose();
        registry.Remove(identity.SessionId);
        OpenStreams.Dec();
        // The stream may still be open when the actor is stopped from outside (node shutting down).
        closed.TrySetResult(new StreamRefusal(RefusalReason.Unavailable, "the SuperNode is shutting down; reconnect"));
    }

    private void OnInbound(Inbound inbound)
    {
        lastHeard = time.GetUtcNow();
        var message = inbound.Message;
        if (!WithinLimits(message))
            return;
        switch (message.PayloadCase)
        {
            case ControlMessage.PayloadOneofCase.Pong:
                OnPong(message.Pong);
                break;
            case ControlMessage.PayloadOneofCase.CommandResponse:
                if (unanswered.Remove(message.CommandResponse.CommandId))
                    Publish(identity with { CommandsInFlight = unanswered.Count });
                using (log.BeginScope(new LogScope(("command_id", message.CommandResponse.CommandId))))
                    log.LogDebug("Command {CommandId} answered: {Outcome}", message.CommandResponse.CommandId, message.CommandResponse.OutcomeCase);
                sessions.Tell(new CommandAnswered(identity.PeerId, message.CommandResponse));
                break;
            case ControlMessage.PayloadOneofCase.Ping:
                Send(new ControlMessage { Pong = new Pong { Sequence = message.Ping.Sequence, PingSentAt = message.Ping.SentAt } });
                break;
            case ControlMessage.PayloadOneofCase.InfoRequest:
                Send(new ControlMessage
                {
                    InfoResponse = new InfoResponse { SupernodeId = registry.SuperNodeId, Region = registry.Region, SessionId = identity.SessionId },
                });
                break;
            case ControlMessage.PayloadOneofCase.StatusReport:
                // The session decides from the handshakes whether a client's direct path to its exit works.
                sessions.Tell(new HandshakesReported(identity.PeerId, [.. message.StatusReport.Peers.Select(p =>
                    new ReportedHandshake(p.PublicKey.ToByteArray(), p.LastHandshake?.ToDateTimeOffset(), p.RxBytes, p.TxBytes))])
                {
                    ProbeFailed = message.StatusReport.ProbeFailed is { } failed
                        ? new ProbeFailure(failed.PublicKey.ToByteArray(), TimeSpan.FromMilliseconds(failed.SilentMs))
                        : null,
                });
                break;
            case ControlMessage.PayloadOneofCase.ExitRequest:
                // The root of the exit setup's trace (--otlp): the session, the exit's region and both peers continue it.
                var span = Tracing.StartDetached("ExitRequest", kind: System.Diagnostics.ActivityKind.Server);
                span?.SetTag("mydvpn.peer_id", identity.PeerId);
                span?.SetTag("mydvpn.exit_region", message.ExitRequest.Region);
                sessions.Tell(new RequestExit(identity.PeerId, message.ExitRequest.Region, message.ExitRequest.WireguardPublicKey.ToByteArray())
                {
                    TraceParent = Tracing.TraceParentOf(span),
                });
                Tracing.End(span);
                break;
            case ControlMessage.PayloadOneofCase.ExitRelease:
                sessions.Tell(new ClientReleasesExit(identity.PeerId, message.ExitRelease.AssignmentId));
                break;
            default:
                Close(new StreamRefusal(RefusalReason.MalformedMessage, $"unexpected {message.PayloadCase} after authentication"));
                break;
        }
    }

    /// <summary>
    /// Charges <paramref name="message"/> to its kind's limit (<see cref="StreamMessageLimits"/>): within it, it goes on;
    /// over it, it is dropped and counted; a stream that keeps flooding is closed with <c>RATE_LIMITED</c>. An answer to a
    /// command this stream is waiting for is never charged.
    /// </summary>
    private bool WithinLimits(ControlMessage message)
    {
        var limit = message.PayloadCase == ControlMessage.PayloadOneofCase.CommandResponse
            ? unanswered.Contains(message.CommandResponse.CommandId) ? null : (StreamMessageLimits.StrayResponses, settings.Messages.StrayResponses)
            : limits.LimitOf(message.PayloadCase);
        if (limit is null)
            return true;
        var (kind, rate) = limit.Value;
        switch (limits.Admit(kind, rate))
        {
            case StreamMessageLimits.Verdict.Admit:
                return true;
            case StreamMessageLimits.Verdict.Drop:
                Dropped.WithLabels(kind, "rate_limited").Inc();
                if (droppedKinds.Add(kind))
                {
                    log.LogWarning("Dropping {Kind} messages of peer {PeerId} over its limit ({Burst} at once, {PerSecond} a second)", kind,
                        identity.PeerId, rate.Burst, rate.PerSecond);
                }
                return false;
            default:
                Dropped.WithLabels(kind, "rate_limited").Inc();
                Close(new StreamRefusal(RefusalReason.RateLimited,
                    $"the stream kept sending over its message limits ({limits.Dropped} messages dropped, the last a {kind}); back off and reconnect"));
                return false;
        }
    }

    private void OnPong(Pong pong)
    {
        if (pong.PingSentAt is null)
            return;
        var rtt = time.GetUtcNow() - pong.PingSentAt.ToDateTimeOffset();
        if (rtt < TimeSpan.Zero || rtt > settings.HeartbeatTimeout)
            return;
        HeartbeatRtt.Observe(rtt.TotalSeconds);
        Publish(identity with { LastRtt = rtt });
        // The exit pool prefers exits close to their SuperNode.
        if (exitCapacity > 0)
            sessions.Tell(new PeerRttMeasured(identity.PeerId, rtt));
    }

    private void Publish(StreamInfo latest)
    {
        identity = latest;
        registry.Publish(latest);
    }

    private void Heartbeat()
    {
        var now = time.GetUtcNow();
        var silentFor = now - lastHeard;
        if (silentFor > settings.HeartbeatTimeout)
        {
            Close(new StreamRefusal(RefusalReason.HeartbeatTimeout, $"no message for {silentFor.TotalSeconds:0.0} s"));
            return;
        }
        Send(new ControlMessage { Ping = new Ping { Sequence = ++pingSequence, SentAt = Timestamp.FromDateTimeOffset(now) } });
    }

    private void Send(ControlMessage message)
    {
        // The queue is bounded: a peer that does not read is closed rather than buffered without end.
        if (!outbound.TryWrite(message))
            Close(new StreamRefusal(RefusalReason.Unavailable, "the peer does not read its stream"));
    }

    private void Close(StreamRefusal reason)
    {
        if (closed.TrySetResult(reason))
            log.LogDebug("Closing stream of peer {PeerId}: {Reason}", identity.PeerId, reason.Reason);
        Context.Stop(Self);
    }
}
