using Akka.Actor;
using Google.Protobuf;
using Microsoft.Extensions.Logging;
using MyDvpn.Common;
using MyDvpn.Peer.Commands;
using MyDvpn.Peer.Tunnel;
using MyDvpn.Protocol.Control;
using MyDvpn.Security;

namespace MyDvpn.Peer.Control;

/// <summary>
/// Owns the peer's control stream: opens it to a SuperNode of the region, answers the challenge, answers pings,
/// hands commands to the <see cref="CommandExecutor"/> and sends its answers back. When the stream ends it
/// reconnects after a jittered exponential backoff — to the same SuperNode if the stream had been authenticated,
/// to the next known one if the attempt failed — unless the SuperNode refused the peer for good: then it logs why,
/// completes the <see cref="PeerOutcome"/> with exit code 1 and stops.
/// <para>
/// A client (role client or both) with <c>--exit-region</c> asks for an exit after each authentication while its
/// <see cref="TunnelState"/> holds none: one ExitRequest outstanding at a time, sent again when unanswered for
/// <see cref="PeerTimings.ExitRequestTimeout"/> or after a reconnect. An ExitRequestFailed is retried after a jittered
/// exponential backoff unless the <see cref="RefusalCatalogue"/> calls its reason permanent (a reason this version does
/// not know is retried); a permanent one stops the requests until the agent restarts, as a Disconnect does. A client-side
/// SetupExit ends the asking; a client-side RemoveExit starts it again. On a clean stop (<see cref="ReleaseExit"/>,
/// from the host's coordinated shutdown) a held exit is given back with an ExitRelease before the stream closes.
/// </para>
/// </summary>
public sealed class ControlChannel : ReceiveActor, IWithTimers
{
    /// <summary>A message read from the stream of <paramref name="Generation"/>.</summary>
    internal sealed record Incoming(int Generation, ControlMessage Message);

    /// <summary>The agent is stopping: give the exit back (ExitRelease) and reconnect no more. Answered with <see cref="ExitReleased"/>.</summary>
    public sealed record ReleaseExit
    {
        public static readonly ReleaseExit Instance = new();
    }

    /// <summary>The answer to <see cref="ReleaseExit"/>: whether an ExitRelease was written to the stream.</summary>
    public sealed record ExitReleased(bool Sent);

    private sealed record ExitReleaseWritten(string AssignmentId, bool Written, IActorRef ReplyTo);

    private sealed record ExitRequestDue
    {
        public static readonly ExitRequestDue Instance = new();
    }

    private sealed record ExitRequestUnanswered(int Generation);

    private sealed record StaleExitDropped
    {
        public static readonly StaleExitDropped Instance = new();
    }

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

    private const string ConnectTimer = "connect", AuthTimer = "auth-deadline", SilenceTimer = "silence",
        ExitRetryTimer = "exit-retry", ExitTimeoutTimer = "exit-timeout";

    private readonly PeerSettings settings;
    private readonly IActorRef executor;
    private readonly PeerStatus status;
    private readonly PeerOutcome outcome;
    private readonly TimeProvider time;
    private readonly ILogger logger;
    private readonly ReconnectBackoff backoff;
    private readonly SuperNodeRotation rotation;
    private readonly ServerCertificateValidator validator;
    private readonly WireGuardKey wireGuardKey;
    private readonly TunnelStateStore tunnel;
    private readonly ReconnectBackoff exitBackoff;
    private readonly CancellationTokenSource stopping = new();

    // The exit-related commands handed to the executor, by id, until their answer comes back.
    private readonly Dictionary<string, Command> exitCommands = new(StringComparer.Ordinal);

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

    // Asking for an exit.
    private ExitRequestState exitState;
    private int exitRequestGeneration;
    private ExitRequestError? lastExitError;
    private DateTimeOffset? nextExitAttempt;

    // Set by ReleaseExit: the agent is stopping, no reconnect and no more requests.
    private bool closing;

    public ITimerScheduler Timers { get; set; } = null!;

    /// <param name="enrolled">Whether the state directory records that this identity has enrolled.</param>
    /// <param name="wireGuardKey">This peer's WireGuard key: its public key goes into ExitRequests.</param>
    /// <param name="tunnel">The tunnel state: whether an exit is held decides whether to ask for one.</param>
    public static Props Props(PeerSettings settings, IActorRef executor, PeerStatus status, PeerOutcome outcome,
        TimeProvider time, ILogger logger, Random random, bool enrolled, WireGuardKey wireGuardKey, TunnelStateStore tunnel) =>
        Akka.Actor.Props.Create(() => new ControlChannel(settings, executor, status, outcome, time, logger, random, enrolled, wireGuardKey, tunnel));

    public ControlChannel(PeerSettings settings, IActorRef executor, PeerStatus status, PeerOutcome outcome,
        TimeProvider time, ILogger logger, Random random, bool enrolled, WireGuardKey wireGuardKey, TunnelStateStore tunnel)
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
        this.wireGuardKey = wireGuardKey;
        this.tunnel = tunnel;
        exitBackoff = new ReconnectBackoff(settings.Timings.ExitRetryBase, settings.Timings.ExitRetryCap, random);

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
        Receive<ExitRequestDue>(_ =>
        {
            if (exitState != ExitRequestState.WaitingRetry)
                return;
            exitState = ExitRequestState.Idle;
            nextExitAttempt = null;
            PublishExitStatus();
            MaybeRequestExit();
        });
        Receive<ExitRequestUnanswered>(OnExitRequestUnanswered);
        Receive<StaleExitDropped>(_ => MaybeRequestExit());
        Receive<Tunnel.InterfaceReadingChanged>(changed =>
        {
            if (phase == Phase.Connected && changed.Reading is { } reading)
                Send(new ControlMessage { StatusReport = StatusReportOf(reading) });
        });
        Receive<ReleaseExit>(_ => OnReleaseExit());
        Receive<ExitReleaseWritten>(OnExitReleaseWritten);
    }

    private bool WantsExit => AsksForExit(settings);

    /// <summary>Whether a peer with <paramref name="settings"/> asks for an exit: a client (or both) with <c>--exit-region</c>.</summary>
    public static bool AsksForExit(PeerSettings settings) =>
        settings.Role is PeerRole.Client or PeerRole.Both && settings.ExitRegion is not null;

    /// <summary>The exit-request status before anything was asked.</summary>
    public static ExitRequestStatus InitialExitStatus(PeerSettings settings) =>
        ExitRequestStatus.Idle with { Region = AsksForExit(settings) ? settings.ExitRegion : null };

    protected override void PreStart()
    {
        PublishExitStatus();
        Self.Tell(Connect.Instance);
    }

    protected override void PostStop()
    {
        connection?.Abort();
        stopping.Cancel();
        stopping.Dispose();
    }

    private bool IsCurrent(int streamGeneration) => connection is { } current && current.Generation == streamGeneration;

    private void Open()
    {
        if (connection is not null || closing)
            return;
        var endpoint = rotation.Current;
        // With a full tunnel up, the stream's socket carries WireGuard's mark so that it stays outside the tunnel.
        var mark = settings.DataPlane.Mode == DataPlaneMode.WireGuard ? MyDvpn.DataPlane.FullTunnelSpec.DefaultFirewallMark : (int?)null;
        var opened = new ControlConnection(++generation, endpoint, validator, Self, settings.Timings.ConnectTimeout, stopping.Token, mark);
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
                if (message.Command.BodyCase is Command.BodyOneofCase.SetupExit or Command.BodyOneofCase.RemoveExit or Command.BodyOneofCase.Disconnect
                    && !string.IsNullOrEmpty(message.Command.CommandId))
                {
                    exitCommands[message.Command.CommandId] = message.Command;
                }
                executor.Tell(new ExecuteCommand(message.Command));
                break;
            case (Phase.Connected, ControlMessage.PayloadOneofCase.ExitRequestFailed):
                OnExitRequestFailed(message.ExitRequestFailed);
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
        if (settings.Role is PeerRole.Exit or PeerRole.Both)
            request.ExitOffer = new ExitOffer { MaxClients = (uint)settings.DataPlane.MaxClients };
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
        if (tunnel.Current.Exit is { } held && held.AssignmentId != response.ExitAssignmentId)
        {
            DropStaleExit(held.AssignmentId, response.ExitAssignmentId);
            return;
        }
        MaybeRequestExit();
    }

    /// <summary>
    /// The session no longer holds the exit this agent keeps (it was released while the agent was away and the
    /// RemoveExit did not reach it in time): the agent drops it too, then asks again if it wants an exit.
    /// </summary>
    /// <summary>What the SuperNode learns of this peer's WireGuard interface: each peer's endpoint, handshake and bytes.</summary>
    private static StatusReport StatusReportOf(MyDvpn.DataPlane.InterfaceReading reading)
    {
        var report = new StatusReport();
        report.Peers.AddRange(reading.Peers.Select(p => new WireGuardPeerStatus
        {
            PublicKey = ByteString.CopyFrom(p.PublicKey),
            Endpoint = p.Endpoint ?? "",
            LastHandshake = p.LastHandshake is { } at ? Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(at) : null,
            RxBytes = p.RxBytes,
            TxBytes = p.TxBytes,
        }));
        return report;
    }

    private void DropStaleExit(string held, string sessionHolds)
    {
        using (Scope())
        {
            logger.LogWarning("The SuperNode's session holds {SessionAssignment} instead of exit assignment {HeldAssignment}; dropping the stale exit",
                sessionHolds.Length == 0 ? "no exit" : $"assignment {sessionHolds}", held);
        }
        tunnel.UpdateAsync(state => state.Exit?.AssignmentId == held ? state with { Exit = null } : state, stopping.Token)
            .PipeTo(Self, success: _ => StaleExitDropped.Instance, failure: _ => StaleExitDropped.Instance);
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
        }
        else
        {
            using (Scope())
            {
                logger.LogInformation(
                    "Answer to command {CommandId} not sent: no stream is up; the SuperNode resends the command and gets the same answer",
                    answered.Response.CommandId);
            }
        }
        if (exitCommands.Remove(answered.Response.CommandId, out var command))
            OnExitCommandApplied(command, answered.Response);
    }

    /// <summary>Sends an ExitRequest if this peer wants an exit, holds none, has none outstanding on this stream and may ask.</summary>
    private void MaybeRequestExit()
    {
        if (!WantsExit || closing || exitState is ExitRequestState.Stopped or ExitRequestState.WaitingRetry)
            return;
        if (tunnel.Current.Exit is not null)
        {
            Timers.Cancel(ExitTimeoutTimer);
            SetExitState(ExitRequestState.Idle);
            return;
        }
        if (phase != Phase.Connected || connection is not { } current)
            return;
        if (exitState == ExitRequestState.Requested && exitRequestGeneration == current.Generation)
            return;
        SendExitRequest(current.Generation);
    }

    private void SendExitRequest(int streamGeneration)
    {
        exitState = ExitRequestState.Requested;
        exitRequestGeneration = streamGeneration;
        nextExitAttempt = null;
        PublishExitStatus();
        using (Scope())
            logger.LogInformation("Asking for an exit in region {ExitRegion} with WireGuard key {WireGuardKey}", settings.ExitRegion, wireGuardKey.PublicKeyBase64);
        Timers.StartSingleTimer(ExitTimeoutTimer, new ExitRequestUnanswered(streamGeneration), settings.Timings.ExitRequestTimeout);
        Send(new ControlMessage
        {
            ExitRequest = new ExitRequest { Region = settings.ExitRegion, WireguardPublicKey = ByteString.CopyFrom(wireGuardKey.PublicKey) },
        });
    }

    private void OnExitRequestUnanswered(ExitRequestUnanswered unanswered)
    {
        if (exitState != ExitRequestState.Requested || !IsCurrent(unanswered.Generation) || phase != Phase.Connected || closing)
            return;
        if (tunnel.Current.Exit is not null)
        {
            SetExitState(ExitRequestState.Idle);
            return;
        }
        using (Scope())
        {
            logger.LogWarning("No answer to the ExitRequest for region {ExitRegion} within {TimeoutMs} ms; asking again",
                settings.ExitRegion, (long)settings.Timings.ExitRequestTimeout.TotalMilliseconds);
        }
        SendExitRequest(unanswered.Generation);
    }

    private void OnExitRequestFailed(ExitRequestFailed failed)
    {
        using var scope = Scope();
        var statusName = Refusals.GrpcStatusName(failed.GrpcStatus);
        var reasonName = RefusalReasons.WireName(failed.Reason);
        if (!WantsExit || closing || exitState == ExitRequestState.Stopped || tunnel.Current.Exit is not null)
        {
            logger.LogInformation("Ignoring ExitRequestFailed {GrpcStatus} {Reason} ({Detail}): no exit is being asked for",
                statusName, reasonName, failed.Detail);
            return;
        }
        Timers.Cancel(ExitTimeoutTimer);
        lastExitError = new ExitRequestError(statusName, reasonName, failed.Detail, time.GetUtcNow());
        if (Refusals.RetriesExitRequest(failed.Reason))
        {
            var delay = exitBackoff.Next();
            exitState = ExitRequestState.WaitingRetry;
            nextExitAttempt = time.GetUtcNow() + delay;
            PublishExitStatus();
            Timers.StartSingleTimer(ExitRetryTimer, ExitRequestDue.Instance, delay);
            logger.LogWarning("No exit in region {ExitRegion} for now: {GrpcStatus} {Reason} ({Detail}); asking again in {DelayMs} ms",
                failed.Region, statusName, reasonName, failed.Detail, (long)delay.TotalMilliseconds);
            return;
        }
        var fix = Refusals.ExplainExitRefusal(failed.Reason, settings.ExitRegion);
        StopExitRequests();
        logger.LogError("Not asking for an exit again until the agent restarts: the SuperNode refused it with {GrpcStatus} {Reason} ({Detail}): {Fix}",
            statusName, reasonName, failed.Detail, fix);
    }

    private void OnExitCommandApplied(Command command, CommandResponse response)
    {
        var applied = response.OutcomeCase == CommandResponse.OutcomeOneofCase.Result;
        using var scope = Scope();
        switch (command.BodyCase)
        {
            case Command.BodyOneofCase.SetupExit when command.SetupExit.Side == ExitSide.Client && applied:
                var setup = command.SetupExit;
                Timers.Cancel(ExitTimeoutTimer);
                Timers.Cancel(ExitRetryTimer);
                exitBackoff.Reset();
                lastExitError = null;
                nextExitAttempt = null;
                if (exitState != ExitRequestState.Stopped)
                    exitState = ExitRequestState.Idle;
                PublishExitStatus();
                logger.LogInformation("Using exit {ExitPeerId} of region {ExitRegion} at {Endpoint} (assignment {AssignmentId})",
                    setup.CounterpartPeerId, setup.CounterpartRegion, setup.Peer?.Endpoint, setup.AssignmentId);
                break;
            case Command.BodyOneofCase.RemoveExit when command.RemoveExit.Side is ExitSide.Client or ExitSide.Unspecified && applied:
                if (!WantsExit || closing || exitState != ExitRequestState.Idle || tunnel.Current.Exit is not null)
                    return;
                var delay = settings.Timings.ExitReaskDelay;
                exitState = ExitRequestState.WaitingRetry;
                nextExitAttempt = time.GetUtcNow() + delay;
                PublishExitStatus();
                Timers.StartSingleTimer(ExitRetryTimer, ExitRequestDue.Instance, delay);
                logger.LogWarning("The exit of assignment {AssignmentId} went away ({Reason}); asking for another in {DelayMs} ms",
                    command.RemoveExit.AssignmentId, command.RemoveExit.Reason, (long)delay.TotalMilliseconds);
                break;
            case Command.BodyOneofCase.Disconnect when WantsExit:
                var wasStopped = exitState == ExitRequestState.Stopped;
                StopExitRequests();
                if (!wasStopped)
                    logger.LogWarning("The SuperNode disconnected this peer ({Reason}): its exit is dropped, and no exit is asked for until the agent restarts", command.Disconnect.Reason);
                break;
        }
    }

    private void StopExitRequests()
    {
        Timers.Cancel(ExitTimeoutTimer);
        Timers.Cancel(ExitRetryTimer);
        exitState = ExitRequestState.Stopped;
        nextExitAttempt = null;
        PublishExitStatus();
    }

    private void SetExitState(ExitRequestState state)
    {
        if (exitState == state)
            return;
        exitState = state;
        PublishExitStatus();
    }

    private void PublishExitStatus()
    {
        var exitStatus = new ExitRequestStatus(WantsExit ? settings.ExitRegion : null, exitState, lastExitError, nextExitAttempt);
        status.Update(s => s with { ExitRequest = exitStatus });
    }

    private void OnReleaseExit()
    {
        closing = true;
        Timers.Cancel(ConnectTimer);
        Timers.Cancel(ExitTimeoutTimer);
        Timers.Cancel(ExitRetryTimer);
        if (phase != Phase.Connected || connection is not { } current || tunnel.Current.Exit is not { } exit)
        {
            Sender.Tell(new ExitReleased(false));
            return;
        }
        using (Scope())
            logger.LogInformation("Stopping: giving back exit {ExitPeerId} (assignment {AssignmentId})", exit.PeerId, exit.AssignmentId);
        var assignmentId = exit.AssignmentId;
        var replyTo = Sender;
        current.CloseAsync(new ControlMessage { ExitRelease = new ExitRelease { AssignmentId = assignmentId } })
            .WaitAsync(settings.Timings.ExitReleaseTimeout)
            .PipeTo(Self,
                success: sent => new ExitReleaseWritten(assignmentId, sent, replyTo),
                failure: _ => new ExitReleaseWritten(assignmentId, false, replyTo));
    }

    private void OnExitReleaseWritten(ExitReleaseWritten released)
    {
        using var scope = Scope();
        if (!released.Written)
        {
            logger.LogWarning("Could not send the ExitRelease of assignment {AssignmentId}; the SuperNode keeps the exit until it notices", released.AssignmentId);
            released.ReplyTo.Tell(new ExitReleased(false));
            return;
        }
        // Released on both sides by the session: the data plane must no longer use it.
        var assignmentId = released.AssignmentId;
        var replyTo = released.ReplyTo;
        tunnel.UpdateAsync(state => state.Exit?.AssignmentId == assignmentId ? state with { Exit = null } : state)
            .PipeTo(replyTo, success: _ => new ExitReleased(true), failure: _ => new ExitReleased(true));
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

        if (closing)
            return;
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
        // Permanent only for a reason the catalogue knows.
        var explanation = Refusals.Explain(end.Reason!.Value, settings, enrolled);
        logger.LogError("Stopping: the SuperNode at {Endpoint} refused this peer with {Reason}: {Explanation} ({Detail})",
            endpoint.ToString(), end.ReasonName, explanation, end.Description);
        outcome.Stop(new PeerStop(1, $"{end.ReasonName}: {explanation}"));
        Context.Stop(Self);
    }

    private IDisposable? Scope() => logger.BeginScope(LogScope.Of(settings.Id, settings.Region, sessionId));
}
