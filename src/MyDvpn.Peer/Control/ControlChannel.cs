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
/// Owns the peer's control stream and its asking for an exit. A thin actor over two pure machines: the
/// <see cref="ConnectionMachine"/> (connection, authentication, heartbeat, backoff, SuperNode failover, permanent stop)
/// and the <see cref="ExitRequestMachine"/> (one ExitRequest outstanding, timeout, retry by the refusal catalogue, asking again
/// after the exit went away). Every message goes to one of them; the actor runs the effects they decide — the only place
/// that touches the stream, timers, the executor, the tunnel state, the state directory and the
/// <see cref="PeerStatus"/>, which it sets from their states after each decision. What commands change of the exit
/// comes as <see cref="ExitChanged"/> from the executor, on the event stream; the channel does not read commands.
/// Timers run on the injected <see cref="TimeProvider"/> (<see cref="ClockTimers"/>). On a clean stop
/// (<see cref="ReleaseExit"/>, from the host's coordinated shutdown) a held exit is given back with an ExitRelease before
/// the stream closes.
/// </summary>
public sealed class ControlChannel : ReceiveActor
{
    private sealed record ConnectionEnded(int Generation, Exception? Cause);

    private sealed record ExitReleaseWritten(string AssignmentId, bool Written, IActorRef ReplyTo);

    private sealed record EnrollmentSaved(string Path);

    private sealed record EnrollmentSaveFailed(Exception Cause);

    private readonly PeerSettings settings;
    private readonly IActorRef executor;
    private readonly PeerStatus status;
    private readonly PeerOutcome outcome;
    private readonly TimeProvider time;
    private readonly ILogger logger;
    private readonly Random random;
    private readonly TunnelStateStore tunnel;
    private readonly ServerCertificateValidator validator;
    private readonly ClockTimers timers;
    private readonly CancellationTokenSource stopping = new();

    private ConnectionMachine connectionMachine;
    private ExitRequestMachine exitRequestMachine;
    private ControlConnection? connection;

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
        this.random = random;
        this.tunnel = tunnel;
        validator = new ServerCertificateValidator(settings.Ca, settings.Region, settings.Crl?.Revocations);
        var self = Self;
        timers = new ClockTimers(time, message => self.Tell(message));
        connectionMachine = ConnectionMachine.Initial(settings, enrolled);
        exitRequestMachine = ExitRequestMachine.Initial(settings, wireGuardKey.PublicKey);

        Receive<ClockTimers.Fired>(fired =>
        {
            if (timers.Accept(fired) is { } message)
                Decide(message);
        });
        Receive<Connect>(Connection);
        Receive<Incoming>(OnIncoming);
        Receive<ConnectionEnded>(ended => Connection(new StreamEnded(ended.Generation, Refusals.Classify(ended.Cause))));
        Receive<CommandAnswered>(Connection);
        Receive<InterfaceReadingChanged>(Connection);
        Receive<ExitChanged>(Exits);
        Receive<StaleExitDropped>(Exits);
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
        Receive<ReleaseExit>(_ => OnReleaseExit());
        Receive<ExitReleaseWritten>(OnExitReleaseWritten);
    }

    protected override void PreStart()
    {
        Context.System.EventStream.Subscribe(Self, typeof(ExitChanged));
        Publish();
        Self.Tell(Connect.Instance);
    }

    protected override void PostStop()
    {
        Context.System.EventStream.Unsubscribe(Self);
        timers.Dispose();
        connection?.Abort();
        stopping.Cancel();
        stopping.Dispose();
    }

    /// <summary>
    /// A message from the stream, to the connection machine; a revocation list a challenge carries is applied first, and
    /// a SuperNode it revokes gets no answer.
    /// </summary>
    private void OnIncoming(Incoming incoming)
    {
        if (incoming.Message.AuthChallenge is { Crl.IsEmpty: false } challenge)
        {
            ApplyRevocationList(challenge.Crl.ToByteArray(), challenge.SupernodeId);
            if (incoming.Server is { } server && validator.Revoked(server) is { } revoked)
            {
                Connection(new DropStream(revoked));
                return;
            }
        }
        Connection(incoming);
    }

    private void ApplyRevocationList(byte[] encoded, string superNodeId)
    {
        using var scope = Scope();
        if (settings.Crl is not { } store)
            return;
        try
        {
            var applied = store.Apply(encoded);
            if (applied.Applied)
            {
                logger.LogInformation("Revocation list number {CrlNumber} from SuperNode {SuperNodeId} applied ({Revoked} revoked certificates), kept in {Path}",
                    applied.List.Number, superNodeId, applied.List.Revoked.Count, PeerOptions.CrlFileName);
            }
        }
        catch (CertificateException ex)
        {
            // A list this CA did not sign changes nothing; the SuperNode's certificate was checked by TLS already.
            logger.LogWarning("Ignoring the revocation list SuperNode {SuperNodeId} sent: {Problem}", superNodeId, ex.Message);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            logger.LogWarning("Applied the revocation list SuperNode {SuperNodeId} sent, but could not keep it in the state directory: {Problem}",
                superNodeId, ex.Message);
        }
    }

    /// <summary>A timer's message, to the machine it belongs to.</summary>
    private void Decide(object message)
    {
        if (message is ExitRequestDue or ExitRequestUnanswered)
            Exits(message);
        else
            Connection(message);
    }

    private void Connection(object message)
    {
        var decision = connectionMachine.Decide(message, time.GetUtcNow(), random.NextDouble());
        connectionMachine = decision.State;
        Perform(decision.Effects);
    }

    private void Exits(object message)
    {
        var decision = exitRequestMachine.Decide(message, time.GetUtcNow(), random.NextDouble(), tunnel.Current.Exit?.AssignmentId);
        exitRequestMachine = decision.State;
        Perform(decision.Effects);
    }

    /// <summary>Runs the effects in order, then shows the machines' states (so a timer the status reveals is already running).</summary>
    private void Perform(IEnumerable<ChannelEffect> effects)
    {
        foreach (var effect in effects)
        {
            switch (effect)
            {
                case ChannelEffect.Send send:
                    Send(send.Message);
                    break;
                case ChannelEffect.StartTimer timer:
                    timers.Start(timer.Key, timer.Message, timer.Delay, timer.Periodic);
                    break;
                case ChannelEffect.CancelTimer cancel:
                    timers.Cancel(cancel.Key);
                    break;
                case ChannelEffect.Log log:
                    Note(log.Level, log.Template, log.Args);
                    break;
                case ChannelEffect.OpenStream open:
                    Open(open.Generation, open.Endpoint);
                    break;
                case ChannelEffect.EndStream:
                    connection?.Abort();
                    connection = null;
                    break;
                case ChannelEffect.AnswerChallenge answer:
                    Send(new ControlMessage { AuthRequest = AuthRequestFor(answer.Challenge, answer.PresentToken, answer.Server) });
                    break;
                case ChannelEffect.SaveEnrollment save:
                    var record = new EnrollmentRecord(settings.Id, settings.Key.PublicKeyBase64, save.SuperNodeId, save.At);
                    var stateDir = settings.StateDir;
                    record.SaveAsync(stateDir, stopping.Token).PipeTo(Self,
                        success: () => new EnrollmentSaved(EnrollmentRecord.PathIn(stateDir)),
                        failure: ex => new EnrollmentSaveFailed(ex));
                    break;
                case ChannelEffect.Execute execute:
                    executor.Tell(new ExecuteCommand(execute.Command));
                    break;
                case ChannelEffect.StopAgent stop:
                    outcome.Stop(stop.Stop);
                    Context.Stop(Self);
                    break;
                case ChannelEffect.TellExitRequestMachine tell:
                    Exits(tell.Message);
                    break;
                case ChannelEffect.DropStaleExit drop:
                    var held = drop.AssignmentId;
                    tunnel.UpdateAsync(state => state.Exit?.AssignmentId == held ? state with { Exit = null } : state, stopping.Token)
                        .PipeTo(Self, success: _ => StaleExitDropped.Instance, failure: _ => StaleExitDropped.Instance);
                    break;
            }
        }
        Publish();
    }

    private void Send(ControlMessage message)
    {
        if (connection is { } current && !current.TrySend(message))
            Connection(new DropStream($"the stream took no more messages (closed, or {ControlConnection.OutboxCapacity} waiting)"));
    }

    private void Open(int generation, HostPort endpoint)
    {
        // With a full tunnel up, the stream's socket carries WireGuard's mark so that it stays outside the tunnel.
        var mark = settings.DataPlane.Mode == DataPlaneMode.WireGuard ? MyDvpn.DataPlane.FullTunnelSpec.DefaultFirewallMark : (int?)null;
        var opened = new ControlConnection(generation, endpoint, validator, Self, settings.Timings.ConnectTimeout, stopping.Token, mark);
        connection = opened;
        opened.RunAsync().PipeTo(Self,
            success: () => new ConnectionEnded(generation, null),
            failure: ex => new ConnectionEnded(generation, ex));
    }

    private AuthRequest AuthRequestFor(AuthChallenge challenge, bool presentToken, ServerCertificate server)
    {
        // An exit's offer is signed with the rest: the region gives it clients by that number.
        var offer = settings.Role is PeerRole.Exit or PeerRole.Both ? (uint)settings.DataPlane.MaxClients : 0;
        var transcript = PeerAuthTranscript.Encode(settings.Id, (int)settings.Role, settings.Region, challenge.Challenge.Span, challenge.SupernodeId,
            server.Sha256, offer);
        var request = new AuthRequest
        {
            PeerId = settings.Id,
            Role = settings.Role,
            Region = settings.Region,
            Challenge = challenge.Challenge,
            Signature = ByteString.CopyFrom(settings.Key.Sign(transcript)),
        };
        if (offer > 0)
            request.ExitOffer = new ExitOffer { MaxClients = offer };
        if (presentToken)
        {
            request.EnrollmentToken = settings.Token;
            request.PublicKey = ByteString.CopyFrom(settings.Key.PublicKey);
        }
        return request;
    }

    private void OnReleaseExit()
    {
        Connection(ChannelClosing.Instance);
        Exits(ChannelClosing.Instance);
        if (connectionMachine.Phase != ConnectionPhase.Connected || connection is not { } current || tunnel.Current.Exit is not { } exit)
        {
            Sender.Tell(new ExitReleased(false));
            return;
        }
        using (Scope())
            logger.LogInformation("Stopping: giving back exit {ExitPeerId} (assignment {AssignmentId})", exit.PeerId, exit.AssignmentId);
        var assignmentId = exit.AssignmentId;
        var replyTo = Sender;
        current.CloseAsync(new ControlMessage { ExitRelease = new ExitRelease { AssignmentId = assignmentId } })
            .WaitAsync(settings.Timings.ExitReleaseTimeout, time)
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

    /// <summary>The status readers see: the two machines' states.</summary>
    private void Publish()
    {
        var c = connectionMachine;
        var snapshot = new PeerStatusSnapshot(c.Phase == ConnectionPhase.Connected, c.Endpoint, c.SuperNodeId, c.SessionId, c.Attempts,
            c.Authentications, c.LastProblem);
        var exitRequest = exitRequestMachine.Status;
        status.Update(_ => snapshot with { ExitRequest = exitRequest });
    }

    private void Note(LogLevel level, string template, object?[] args)
    {
        if (!logger.IsEnabled(level))
            return;
        using (Scope())
#pragma warning disable CA2254 // The templates are the machines' constants, carried in effects.
            logger.Log(level, template, args);
#pragma warning restore CA2254
    }

    private IDisposable? Scope() => logger.BeginScope(LogScope.Of(settings.Id, settings.Region, connectionMachine.SessionId));
}
