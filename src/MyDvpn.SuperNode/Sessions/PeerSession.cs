using Akka.Actor;
using Akka.Cluster.Sharding;
using Akka.Event;
using Akka.Persistence;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using MyDvpn.Hosting;
using MyDvpn.Protocol.Control;
using MyDvpn.Protocol.SuperNode;
using MyDvpn.SuperNode.Exits;
using MyDvpn.SuperNode.Relay;
using ControlCommand = MyDvpn.Protocol.Control.Command;
using StatusCode = Grpc.Core.StatusCode;

namespace MyDvpn.SuperNode.Sessions;

/// <summary>
/// The durable truth about one peer (sharded entity type <see cref="PeerSessionEntityTypes.Peers"/>, entity id = peer
/// id): its enrollment, revocation, latest session and the commands in flight to it.
/// <para>
/// <b>Authentication.</b> <see cref="AuthenticatePeer"/> is decided by <see cref="PeerState.DecideAuthentication"/>; an
/// unknown peer's token is redeemed through <see cref="IEnrollmentClient"/> off the actor thread (piped back), while
/// further authentications wait in the stash. Every success persists a <see cref="SessionStarted"/> with a new id.
/// </para>
/// <para>
/// <b>Commands.</b> <see cref="CommandIssued"/> is persisted before the first delivery. While a stream is attached a
/// command is delivered up to <see cref="PeerSessionSettings.MaxAttempts"/> times with backoff; without a stream it
/// waits, and every command in flight is delivered again, in issue order, when a stream attaches. The deadline ends
/// it either way (<see cref="CommandFailed"/>). An answer persists <see cref="CommandCompleted"/>. The outcome goes to
/// the issuer and, durably, as <see cref="CommandOutcomeFor"/> to the session of the peer it was issued for.
/// Delivery counts and issuers live in memory only: after a restart, commands still in flight are delivered on the
/// next attach (the peer answers a duplicate with its first answer) and fail when their deadline passes.
/// </para>
/// <para>
/// <b>What sharding must do</b> (the host wires it): hand-off stop message <see cref="StopPeerSession.Instance"/>; no
/// idle passivation by sharding, since messages from the session's own timers and from a watched edge do not count
/// as activity there — the session passivates itself after <see cref="PeerSessionSettings.PassivateIdleAfter"/> only
/// when it has no stream, no command in flight and no enrollment under way. Remember-entities (event-sourced store)
/// restarts sessions that were running when their node died, so their commands still fail at the deadline and reach
/// the rollback step without waiting for the peer to come back. The edge should <c>Tell</c> <see cref="AttachStream"/>,
/// watch the sender of <see cref="StreamAttached"/>, and attach again through the shard region with the same session
/// id when that session terminates (hand-off, rebalance, crash).
/// </para>
/// <para>
/// <b>Exits</b> (ARCHITECTURE §4 Direct). A client's <see cref="RequestExit"/> persists <see cref="ExitRequested"/> and
/// asks the exit's region through <see cref="IExitAllocator"/> (its pool has the exit ack SetupExit first); the answer
/// persists <see cref="ExitAssigned"/> with the client's own SetupExit, or <see cref="ExitRequestRefused"/> and an
/// ExitRequestFailed to the peer. The client's answer to its SetupExit makes the assignment active — or failed, and
/// then it is rolled back: RemoveExit to the client, the exit's half released at its region, ExitRequestFailed. A
/// Disconnect, an ExitRelease from the client or a revocation releases both halves; a release is retried until the
/// exit's region confirms it. An exit's session announces it to its region's pool while its stream is attached and
/// keeps the clients it serves (from its acked SetupExit and RemoveExit commands).
/// </para>
/// </summary>
public sealed class PeerSession : ReceivePersistentActor, IWithTimers
{
    /// <summary>The persistence id is this prefix, the region, a dash and the peer id.</summary>
    // "/" cannot occur in a region name or a peer id, so no two (region, peer) pairs share an id.
    public const string PersistenceIdPrefix = "peer/";

    private const string CommandTimerPrefix = "command:";
    private const string ExitHeartbeatTimer = "exit-heartbeat";
    private const string ReleaseTimer = "exit-release";
    private const string DirectPathTimer = "direct-path";
    private const string JournalUnavailable = "the session journal is unavailable; retry";

    private readonly PeerSessionSettings _settings;
    private readonly IEnrollmentClient _enrollment;
    private readonly IActorRef? _peersShardRegion;
    private readonly TimeProvider _time;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly Snapshots _snapshots;
    private readonly CancellationTokenSource _lifetime = new();

    // Not persisted: what a restart forgets.
    private readonly Dictionary<string, int> _deliveries = new(StringComparer.Ordinal);
    private readonly Dictionary<string, IActorRef> _issuers = new(StringComparer.Ordinal);
    private readonly List<AwaitingJournal> _awaitingJournal = [];
    private IActorRef? _edge;
    private bool _redeeming;
    private readonly ExitServices? _exits;
    private string _remoteAddress = "";
    private int _exitCapacity;
    private TimeSpan? _rtt;
    private string _shownAssignments = "";
    private string? _releaseStartedFor;
    // Whether the pool was told this peer is an exit: only then is it told when it is not any more.
    private bool _exitAnnounced;
    // A client's StatusReport showed a handshake with its exit: the direct path works (until the next assignment).
    private bool _directConfirmed;
    private bool _directPathOverdue;
    private bool _relayStarting;
    // Why a new chain is due while the client has no stream (its address is needed): set up when it attaches again.
    private string? _relayDue;

    private PeerState _state;

    public PeerSession(
        string peerId,
        string region,
        PeerSessionSettings settings,
        IEnrollmentClient enrollment,
        IActorRef? peersShardRegion,
        TimeProvider time,
        ExitServices? exits)
    {
        _settings = settings;
        _exits = exits;
        _enrollment = enrollment;
        _peersShardRegion = peersShardRegion;
        _time = time;
        _state = PeerState.Empty(peerId, region, settings.RememberCompleted);
        PersistenceId = PersistenceIdFor(region, peerId);
        _snapshots = new Snapshots(this, settings.SnapshotEvery, _log, $"Session of peer {peerId}");

        Recover<SnapshotOffer>(offer =>
            _snapshots.Restore<PeerSnapshot>(offer, snapshot => _state = PeerState.FromSnapshot(snapshot, _settings.RememberCompleted)));
        Recover<IPeerSessionEvent>(evt => _state = _state.Apply(evt));
        Recover<RecoveryCompleted>(_ => OnRecovered());

        Command<AuthenticatePeer>(HandleAuthenticate);
        Command<RedemptionFinished>(HandleRedemption);
        Command<AttachStream>(HandleAttach);
        Command<Terminated>(HandleTerminated);
        Command<IssueCommand>(HandleIssue);
        Command<CommandAnswered>(HandleAnswer);
        Command<CommandTimerFired>(HandleCommandTimer);
        Command<RevokePeer>(HandleRevoke);
        Command<GetPeerState>(_ => Sender.Tell(_state.View(_edge is not null)));
        Command<CommandOutcomeFor>(HandleOutcomeFor);
        Command<ReceiveTimeout>(_ => HandleIdle());
        Command<RequestExit>(HandleRequestExit);
        Command<AllocationFinished>(HandleAllocationFinished);
        Command<ClientReleasesExit>(release =>
        {
            if (_state.Exit?.AssignmentId == release.AssignmentId)
                StartRelease("released by the client", removeFromClient: true);
        });
        Command<ReleaseFinished>(HandleReleaseFinished);
        Command<RetryRelease>(_ => SendRelease());
        Command<PeerRttMeasured>(measured => _rtt = measured.Rtt);
        Command<ExitHeartbeatTick>(_ => AnnounceExit());
        Command<HandshakesReported>(HandleHandshakes);
        Command<DirectPathExpired>(expired =>
        {
            if (_state.Exit is not { Phase: ExitPhase.Active } exit || exit.AssignmentId != expired.AssignmentId)
                return;
            if (expired.Retry)
            {
                // An earlier attempt at a chain (a first one, or a new one for a chain that broke) failed.
                StartRelay(exit, "the last attempt at a relay chain failed; trying again");
                return;
            }
            if (exit.ClientRelayLeg is not null || _directConfirmed)
                return;
            // Decided by the next StatusReport: one without a handshake with the exit sets up the relay.
            _directPathOverdue = true;
        });
        Command<RelayFinished>(HandleRelayFinished);
        Command<RelayLegLost>(lost =>
        {
            if (_state.Exit is { Phase: ExitPhase.Active, ClientRelayLeg: not null } exit && exit.AssignmentId == lost.AssignmentId)
                StartRelay(exit, $"SuperNode {lost.SuperNodeId} lets its leg of the chain go ({lost.Reason})");
        });
        Command<StopPeerSession>(_ => Context.Stop(Self));
        Command<ISnapshotResponse>(_snapshots.Handle);
    }

    public override string PersistenceId { get; }

    public ITimerScheduler Timers { get; set; } = null!;

    private string PeerId => _state.PeerId;

    public static string PersistenceIdFor(string region, string peerId) => PersistenceIdPrefix + region + "/" + peerId;

    /// <param name="peersShardRegion">
    /// The <c>peers</c> shard region, for <see cref="CommandOutcomeFor"/>; null: those outcomes are not sent.
    /// </param>
    /// <param name="time">The clock for deadlines and event times; the system clock when null.</param>
    /// <param name="exits">Exit allocation; null: exit requests are refused as unavailable.</param>
    public static Props Props(
        string peerId,
        string region,
        PeerSessionSettings settings,
        IEnrollmentClient enrollment,
        IActorRef? peersShardRegion,
        TimeProvider? time = null,
        ExitServices? exits = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(peerId);
        ArgumentException.ThrowIfNullOrEmpty(region);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(enrollment);
        settings.Validate();
        var clock = time ?? TimeProvider.System;
        exits?.Settings.Validate();
        return Akka.Actor.Props.Create(() => new PeerSession(peerId, region, settings, enrollment, peersShardRegion, clock, exits));
    }

    protected override void PostStop()
    {
        _lifetime.Cancel();
        _lifetime.Dispose();
        base.PostStop();
    }

    /// <summary>Whoever waits for a persist gets a refusal instead of silence; the session then stops.</summary>
    protected override void OnPersistFailure(Exception cause, object @event, long sequenceNr)
    {
        _log.Error(cause, "Session of peer {0}: persisting {1} (sequence number {2}) failed; the session stops",
            PeerId, @event.GetType().Name, sequenceNr);
        foreach (var waiting in _awaitingJournal)
        {
            waiting.ReplyTo.Tell(waiting.ReplyIfLost);
        }

        _awaitingJournal.Clear();
    }

    protected override void OnPersistRejected(Exception cause, object @event, long sequenceNr)
    {
        _log.Error(cause, "Session of peer {0}: the journal rejected {1} (sequence number {2})",
            PeerId, @event.GetType().Name, sequenceNr);
        var waiting = _awaitingJournal.Find(w => w.Events.Any(e => ReferenceEquals(e, @event)));
        if (waiting is not null)
        {
            _awaitingJournal.Remove(waiting);
            waiting.ReplyTo.Tell(waiting.ReplyIfLost);
        }
    }

    private void OnRecovered()
    {
        var now = _time.GetUtcNow();
        foreach (var command in _state.InFlight)
        {
            // No stream yet: each command waits for an attach, and fails if its deadline comes first (at once if past).
            ArmCommandTimer(command.CommandId, command.Deadline - now);
        }

        if (_settings.PassivateIdleAfter is { } idle)
        {
            Context.SetReceiveTimeout(idle);
        }

        // An exit step the last incarnation left under way goes on from where the journal says it was.
        switch (_state.Exit?.Phase)
        {
            case ExitPhase.Requested:
                StartAllocation(_state.Exit);
                break;
            case ExitPhase.SetupFailed:
                RollBackFailedSetup();
                break;
            case ExitPhase.Releasing:
                SendRelease();
                break;
        }

        if (_state.Enrolled || _state.Revoked)
        {
            _log.Debug("Session of peer {0} recovered: enrolled {1}, revoked {2}, {3} commands in flight",
                PeerId, _state.Enrolled, _state.Revoked, _state.InFlight.Count);
        }
    }

    private void HandleAuthenticate(AuthenticatePeer request)
    {
        if (_redeeming)
        {
            // One enrollment at a time: the next attempt is decided against the state the redemption leaves.
            Stash.Stash();
            return;
        }

        var sender = Sender;
        switch (_state.DecideAuthentication(request))
        {
            case AuthDecision.Refuse refuse:
                Refuse(sender, refuse.Reason, refuse.Detail);
                break;
            case AuthDecision.StartSession start:
                StartSession(sender, [], start.Role);
                break;
            case AuthDecision.Enroll enroll:
                _redeeming = true;
                RedeemAsync(_enrollment, enroll, PeerId, _state.Region, _settings.EnrollmentTimeout, _lifetime.Token)
                    .PipeTo(Self,
                        success: result => new RedemptionFinished(sender, enroll, result),
                        failure: e => new RedemptionFinished(sender, enroll, new EnrollmentResult.Unavailable(e.Message)));
                break;
        }
    }

    private void HandleRedemption(RedemptionFinished finished)
    {
        _redeeming = false;
        Stash.UnstashAll();
        switch (finished.Result)
        {
            case EnrollmentResult.Redeemed when _state.Revoked:
                Refuse(finished.ReplyTo, RefusalReason.Revoked, "the peer was revoked while it enrolled");
                break;
            case EnrollmentResult.Redeemed redeemed:
                var enrolled = new PeerEnrolled(finished.Enroll.Role, finished.Enroll.PublicKey, redeemed.TokenId, _time.GetUtcNow());
                _log.Info("Session of peer {0}: enrolling as {1} with token {2}", PeerId, enrolled.Role, enrolled.TokenId);
                StartSession(finished.ReplyTo, [enrolled], finished.Enroll.Role);
                break;
            case EnrollmentResult.Refused refused:
                Refuse(finished.ReplyTo, refused.Reason, refused.Detail);
                break;
            case EnrollmentResult.Unavailable unavailable:
                _log.Warning("Session of peer {0}: the enrollment token could not be redeemed: {1}", PeerId, unavailable.Detail);
                Refuse(finished.ReplyTo, RefusalReason.Unavailable, "the directory cannot be reached to enroll; retry");
                break;
        }
    }

    private void StartSession(IActorRef replyTo, IReadOnlyList<IPeerSessionEvent> before, PeerRole role)
    {
        var started = new SessionStarted(Guid.NewGuid().ToString("N"), role, _time.GetUtcNow());
        PersistFor(replyTo, new PeerRefused(PeerId, RefusalReason.Unavailable, JournalUnavailable), [.. before, started],
            _ => { },
            () =>
            {
                _log.Info("Session of peer {0}: authenticated as {1}, session {2}", PeerId, role, started.SessionId);
                var exit = _state.Exit is { Phase: ExitPhase.Requested or ExitPhase.SettingUp or ExitPhase.Active } held ? held.AssignmentId : null;
                replyTo.Tell(new PeerAuthenticated(PeerId, role, started.SessionId, exit));
            });
    }

    private void Refuse(IActorRef replyTo, RefusalReason reason, string detail)
    {
        _log.Warning("Security: peer {0} refused in region {1}: {2} ({3})", PeerId, _state.Region, reason, detail);
        replyTo.Tell(new PeerRefused(PeerId, reason, detail));
    }

    private void HandleAttach(AttachStream attach)
    {
        var sender = Sender;
        if (_state.Revoked)
        {
            sender.Tell(new CloseStream(RefusalReason.Revoked, "the peer is revoked"));
            return;
        }

        if (_state.SessionId is null)
        {
            sender.Tell(new CloseStream(RefusalReason.UnknownPeer, "the peer has not authenticated"));
            return;
        }

        if (attach.SessionId != _state.SessionId)
        {
            sender.Tell(new CloseStream(RefusalReason.Replaced,
                $"session {attach.SessionId} was replaced by a newer authentication of the peer"));
            return;
        }

        if (attach.Edge.Equals(_edge))
        {
            sender.Tell(new StreamAttached(PeerId, attach.SessionId));
            return;
        }

        CloseEdge(RefusalReason.Replaced, "a newer stream of the peer took over");
        _edge = attach.Edge;
        Context.Watch(_edge);
        _remoteAddress = attach.RemoteAddress;
        _exitCapacity = attach.ExitCapacity;
        _shownAssignments = "";
        _log.Info("Session of peer {0}: stream of session {1} attached at {2}, {3} commands to deliver",
            PeerId, attach.SessionId, _edge.Path, _state.InFlight.Count);
        sender.Tell(new StreamAttached(PeerId, attach.SessionId));
        foreach (var command in _state.InFlight)
        {
            Deliver(command);
        }

        ShowAssignments();
        ArmDirectPathCheck();
        CheckRelayLegHere();
        if (ServesAsExit)
        {
            AnnounceExit();
            Timers.StartPeriodicTimer(ExitHeartbeatTimer, ExitHeartbeatTick.Instance, _exits!.Settings.ExitHeartbeat);
        }
    }

    private bool ServesAsExit => _exits is not null && _exitCapacity > 0 && _state.SessionRole is PeerRole.Exit or PeerRole.Both;

    private void HandleTerminated(Terminated terminated)
    {
        if (!terminated.ActorRef.Equals(_edge))
        {
            return;
        }

        _edge = null;
        _log.Info("Session of peer {0}: stream detached, {1} commands wait for the next one", PeerId, _state.InFlight.Count);
        WithdrawExit();
    }

    private void CloseEdge(RefusalReason reason, string detail)
    {
        if (_edge is not { } edge)
        {
            return;
        }

        Context.Unwatch(edge);
        edge.Tell(new CloseStream(reason, detail));
        _edge = null;
        WithdrawExit();
    }

    private void HandleIssue(IssueCommand issue)
    {
        var sender = Sender;
        var decision = _state.DecideIssue(issue, Guid.NewGuid().ToString("N"), _time.GetUtcNow(), _settings.DefaultDeadline);
        switch (decision)
        {
            case IssueDecision.Refuse refuse:
                _log.Info("Session of peer {0}: command {1} not issued: {2}", PeerId, refuse.CommandId, refuse.Reason);
                Announce(sender, issue.ReplyToPeerId, new CommandOutcome(PeerId, refuse.CommandId, null, refuse.Reason));
                break;
            case IssueDecision.AlreadyInFlight inFlight:
                RememberIssuer(inFlight.CommandId, sender);
                sender.Tell(new CommandAccepted(PeerId, inFlight.CommandId));
                break;
            case IssueDecision.Issue issued:
                var id = issued.Event.CommandId;
                PersistFor(sender, new CommandOutcome(PeerId, id, null, "not issued: " + JournalUnavailable), [issued.Event],
                    _ => { },
                    () =>
                    {
                        RememberIssuer(id, sender);
                        sender.Tell(new CommandAccepted(PeerId, id));
                        Deliver(_state.FindInFlight(id)!);
                        if (issue.Command.BodyCase == ControlCommand.BodyOneofCase.Disconnect && _state.Exit is not null)
                        {
                            // The Disconnect itself makes the client drop its half.
                            StartRelease($"disconnected: {issue.Command.Disconnect.Reason}", removeFromClient: false);
                        }
                    });
                break;
        }
    }

    /// <summary>The latest issuer of a command id gets its outcome (an earlier one may have been an Ask, long gone).</summary>
    private void RememberIssuer(string commandId, IActorRef issuer)
    {
        if (!issuer.IsNobody())
        {
            _issuers[commandId] = issuer;
        }
    }

    /// <summary>Delivers to the attached stream and waits for the answer; without a stream waits for one (or the deadline).</summary>
    private void Deliver(InFlightCommand command)
    {
        var untilDeadline = command.Deadline - _time.GetUtcNow();
        if (_edge is null || untilDeadline <= TimeSpan.Zero)
        {
            // Waits for a stream; a command past its deadline is never delivered, its timer fails it.
            ArmCommandTimer(command.CommandId, untilDeadline);
            return;
        }

        var deliveries = _deliveries.GetValueOrDefault(command.CommandId) + 1;
        _deliveries[command.CommandId] = deliveries;
        _edge.Tell(new DeliverCommand(command.Command.Clone()));
        var wait = _settings.WaitAfterDelivery(deliveries);
        ArmCommandTimer(command.CommandId, wait < untilDeadline ? wait : untilDeadline);
    }

    private void ArmCommandTimer(string commandId, TimeSpan delay) =>
        Timers.StartSingleTimer(CommandTimerPrefix + commandId, new CommandTimerFired(commandId),
            delay > TimeSpan.Zero ? delay : TimeSpan.Zero);

    private void HandleCommandTimer(CommandTimerFired timer)
    {
        var deliveries = _deliveries.GetValueOrDefault(timer.CommandId);
        switch (_state.DecideRetry(timer.CommandId, _time.GetUtcNow(), _edge is not null, deliveries, _settings.MaxAttempts))
        {
            case CommandStep.Deliver:
                _log.Debug("Session of peer {0}: no answer to command {1} after {2} deliveries, delivering again",
                    PeerId, timer.CommandId, deliveries);
                Deliver(_state.FindInFlight(timer.CommandId)!);
                break;
            case CommandStep.AwaitStream wait:
                ArmCommandTimer(timer.CommandId, wait.UntilDeadline);
                break;
            case CommandStep.Fail fail:
                var command = _state.FindInFlight(timer.CommandId);
                Persist(fail.Event, evt =>
                {
                    ApplyPersisted(evt);
                    _log.Warning("Session of peer {0}: command {1} failed: {2}", PeerId, evt.CommandId, evt.Reason);
                    Conclude(command, new CommandOutcome(PeerId, evt.CommandId, null, evt.Reason));
                });
                break;
        }
    }

    private void HandleAnswer(CommandAnswered answered)
    {
        var response = answered.Response;
        var completed = _state.DecideAnswer(response, _time.GetUtcNow());
        if (completed is null)
        {
            _log.Debug("Session of peer {0}: ignoring an answer to command {1}, which is {2}", PeerId, response.CommandId,
                _state.IsFinished(response.CommandId) ? "already finished" : "unknown");
            return;
        }

        var command = _state.FindInFlight(completed.CommandId);
        var outcome = new CommandOutcome(PeerId, completed.CommandId, response.Clone(), null);
        Persist(completed, evt =>
        {
            ApplyPersisted(evt);
            Conclude(command, outcome);
        });
    }

    /// <summary>The command is finished: its timer stops and the issuer and the peer it was issued for hear of it.</summary>
    private void Conclude(InFlightCommand? command, CommandOutcome outcome)
    {
        Timers.Cancel(CommandTimerPrefix + outcome.CommandId);
        _deliveries.Remove(outcome.CommandId);
        _issuers.Remove(outcome.CommandId, out var issuer);
        Announce(issuer, command?.ReplyToPeerId, outcome);
        if (_state.Exit is { Phase: ExitPhase.SetupFailed })
        {
            RollBackFailedSetup();
        }
        else if (_state.Exit is { Phase: ExitPhase.Active } exit && exit.SetupCommandId == outcome.CommandId)
        {
            _log.Info("Session of peer {0}: exit {1}@{2} active (assignment {3}, address {4})", PeerId, exit.Assignment!.ExitPeerId,
                exit.Region, exit.AssignmentId, exit.Assignment.ClientAddress);
            _directConfirmed = false;
            ArmDirectPathCheck();
        }

        ShowAssignments();
    }

    private void Announce(IActorRef? issuer, string? replyToPeerId, CommandOutcome outcome)
    {
        if (issuer is not null && !issuer.IsNobody())
        {
            issuer.Tell(outcome);
        }

        if (replyToPeerId is not null)
        {
            _peersShardRegion?.Tell(new CommandOutcomeFor(replyToPeerId, outcome));
        }
    }

    private void HandleRevoke(RevokePeer revoke)
    {
        var sender = Sender;
        var events = _state.DecideRevoke(_time.GetUtcNow());
        if (events.IsEmpty)
        {
            sender.Tell(new PeerRevoked(PeerId));
            return;
        }

        var inFlight = _state.InFlight;
        PersistFor(sender, new Status.Failure(new InvalidOperationException(JournalUnavailable)), events,
            evt =>
            {
                switch (evt)
                {
                    case PeerRevoked:
                        _log.Warning("Session of peer {0}: revoked", PeerId);
                        CloseEdge(RefusalReason.Revoked, "the peer was revoked");
                        break;
                    case CommandFailed failed:
                        Conclude(inFlight.Find(c => c.CommandId == failed.CommandId),
                            new CommandOutcome(PeerId, failed.CommandId, null, failed.Reason));
                        break;
                }
            },
            () =>
            {
                sender.Tell(new PeerRevoked(PeerId));
                StartRelease("peer revoked", removeFromClient: false);
            });
    }

    private void HandleOutcomeFor(CommandOutcomeFor outcome) =>
        // The hand-over point to this session's rollback step: the flows that issue commands on another peer's
        // behalf (exit setup, relay, rotation) act on it when they arrive.
        _log.Info("Session of peer {0}: command {1} on peer {2} ended: {3}", PeerId, outcome.Outcome.CommandId,
            outcome.Outcome.PeerId, outcome.Outcome.FailureReason ?? outcome.Outcome.Response?.OutcomeCase.ToString());

    private void HandleRequestExit(RequestExit request)
    {
        var decision = _state.DecideExitRequest(request.Region, request.ClientPublicKey ?? [], Guid.NewGuid().ToString("N"), _time.GetUtcNow());
        switch (decision)
        {
            case ExitRequestDecision.Refuse refuse:
                TellPeerExitFailed(request.Region, refuse.Code, refuse.Reason, refuse.Detail);
                break;
            case ExitRequestDecision.InProgress:
                _log.Debug("Session of peer {0}: exit request for {1} ignored, assignment {2} is under way", PeerId, request.Region,
                    _state.Exit?.AssignmentId);
                break;
            case ExitRequestDecision.Reissue reissue:
                _log.Info("Session of peer {0}: asked again for the exit it holds; sending its SetupExit again", PeerId);
                IssueInternally(ClientSetup(reissue.Exit.Assignment!, Guid.NewGuid().ToString("N")));
                if (reissue.Exit.ClientRelayLeg is { } leg)
                {
                    // Its SetupExit carries the direct endpoint: point it at its relay leg again.
                    IssueInternally(RelaySetupFor(reissue.Exit.Assignment!, leg));
                }
                break;
            case ExitRequestDecision.ReleaseFirst releaseFirst:
                StartRelease(releaseFirst.Reason, removeFromClient: true);
                TellPeerExitFailed(request.Region, StatusCode.Unavailable, RefusalReason.Unavailable,
                    "the previous exit is being released first; ask again shortly");
                break;
            case ExitRequestDecision.Start start:
                if (_exits is null)
                {
                    TellPeerExitFailed(request.Region, StatusCode.Unavailable, RefusalReason.Unavailable, "exit allocation is not configured on this SuperNode");
                    return;
                }

                Persist(start.Event, evt =>
                {
                    ApplyPersisted(evt);
                    _log.Info("Session of peer {0}: asking region {1} for an exit (assignment {2})", PeerId, evt.Region, evt.AssignmentId);
                    ShowAssignments();
                    StartAllocation(_state.Exit!);
                });
                break;
        }
    }

    private void StartAllocation(ClientExit exit)
    {
        if (_exits is null)
        {
            Self.Tell(new AllocationFinished(exit.AssignmentId, new ExitAllocationResult.Refused(StatusCode.Unavailable,
                RefusalReason.Unavailable, "exit allocation is not configured on this SuperNode")));
            return;
        }

        var request = new AllocateExitRequest
        {
            AssignmentId = exit.AssignmentId,
            Region = exit.Region,
            ClientPeerId = PeerId,
            ClientRegion = _state.Region,
            ClientPublicKey = ByteString.CopyFrom(exit.ClientPublicKey),
        };
        var timeout = _exits.Settings.AllocationTimeout;
        AllocateAsync(_exits.Allocator, request, timeout, _lifetime.Token).PipeTo(Self,
            success: result => new AllocationFinished(exit.AssignmentId, result),
            failure: e => new AllocationFinished(exit.AssignmentId,
                new ExitAllocationResult.Refused(StatusCode.Unavailable, RefusalReason.RegionUnreachable, e.Message)));
    }

    private static async Task<ExitAllocationResult> AllocateAsync(IExitAllocator allocator, AllocateExitRequest request, TimeSpan timeout,
        CancellationToken lifetime)
    {
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(lifetime);
        cancel.CancelAfter(timeout);
        try
        {
            return await allocator.AllocateAsync(request, cancel.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or Grpc.Core.RpcException && !lifetime.IsCancellationRequested)
        {
            return new ExitAllocationResult.Refused(StatusCode.DeadlineExceeded, RefusalReason.RegionUnreachable,
                $"region {request.Region} did not allocate an exit within {timeout.TotalSeconds:0} s");
        }
    }

    private void HandleAllocationFinished(AllocationFinished finished)
    {
        var exit = _state.Exit;
        if (exit is not { Phase: ExitPhase.Requested } || exit.AssignmentId != finished.AssignmentId)
        {
            if (finished.Result is ExitAllocationResult.Allocated allocated)
            {
                // Released or replaced while the region worked on it: give it back so no exit keeps a place for nobody.
                _log.Info("Session of peer {0}: assignment {1} arrived after it was given up; releasing it", PeerId, finished.AssignmentId);
                ReleaseAtRegionAsync(allocated.Assignment.Region, finished.AssignmentId, "given up by the client's session before it completed");
            }

            return;
        }

        switch (finished.Result)
        {
            case ExitAllocationResult.Allocated allocated:
                var setup = ClientSetup(allocated.Assignment, Guid.NewGuid().ToString("N"));
                var issued = _state.DecideIssue(new IssueCommand(PeerId, setup), setup.CommandId, _time.GetUtcNow(), _exits!.Settings.ClientSetupTimeout);
                if (issued is not IssueDecision.Issue issue)
                {
                    Self.Tell(new AllocationFinished(finished.AssignmentId, new ExitAllocationResult.Refused(StatusCode.Internal,
                        RefusalReason.ExitSetupFailed, "the client's SetupExit could not be issued")));
                    return;
                }

                PersistAll(new IPeerSessionEvent[] { new ExitAssigned(allocated.Assignment, setup.CommandId, _time.GetUtcNow()), issue.Event }, evt =>
                {
                    ApplyPersisted(evt);
                    if (evt is CommandIssued commandIssued)
                    {
                        _log.Info("Session of peer {0}: exit {1}@{2} acked assignment {3}; sending the client its SetupExit", PeerId,
                            allocated.Assignment.ExitPeerId, allocated.Assignment.Region, finished.AssignmentId);
                        Deliver(_state.FindInFlight(commandIssued.CommandId)!);
                        ShowAssignments();
                    }
                });
                break;
            case ExitAllocationResult.Refused refused:
                if (refused.Reason == RefusalReason.RegionUnreachable)
                {
                    // The region may have completed it after the call gave up.
                    ReleaseAtRegionAsync(exit.Region, exit.AssignmentId, "the client's session gave up waiting for it");
                }

                Persist(new ExitRequestRefused(exit.AssignmentId, (int)refused.Code, refused.Reason, refused.Detail, _time.GetUtcNow()), evt =>
                {
                    ApplyPersisted(evt);
                    _log.Info("Session of peer {0}: no exit in region {1}: {2} {3}", PeerId, exit.Region, refused.Reason, refused.Detail);
                    TellPeerExitFailed(exit.Region, refused.Code, refused.Reason, refused.Detail);
                    ShowAssignments();
                });
                break;
        }
    }

    /// <summary>The client's SetupExit: the exit as its WireGuard peer, the client's tunnel address.</summary>
    private ControlCommand ClientSetup(ExitAssignmentRecord assignment, string commandId) => new()
    {
        CommandId = commandId,
        Deadline = Timestamp.FromDateTimeOffset(_time.GetUtcNow() + _exits!.Settings.ClientSetupTimeout),
        SetupExit = new SetupExit
        {
            AssignmentId = assignment.AssignmentId,
            Side = ExitSide.Client,
            Peer = new WireGuardPeer
            {
                PublicKey = ByteString.CopyFrom(assignment.ExitPublicKey),
                Endpoint = assignment.ExitEndpoint,
                AllowedIps = { _exits.Settings.ClientAllowedIps },
                PersistentKeepaliveSeconds = (uint)_exits.Settings.PersistentKeepaliveSeconds,
            },
            TunnelAddresses = { assignment.ClientAddress },
            CounterpartPeerId = assignment.ExitPeerId,
            CounterpartRegion = assignment.Region,
        },
    };

    /// <summary>Issues a command of the session's own (no issuer waits for it).</summary>
    private void IssueInternally(ControlCommand command)
    {
        if (_state.DecideIssue(new IssueCommand(PeerId, command), command.CommandId, _time.GetUtcNow(), _settings.DefaultDeadline)
            is not IssueDecision.Issue issue)
        {
            return;
        }

        Persist(issue.Event, evt =>
        {
            ApplyPersisted(evt);
            Deliver(_state.FindInFlight(evt.CommandId)!);
        });
    }

    /// <summary>The client did not apply its half: undo both halves and tell it why.</summary>
    private void RollBackFailedSetup()
    {
        if (_state.Exit is not { Phase: ExitPhase.SetupFailed } exit || _releaseStartedFor == exit.AssignmentId)
        {
            return;
        }

        var why = $"the client could not apply its SetupExit: {exit.Problem}";
        _log.Warning("Session of peer {0}: rolling back assignment {1}: {2}", PeerId, exit.AssignmentId, why);
        TellPeerExitFailed(exit.Region, (StatusCode)exit.ProblemStatus, RefusalReason.ExitSetupFailed, why);
        StartRelease(why, removeFromClient: true);
    }

    /// <summary>
    /// Gives the client's assignment back: persisted first, then the exit's region is asked until it confirms; with
    /// <paramref name="removeFromClient"/> the client gets RemoveExit (it may have applied its half).
    /// </summary>
    private void StartRelease(string reason, bool removeFromClient)
    {
        if (_state.Exit is not { } exit || exit.Phase == ExitPhase.Releasing || _releaseStartedFor == exit.AssignmentId)
        {
            return;
        }

        // Until the event below is persisted the phase does not say so; a second trigger meanwhile changes nothing.
        _releaseStartedFor = exit.AssignmentId;
        Timers.Cancel(DirectPathTimer);
        // The client's relay leg here goes now; the exit's goes with the release at its region.
        _ = _exits?.Relay?.CloseAsync(exit.AssignmentId);
        var now = _time.GetUtcNow();
        var events = new List<IPeerSessionEvent> { new ExitReleaseStarted(exit.AssignmentId, reason, now) };
        if (removeFromClient && exit.Assignment is { } assignment)
        {
            var remove = new ControlCommand
            {
                CommandId = Guid.NewGuid().ToString("N"),
                Deadline = Timestamp.FromDateTimeOffset(now + (_exits?.Settings.RemoveDeadline ?? _settings.DefaultDeadline)),
                RemoveExit = new RemoveExit
                {
                    AssignmentId = exit.AssignmentId,
                    PeerPublicKey = ByteString.CopyFrom(assignment.ExitPublicKey),
                    Side = ExitSide.Client,
                    Reason = reason,
                },
            };
            if (_state.DecideIssue(new IssueCommand(PeerId, remove), remove.CommandId, now, _settings.DefaultDeadline) is IssueDecision.Issue issue)
            {
                events.Add(issue.Event);
            }
        }

        PersistAll(events, evt =>
        {
            ApplyPersisted(evt);
            switch (evt)
            {
                case ExitReleaseStarted:
                    _log.Info("Session of peer {0}: releasing assignment {1}: {2}", PeerId, exit.AssignmentId, reason);
                    ShowAssignments();
                    SendRelease();
                    break;
                case CommandIssued issued:
                    Deliver(_state.FindInFlight(issued.CommandId)!);
                    break;
            }
        });
    }

    private void SendRelease()
    {
        if (_state.Exit is not { Phase: ExitPhase.Releasing } exit)
        {
            return;
        }

        if (_exits is null)
        {
            Self.Tell(new ReleaseFinished(exit.AssignmentId, null));
            return;
        }

        var request = new ReleaseExitRequest { AssignmentId = exit.AssignmentId, Region = exit.Region, Reason = exit.Problem ?? "released" };
        var allocator = _exits.Allocator;
        var token = _lifetime.Token;
        allocator.ReleaseAsync(request, token).PipeTo(Self,
            success: _ => new ReleaseFinished(exit.AssignmentId, null),
            failure: e => new ReleaseFinished(exit.AssignmentId, e.Message));
    }

    /// <summary>Best effort, nothing persisted: for an assignment the session no longer holds.</summary>
    private void ReleaseAtRegionAsync(string region, string assignmentId, string reason)
    {
        if (_exits is null)
        {
            return;
        }

        _ = _exits.Allocator.ReleaseAsync(new ReleaseExitRequest { AssignmentId = assignmentId, Region = region, Reason = reason }, _lifetime.Token)
            .ContinueWith(t => _ = t.Exception, TaskContinuationOptions.OnlyOnFaulted);
    }

    private void HandleReleaseFinished(ReleaseFinished finished)
    {
        if (_state.Exit is not { Phase: ExitPhase.Releasing } exit || exit.AssignmentId != finished.AssignmentId)
        {
            return;
        }

        if (finished.Problem is not null)
        {
            _log.Warning("Session of peer {0}: releasing assignment {1} at region {2} failed, retrying in {3:0} s: {4}", PeerId,
                exit.AssignmentId, exit.Region, _exits!.Settings.ReleaseRetry.TotalSeconds, finished.Problem);
            Timers.StartSingleTimer(ReleaseTimer, RetryRelease.Instance, _exits.Settings.ReleaseRetry);
            return;
        }

        Persist(new ExitReleaseCompleted(exit.AssignmentId, _time.GetUtcNow()), evt =>
        {
            ApplyPersisted(evt);
            _log.Info("Session of peer {0}: assignment {1} released", PeerId, evt.AssignmentId);
            ShowAssignments();
        });
    }

    /// <summary>
    /// A client with an active, direct exit gets <see cref="ExitSettings.DirectPathTimeout"/> to report a handshake with it;
    /// the first StatusReport after that which lists the exit without one sets up the relay (reports come every few
    /// seconds from an agent that drives WireGuard; an agent that sends none is never relayed).
    /// </summary>
    private void ArmDirectPathCheck()
    {
        if (_exits?.Relay is null || _edge is null || _directConfirmed || _relayStarting
            || _state.Exit is not { Phase: ExitPhase.Active, ClientRelayLeg: null } exit)
        {
            return;
        }

        _directPathOverdue = false;
        Timers.StartSingleTimer(DirectPathTimer, new DirectPathExpired(exit.AssignmentId, Retry: false), _exits.Settings.DirectPathTimeout);
    }

    /// <summary>
    /// A relayed client attached here: its leg must be on this SuperNode and take its packets from the address its stream
    /// comes from. It is not after this SuperNode restarted (legs live in memory), when the session moved here from
    /// another SuperNode of the region, or when the client's public address changed; then the chain is set up again.
    /// </summary>
    private void CheckRelayLegHere()
    {
        if (_exits?.Relay is not { } relay || _state.Exit is not { Phase: ExitPhase.Active, ClientRelayLeg: { } leg } exit
            || !System.Net.IPAddress.TryParse(_remoteAddress, out var clientAddress))
        {
            return;
        }

        var serving = relay.PeerAddressOf(exit.AssignmentId, RelaySides.Client);
        if (_relayDue is { } due)
        {
            StartRelay(exit, due);
        }
        else if (serving is null)
        {
            StartRelay(exit, $"its relay leg {leg} is not open on this SuperNode");
        }
        else if (!serving.Equals(clientAddress.IsIPv4MappedToIPv6 ? clientAddress.MapToIPv4() : clientAddress))
        {
            StartRelay(exit, $"its public address moved from {serving} to {_remoteAddress}");
        }
    }

    private void HandleHandshakes(HandshakesReported reported)
    {
        if (_state.Exit is not { Phase: ExitPhase.Active, Assignment: { } assignment } exit)
        {
            return;
        }

        var withExit = reported.Peers.FirstOrDefault(p => p.PublicKey.AsSpan().SequenceEqual(assignment.ExitPublicKey));
        if (exit.ClientRelayLeg is not null || _directConfirmed)
        {
            // A path that worked: broken once no handshake renewed it for PathStaleAfter.
            var now = _time.GetUtcNow();
            var staleAfter = _exits?.Settings.PathStaleAfter ?? TimeSpan.MaxValue;
            var workingSince = exit.ClientRelayLeg is null ? exit.Since : exit.RelayedSince ?? exit.Since;
            if (withExit is not null && now - workingSince >= staleAfter && (withExit.LastHandshake is not { } last || now - last >= staleAfter))
            {
                StartRelay(exit, $"no handshake with exit {assignment.ExitPeerId} over the {(exit.ClientRelayLeg is null ? "direct path" : "relay chain")} " +
                                 $"since {withExit.LastHandshake?.ToString("o") ?? "ever"} (more than {staleAfter.TotalSeconds:0} s)");
            }
            return;
        }

        if (withExit?.LastHandshake is { } at && at >= exit.Since - TimeSpan.FromSeconds(5))
        {
            _directConfirmed = true;
            _directPathOverdue = false;
            Timers.Cancel(DirectPathTimer);
            _log.Info("Session of peer {0}: direct path to exit {1} works (handshake at {2:o})", PeerId, assignment.ExitPeerId, at);
        }
        else if (_directPathOverdue && withExit is not null)
        {
            StartRelay(exit, $"no handshake with exit {assignment.ExitPeerId} within {_exits!.Settings.DirectPathTimeout.TotalSeconds:0.#} s");
        }
    }

    /// <summary>
    /// No handshake over the direct path, or a chain that broke: a leg for the client here, one for the exit at a
    /// SuperNode of its region (which points the exit at it), chained to each other; then the client is pointed at its
    /// leg (RelaySetup). Legs already open are reused, so a chain that only lost one leg keeps the other.
    /// </summary>
    private void StartRelay(ClientExit exit, string why)
    {
        if (_exits?.Relay is not { } relay || _relayStarting)
        {
            return;
        }

        if (_edge is null)
        {
            // The client's leg takes packets from the address its stream comes from: wait for the stream.
            _relayDue = why;
            return;
        }

        _relayDue = null;

        if (!System.Net.IPAddress.TryParse(_remoteAddress, out var clientAddress))
        {
            _log.Warning("Session of peer {0}: no relay for assignment {1}: the client's address '{2}' is unknown", PeerId, exit.AssignmentId, _remoteAddress);
            return;
        }

        if (clientAddress.IsIPv4MappedToIPv6)
        {
            clientAddress = clientAddress.MapToIPv4();
        }

        _relayStarting = true;
        _directConfirmed = false;
        _directPathOverdue = false;
        Timers.Cancel(DirectPathTimer);
        _log.Warning("Session of peer {0}: {1}; setting up a relay chain to exit {2}", PeerId, why, exit.Assignment!.ExitPeerId);
        var allocator = _exits.Allocator;
        var timeout = _exits.Settings.AllocationTimeout;
        var owner = new RelayLegOwner(_state.Region, PeerId);
        RelayAsync(relay, allocator, exit.AssignmentId, exit.Region, clientAddress, owner, timeout, _lifetime.Token).PipeTo(Self,
            success: legs => new RelayFinished(exit.AssignmentId, legs.ClientLeg, legs.ExitLeg, null),
            failure: e => new RelayFinished(exit.AssignmentId, null, null, e.Message));
    }

    private static async Task<(string ClientLeg, string ExitLeg)> RelayAsync(IRelayLegs relay, IExitAllocator allocator, string assignmentId,
        string region, System.Net.IPAddress clientAddress, RelayLegOwner owner, TimeSpan timeout, CancellationToken lifetime)
    {
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(lifetime);
        cancel.CancelAfter(timeout);
        // A leg that carries the chain now stays open if the new chain cannot be made: the old one may still work.
        var hadLeg = relay.PeerAddressOf(assignmentId, RelaySides.Client) is not null;
        var clientLeg = await relay.OpenAsync(assignmentId, RelaySides.Client, clientAddress, null, owner, cancel.Token);
        try
        {
            var exitLeg = await allocator.OpenRelayAsync(
                new OpenRelayRequest { AssignmentId = assignmentId, Region = region, PartnerEndpoint = clientLeg.ToString() }, cancel.Token);
            relay.SetPartner(assignmentId, RelaySides.Client, System.Net.IPEndPoint.Parse(exitLeg.Endpoint));
            return (clientLeg.ToString(), exitLeg.Endpoint);
        }
        catch when (!hadLeg)
        {
            await relay.CloseAsync(assignmentId);
            throw;
        }
    }

    private void HandleRelayFinished(RelayFinished finished)
    {
        _relayStarting = false;
        if (_state.Exit is not { Phase: ExitPhase.Active, Assignment: { } assignment } exit || exit.AssignmentId != finished.AssignmentId)
        {
            // Released meanwhile: its legs go.
            _ = _exits?.Relay?.CloseAsync(finished.AssignmentId);
            return;
        }

        if (finished.Problem is not null || finished.ClientLeg is null || finished.ExitLeg is null)
        {
            _log.Warning("Session of peer {0}: relay chain for assignment {1} could not be set up ({2}); trying again in {3:0} s", PeerId,
                finished.AssignmentId, finished.Problem, _exits!.Settings.RelayRetry.TotalSeconds);
            // The retry timer decides the next attempt; reports meanwhile must not bring it forward.
            _directPathOverdue = false;
            Timers.StartSingleTimer(DirectPathTimer, new DirectPathExpired(finished.AssignmentId, Retry: true), _exits.Settings.RelayRetry);
            return;
        }

        var now = _time.GetUtcNow();
        var events = new List<IPeerSessionEvent> { new RelayEstablished(finished.AssignmentId, finished.ClientLeg, finished.ExitLeg, now) };
        // Sent for every chain, also one through the client's same leg (where it changes nothing): a client that failed
        // to apply the last one, or lost it, is pointed at its leg again.
        var setup = RelaySetupFor(assignment, finished.ClientLeg);
        if (_state.DecideIssue(new IssueCommand(PeerId, setup), setup.CommandId, now, _settings.DefaultDeadline) is IssueDecision.Issue issue)
        {
            events.Add(issue.Event);
        }

        PersistAll(events, evt =>
        {
            ApplyPersisted(evt);
            switch (evt)
            {
                case RelayEstablished established:
                    _log.Info("Session of peer {0}: assignment {1} relayed: client leg {2}, exit leg {3}", PeerId, established.AssignmentId,
                        established.ClientLeg, established.ExitLeg);
                    ShowAssignments();
                    break;
                case CommandIssued issued:
                    Deliver(_state.FindInFlight(issued.CommandId)!);
                    break;
            }
        });
    }

    /// <summary>Points the client's WireGuard peer for its exit at its relay leg.</summary>
    private static ControlCommand RelaySetupFor(ExitAssignmentRecord assignment, string clientLeg) => new()
    {
        CommandId = Guid.NewGuid().ToString("N"),
        RelaySetup = new RelaySetup
        {
            AssignmentId = assignment.AssignmentId,
            PeerPublicKey = ByteString.CopyFrom(assignment.ExitPublicKey),
            RelayEndpoint = clientLeg,
        },
    };

    private void TellPeerExitFailed(string region, StatusCode code, RefusalReason reason, string detail) =>
        _edge?.Tell(new SendToPeer(new ControlMessage
        {
            ExitRequestFailed = new Protocol.Control.ExitRequestFailed { Region = region, GrpcStatus = (int)code, Reason = reason, Detail = detail },
        }));

    /// <summary>The edge shows the assignments in the admin's session list; sent when they change.</summary>
    private void ShowAssignments()
    {
        if (_edge is null)
        {
            return;
        }

        var assignments = _state.Assignments();
        var shown = string.Join(",", assignments.Select(a => $"{a.AssignmentId}:{a.State}:{a.Path}:{a.ClientRelayLeg}:{a.ExitRelayLeg}"));
        if (shown == _shownAssignments)
        {
            return;
        }

        _shownAssignments = shown;
        _edge.Tell(new PeerAssignments(PeerId, assignments));
    }

    private void AnnounceExit()
    {
        if (_edge is not null && ServesAsExit)
        {
            _exits!.Pools.Tell(new ExitOnline(_state.Region, PeerId, _exitCapacity, _remoteAddress, _rtt));
            _exitAnnounced = true;
        }
    }

    private void WithdrawExit()
    {
        Timers.Cancel(ExitHeartbeatTimer);
        if (_exitAnnounced)
        {
            _exits!.Pools.Tell(new ExitOffline(_state.Region, PeerId));
            _exitAnnounced = false;
        }
    }

    private void HandleIdle()
    {
        if (_edge is not null || !_state.InFlight.IsEmpty || _redeeming || _awaitingJournal.Count > 0
            || _state.Exit is { Phase: not ExitPhase.Active })
        {
            return;
        }

        _log.Debug("Session of peer {0}: idle, asking to be passivated", PeerId);
        Context.SetReceiveTimeout(null);
        Context.Parent.Tell(new Passivate(StopPeerSession.Instance));
    }

    /// <summary>
    /// Persists <paramref name="events"/> for <paramref name="requester"/>, applies each, and runs
    /// <paramref name="done"/> after the last; if the journal fails first, the requester gets
    /// <paramref name="replyIfLost"/> (see <see cref="OnPersistFailure"/>).
    /// </summary>
    private void PersistFor(
        IActorRef requester,
        object replyIfLost,
        IReadOnlyList<IPeerSessionEvent> events,
        Action<IPeerSessionEvent> onEach,
        Action done)
    {
        var waiting = new AwaitingJournal(requester, replyIfLost, events);
        _awaitingJournal.Add(waiting);
        var remaining = events.Count;
        PersistAll(events, evt =>
        {
            ApplyPersisted(evt);
            onEach(evt);
            if (--remaining == 0 && _awaitingJournal.Remove(waiting))
            {
                done();
            }
        });
    }

    private void ApplyPersisted(IPeerSessionEvent evt)
    {
        _state = _state.Apply(evt);
        _snapshots.AfterPersisted(_state.ToSnapshot);
    }

    private static async Task<EnrollmentResult> RedeemAsync(
        IEnrollmentClient client,
        AuthDecision.Enroll enroll,
        string peerId,
        string region,
        TimeSpan timeout,
        CancellationToken lifetime)
    {
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(lifetime);
        cancel.CancelAfter(timeout);
        try
        {
            return await client
                .RedeemAsync(enroll.Token, peerId, enroll.Role, region, (byte[])enroll.PublicKey.Clone(), cancel.Token)
                .WaitAsync(timeout, lifetime)
                .ConfigureAwait(false);
        }
        catch (Exception e) when (e is TimeoutException
                                  || (e is OperationCanceledException && !lifetime.IsCancellationRequested))
        {
            return new EnrollmentResult.Unavailable($"no answer from the directory within {timeout}");
        }
    }

    private sealed class AwaitingJournal(IActorRef replyTo, object replyIfLost, IReadOnlyList<IPeerSessionEvent> events)
    {
        public IActorRef ReplyTo { get; } = replyTo;

        public object ReplyIfLost { get; } = replyIfLost;

        public IReadOnlyList<IPeerSessionEvent> Events { get; } = events;
    }

    /// <summary>A token redemption ended (piped back to the actor).</summary>
    private sealed record RedemptionFinished(IActorRef ReplyTo, AuthDecision.Enroll Enroll, EnrollmentResult Result);

    /// <summary>A command's timer: its answer is overdue, its backoff is over, or its deadline came.</summary>
    private sealed record CommandTimerFired(string CommandId);

    private sealed record AllocationFinished(string AssignmentId, ExitAllocationResult Result);

    /// <param name="Retry">A relay attempt failed before: try again now rather than wait for a report.</param>
    private sealed record DirectPathExpired(string AssignmentId, bool Retry);

    /// <summary>A relay chain was set up (both legs) or could not be (<paramref name="Problem"/>).</summary>
    private sealed record RelayFinished(string AssignmentId, string? ClientLeg, string? ExitLeg, string? Problem);

    /// <summary>A release call ended; <paramref name="Problem"/> is null when the region confirmed it.</summary>
    private sealed record ReleaseFinished(string AssignmentId, string? Problem);

    private sealed record RetryRelease
    {
        public static readonly RetryRelease Instance = new();
    }

    private sealed record ExitHeartbeatTick
    {
        public static readonly ExitHeartbeatTick Instance = new();
    }
}

/// <summary>What a session needs to allocate exits: the settings, the way to a region's pool, this region's pools.</summary>
/// <param name="Relay">This SuperNode's relay legs; null: no relay (the direct path is all there is).</param>
public sealed record ExitServices(ExitSettings Settings, IExitAllocator Allocator, IActorRef Pools, IRelayLegs? Relay = null);
