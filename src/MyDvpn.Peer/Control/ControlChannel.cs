using Akka.Actor;
using Google.Protobuf;
using Microsoft.Extensions.Logging;
using MyDvpn.Hosting;
using MyDvpn.Peer.Commands;
using MyDvpn.Protocol.Control;
using MyDvpn.Security;

namespace MyDvpn.Peer.Control;

/// <summary>
/// Owns the peer's control stream: opens it to a SuperNode of the region, answers the challenge, answers pings,
/// hands commands to the <see cref="CommandExecutor"/> and sends its answers back. When the stream ends it
/// reconnects after a jittered exponential backoff — to the same SuperNode if the stream had been authenticated,
/// to the next known one if the attempt failed — unless the SuperNode refused the peer for good: then it logs why,
/// completes the <see cref="PeerOutcome"/> with exit code 1 and stops.
/// </summary>
public sealed class ControlChannel : ReceiveActor, IWithTimers
{
    /// <summary>A message read from the stream of <paramref name="Generation"/>.</summary>
    internal sealed record Incoming(int Generation, ControlMessage Message);

    private sealed record ConnectionEnded(int Generation, Exception? Cause);

    private sealed record Connect
    {
        public static readonly Connect Instance = new();
    }

    private sealed record AuthDeadline(int Generation);

    private sealed record SilenceCheck(int Generation);

    private sealed record EnrollmentSaved(string Path);

    private sealed record EnrollmentSaveFailed(Exception Cause);

    private enum Phase
    {
        Waiting,
        AwaitingChallenge,
        AwaitingAuthResponse,
        Connected,
    }

    private const string ConnectTimer = "connect", AuthTimer = "auth-deadline", SilenceTimer = "silence";

    private readonly PeerSettings settings;
    private readonly IActorRef executor;
    private readonly PeerStatus status;
    private readonly PeerOutcome outcome;
    private readonly TimeProvider time;
    private readonly ILogger logger;
    private readonly ReconnectBackoff backoff;
    private readonly SuperNodeRotation rotation;
    private readonly ServerCertificateValidator validator;
    private readonly CancellationTokenSource stopping = new();

    private ControlConnection? connection;
    private int generation;
    private Phase phase = Phase.Waiting;
    private bool enrolled;
    private bool tokenPresented;
    private string? superNodeId;
    private string? sessionId;
    private long lastHeard;
    private long authenticatedAt;
    private TimeSpan heartbeat;

    public ITimerScheduler Timers { get; set; } = null!;

    /// <param name="enrolled">Whether the state directory records that this identity has enrolled.</param>
    public static Props Props(PeerSettings settings, IActorRef executor, PeerStatus status, PeerOutcome outcome,
        TimeProvider time, ILogger logger, Random random, bool enrolled) =>
        Akka.Actor.Props.Create(() => new ControlChannel(settings, executor, status, outcome, time, logger, random, enrolled));

    public ControlChannel(PeerSettings settings, IActorRef executor, PeerStatus status, PeerOutcome outcome,
        TimeProvider time, ILogger logger, Random random, bool enrolled)
    {
        this.settings = settings;
        this.executor = executor;
        this.status = status;
        this.outcome = outcome;
        this.time = time;
        this.logger = logger;
        this.enrolled = enrolled;
        backoff = new ReconnectBackoff(settings.Timings.ReconnectBase, settings.Timings.ReconnectCap, random);
        rotation = new SuperNodeRotation(settings.SuperNodes);
        validator = new ServerCertificateValidator(settings.Ca);

        Receive<Connect>(_ => Open());
        Receive<Incoming>(OnIncoming);
        Receive<ConnectionEnded>(ended =>
        {
            if (IsCurrent(ended.Generation))
                OnStreamEnded(Refusals.Classify(ended.Cause));
        });
        Receive<AuthDeadline>(deadline =>
        {
            if (IsCurrent(deadline.Generation) && phase != Phase.Connected)
                Drop($"no AuthResponse within {settings.Timings.AuthTimeout.TotalMilliseconds:F0} ms");
        });
        Receive<SilenceCheck>(OnSilenceCheck);
        Receive<CommandAnswered>(OnAnswered);
        Receive<EnrollmentSaved>(saved =>
        {
            using (Scope())
                logger.LogInformation("Enrolled: recorded in {Path}; the enrollment token is not presented again", saved.Path);
        });
        Receive<EnrollmentSaveFailed>(failed =>
        {
            using (Scope())
                logger.LogWarning(failed.Cause, "Enrolled, but could not record it in the state directory; after a restart the token is presented again");
        });
    }

    protected override void PreStart() => Self.Tell(Connect.Instance);

    protected override void PostStop()
    {
        connection?.Abort();
        stopping.Cancel();
        stopping.Dispose();
    }

    private bool IsCurrent(int streamGeneration) => connection is { } current && current.Generation == streamGeneration;

    private void Open()
    {
        if (connection is not null)
            return;
        var endpoint = rotation.Current;
        var opened = new ControlConnection(++generation, endpoint, validator, Self, settings.Timings.ConnectTimeout, stopping.Token);
        connection = opened;
        phase = Phase.AwaitingChallenge;
        superNodeId = null;
        sessionId = null;
        lastHeard = time.GetTimestamp();
        status.Update(s => s with { Connected = false, Endpoint = endpoint, SuperNodeId = null, SessionId = null, Attempts = s.Attempts + 1 });
        using (Scope())
            logger.LogDebug("Opening the control stream to {Endpoint}", endpoint.ToString());

        var streamGeneration = opened.Generation;
        opened.RunAsync().PipeTo(Self,
            success: () => new ConnectionEnded(streamGeneration, null),
            failure: ex => new ConnectionEnded(streamGeneration, ex));
        Timers.StartSingleTimer(AuthTimer, new AuthDeadline(streamGeneration), settings.Timings.AuthTimeout);
    }

    private void OnIncoming(Incoming incoming)
    {
        if (!IsCurrent(incoming.Generation))
            return;
        lastHeard = time.GetTimestamp();
        var message = incoming.Message;
        switch (phase, message.PayloadCase)
        {
            case (Phase.AwaitingChallenge, ControlMessage.PayloadOneofCase.AuthChallenge):
                Authenticate(message.AuthChallenge);
                break;
            case (Phase.AwaitingAuthResponse, ControlMessage.PayloadOneofCase.AuthResponse):
                OnAuthenticated(message.AuthResponse);
                break;
            case (Phase.Connected, ControlMessage.PayloadOneofCase.Ping):
                Send(new ControlMessage { Pong = new Pong { Sequence = message.Ping.Sequence, PingSentAt = message.Ping.SentAt } });
                break;
            case (Phase.Connected, ControlMessage.PayloadOneofCase.Command):
                executor.Tell(new ExecuteCommand(message.Command));
                break;
            case (Phase.Connected, _):
                using (Scope())
                    logger.LogDebug("Ignoring {Payload} from the SuperNode", message.PayloadCase.ToString());
                break;
            default:
                Drop($"the SuperNode sent {message.PayloadCase} while the peer waited for {(phase == Phase.AwaitingChallenge ? "an AuthChallenge" : "an AuthResponse")}");
                break;
        }
    }

    private void Authenticate(AuthChallenge challenge)
    {
        superNodeId = challenge.SupernodeId;
        var transcript = PeerAuthTranscript.Encode(settings.Id, (int)settings.Role, settings.Region, challenge.Challenge.Span, challenge.SupernodeId);
        var request = new AuthRequest
        {
            PeerId = settings.Id,
            Role = settings.Role,
            Region = settings.Region,
            Challenge = challenge.Challenge,
            Signature = ByteString.CopyFrom(settings.Key.Sign(transcript)),
        };
        tokenPresented = !enrolled && settings.Token is not null;
        if (tokenPresented)
        {
            request.EnrollmentToken = settings.Token;
            request.PublicKey = ByteString.CopyFrom(settings.Key.PublicKey);
        }
        phase = Phase.AwaitingAuthResponse;
        using (Scope())
            logger.LogDebug("Answering the challenge of SuperNode {SuperNodeId}{Enrollment}", superNodeId, tokenPresented ? " with the enrollment token" : "");
        Send(new ControlMessage { AuthRequest = request });
    }

    private void OnAuthenticated(AuthResponse response)
    {
        Timers.Cancel(AuthTimer);
        phase = Phase.Connected;
        sessionId = response.SessionId;
        if (!string.IsNullOrEmpty(response.SupernodeId))
            superNodeId = response.SupernodeId;
        authenticatedAt = time.GetTimestamp();
        heartbeat = response.HeartbeatIntervalMs > 0 ? TimeSpan.FromMilliseconds(response.HeartbeatIntervalMs) : settings.Timings.DefaultHeartbeat;
        rotation.Learn(RegionSuperNodes(response));
        var endpoint = rotation.Current;
        status.Update(s => s with
        {
            Connected = true,
            Endpoint = endpoint,
            SuperNodeId = superNodeId,
            SessionId = sessionId,
            Authentications = s.Authentications + 1,
        });
        using (Scope())
        {
            logger.LogInformation(
                "Control stream authenticated by SuperNode {SuperNodeId} at {Endpoint}; heartbeat {HeartbeatMs} ms; {Known} SuperNodes known in region {Region}",
                superNodeId, endpoint.ToString(), (long)heartbeat.TotalMilliseconds, rotation.Endpoints.Count, settings.Region);
        }
        // Checked twice an interval: a silent stream is noticed within 3 to 3.5 intervals.
        var check = TimeSpan.FromTicks(Math.Max(heartbeat.Ticks / 2, TimeSpan.FromMilliseconds(10).Ticks));
        Timers.StartPeriodicTimer(SilenceTimer, new SilenceCheck(connection!.Generation), check);

        if (tokenPresented && !enrolled)
        {
            enrolled = true;
            var record = new EnrollmentRecord(settings.Id, settings.Key.PublicKeyBase64, superNodeId ?? "", time.GetUtcNow());
            var stateDir = settings.StateDir;
            record.SaveAsync(stateDir, stopping.Token).PipeTo(Self,
                success: () => new EnrollmentSaved(EnrollmentRecord.PathIn(stateDir)),
                failure: ex => new EnrollmentSaveFailed(ex));
        }
    }

    private List<HostPort> RegionSuperNodes(AuthResponse response)
    {
        var endpoints = new List<HostPort>();
        foreach (var superNode in response.RegionSupernodes)
        {
            try
            {
                endpoints.Add(HostPort.Parse(superNode.GrpcEndpoint, "region_supernodes"));
            }
            catch (ConfigurationException ex)
            {
                using (Scope())
                    logger.LogWarning("Ignoring SuperNode {SuperNodeId} of the region's list: {Problem}", superNode.SupernodeId, ex.Message);
            }
        }
        return endpoints;
    }

    private void OnSilenceCheck(SilenceCheck check)
    {
        if (!IsCurrent(check.Generation) || phase != Phase.Connected)
            return;
        var silent = time.GetElapsedTime(lastHeard);
        var limit = heartbeat * settings.Timings.MissedHeartbeats;
        if (silent > limit)
            Drop($"nothing heard for {silent.TotalMilliseconds:F0} ms ({settings.Timings.MissedHeartbeats} heartbeat intervals of {heartbeat.TotalMilliseconds:F0} ms)");
    }

    private void OnAnswered(CommandAnswered answered)
    {
        if (phase == Phase.Connected && connection is not null)
        {
            Send(new ControlMessage { CommandResponse = answered.Response });
            return;
        }
        using (Scope())
        {
            logger.LogInformation(
                "Answer to command {CommandId} not sent: no stream is up; the SuperNode resends the command and gets the same answer",
                answered.Response.CommandId);
        }
    }

    private void Send(ControlMessage message)
    {
        if (connection is { } current && !current.TrySend(message))
            Drop($"the stream took no more messages (closed, or {ControlConnection.OutboxCapacity} waiting)");
    }

    /// <summary>Ends the current stream from this side, as if the SuperNode had ended it.</summary>
    private void Drop(string why)
    {
        connection?.Abort();
        OnStreamEnded(new StreamEnd(null, null, false, why));
    }

    private void OnStreamEnded(StreamEnd end)
    {
        Timers.Cancel(AuthTimer);
        Timers.Cancel(SilenceTimer);
        var wasAuthenticated = phase == Phase.Connected;
        var upFor = wasAuthenticated ? time.GetElapsedTime(authenticatedAt) : TimeSpan.Zero;
        var endpoint = rotation.Current;
        using var scope = Scope();
        connection = null;
        phase = Phase.Waiting;
        sessionId = null;
        status.Update(s => s with { Connected = false, SessionId = null, LastProblem = end.Description });

        if (end.Permanent)
        {
            StopForGood(end, endpoint);
            return;
        }
        if (wasAuthenticated && upFor >= settings.Timings.StableAfter)
            backoff.Reset();
        // A stream that had been authenticated is retried where it was; a failed attempt moves on.
        if (!wasAuthenticated)
            rotation.MoveNext();
        var delay = backoff.Next();
        logger.LogWarning("Control stream to {Endpoint} ended: {Why}; reconnecting to {Next} in {DelayMs} ms",
            endpoint.ToString(), end.Description, rotation.Current.ToString(), (long)delay.TotalMilliseconds);
        Timers.StartSingleTimer(ConnectTimer, Connect.Instance, delay);
    }

    private void StopForGood(StreamEnd end, HostPort endpoint)
    {
        var explanation = end.Reason switch
        {
            RefusalReason.Revoked => "the operator revoked this peer; it may not connect again",
            RefusalReason.Replaced =>
                $"another agent with peer id '{settings.Id}' connected and took over this peer's session; stopping, so that the two do not keep replacing each other",
            RefusalReason.UnknownPeer when enrolled =>
                $"the region does not know this peer although it enrolled before; delete {EnrollmentRecord.PathIn(settings.StateDir)} and start again with a new --token",
            RefusalReason.UnknownPeer => "the region does not know this peer: enroll it with --token TOKEN (from `mydvpn admin token create`)",
            RefusalReason.BadToken or RefusalReason.TokenUsedUp or RefusalReason.TokenExpired =>
                "the enrollment token was not accepted: get a new one from the operator (`mydvpn admin token create`) and pass it with --token",
            RefusalReason.BadSignature => "the SuperNode did not accept this peer's signature: --key is not the key this peer enrolled with",
            RefusalReason.RoleNotAllowed => $"this peer may not take the role '{settings.Role}' it asked for with --role",
            RefusalReason.WrongRegion => $"this peer does not belong to region '{settings.Region}' given with --region",
            RefusalReason.MalformedMessage => "the SuperNode could not read this agent's messages (a protocol version mismatch?)",
            _ => "the SuperNode refused this peer for good",
        };
        logger.LogError("Stopping: the SuperNode at {Endpoint} refused this peer with {Reason}: {Explanation} ({Detail})",
            endpoint.ToString(), end.ReasonName, explanation, end.Description);
        outcome.Stop(new PeerStop(1, $"{end.ReasonName}: {explanation}"));
        Context.Stop(Self);
    }

    private IDisposable? Scope() => logger.BeginScope(LogScope.Of(settings.Id, settings.Region, sessionId));
}
