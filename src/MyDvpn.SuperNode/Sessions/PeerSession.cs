using Akka.Actor;
using Akka.Cluster.Sharding;
using Akka.Event;
using Akka.Persistence;
using MyDvpn.Protocol.Control;

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
/// </summary>
public sealed class PeerSession : ReceivePersistentActor, IWithTimers
{
    /// <summary>The persistence id is this prefix, the region, a dash and the peer id.</summary>
    // "/" cannot occur in a region name or a peer id, so no two (region, peer) pairs share an id.
    public const string PersistenceIdPrefix = "peer/";

    private const string CommandTimerPrefix = "command:";
    private const string JournalUnavailable = "the session journal is unavailable; retry";

    private readonly PeerSessionSettings _settings;
    private readonly IEnrollmentClient _enrollment;
    private readonly IActorRef? _peersShardRegion;
    private readonly TimeProvider _time;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly CancellationTokenSource _lifetime = new();

    // Not persisted: what a restart forgets.
    private readonly Dictionary<string, int> _deliveries = new(StringComparer.Ordinal);
    private readonly Dictionary<string, IActorRef> _issuers = new(StringComparer.Ordinal);
    private readonly List<AwaitingJournal> _awaitingJournal = [];
    private IActorRef? _edge;
    private bool _redeeming;

    private PeerState _state;

    public PeerSession(
        string peerId,
        string region,
        PeerSessionSettings settings,
        IEnrollmentClient enrollment,
        IActorRef? peersShardRegion,
        TimeProvider time)
    {
        _settings = settings;
        _enrollment = enrollment;
        _peersShardRegion = peersShardRegion;
        _time = time;
        _state = PeerState.Empty(peerId, region, settings.RememberCompleted);
        PersistenceId = PersistenceIdFor(region, peerId);

        Recover<SnapshotOffer>(offer =>
        {
            if (offer.Snapshot is PeerSnapshot snapshot)
            {
                _state = PeerState.FromSnapshot(snapshot, _settings.RememberCompleted);
            }
            else
            {
                _log.Warning("Session of peer {0}: ignoring a snapshot of unknown type {1}", PeerId, offer.Snapshot.GetType());
            }
        });
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
        Command<StopPeerSession>(_ => Context.Stop(Self));
        Command<SaveSnapshotSuccess>(success =>
            DeleteSnapshots(new SnapshotSelectionCriteria(success.Metadata.SequenceNr - 1)));
        Command<SaveSnapshotFailure>(failure =>
            _log.Warning(failure.Cause, "Session of peer {0}: saving a snapshot at {1} failed", PeerId,
                failure.Metadata.SequenceNr));
        Command<DeleteSnapshotsSuccess>(_ => { });
        Command<DeleteSnapshotsFailure>(failure =>
            _log.Warning(failure.Cause, "Session of peer {0}: deleting old snapshots failed", PeerId));
    }

    public override string PersistenceId { get; }

    public ITimerScheduler Timers { get; set; } = null!;

    private string PeerId => _state.PeerId;

    public static string PersistenceIdFor(string region, string peerId) => PersistenceIdPrefix + region + "/" + peerId;

    /// <param name="peersShardRegion">
    /// The <c>peers</c> shard region, for <see cref="CommandOutcomeFor"/>; null: those outcomes are not sent.
    /// </param>
    /// <param name="time">The clock for deadlines and event times; the system clock when null.</param>
    public static Props Props(
        string peerId,
        string region,
        PeerSessionSettings settings,
        IEnrollmentClient enrollment,
        IActorRef? peersShardRegion,
        TimeProvider? time = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(peerId);
        ArgumentException.ThrowIfNullOrEmpty(region);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(enrollment);
        settings.Validate();
        var clock = time ?? TimeProvider.System;
        return Akka.Actor.Props.Create(() => new PeerSession(peerId, region, settings, enrollment, peersShardRegion, clock));
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
                replyTo.Tell(new PeerAuthenticated(PeerId, role, started.SessionId));
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
        _log.Info("Session of peer {0}: stream of session {1} attached at {2}, {3} commands to deliver",
            PeerId, attach.SessionId, _edge.Path, _state.InFlight.Count);
        sender.Tell(new StreamAttached(PeerId, attach.SessionId));
        foreach (var command in _state.InFlight)
        {
            Deliver(command);
        }
    }

    private void HandleTerminated(Terminated terminated)
    {
        if (!terminated.ActorRef.Equals(_edge))
        {
            return;
        }

        _edge = null;
        _log.Info("Session of peer {0}: stream detached, {1} commands wait for the next one", PeerId, _state.InFlight.Count);
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
            () => sender.Tell(new PeerRevoked(PeerId)));
    }

    private void HandleOutcomeFor(CommandOutcomeFor outcome) =>
        // The hand-over point to this session's rollback step: the flows that issue commands on another peer's
        // behalf (exit setup, relay, rotation) act on it when they arrive.
        _log.Info("Session of peer {0}: command {1} on peer {2} ended: {3}", PeerId, outcome.Outcome.CommandId,
            outcome.Outcome.PeerId, outcome.Outcome.FailureReason ?? outcome.Outcome.Response?.OutcomeCase.ToString());

    private void HandleIdle()
    {
        if (_edge is not null || !_state.InFlight.IsEmpty || _redeeming || _awaitingJournal.Count > 0)
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
        if (LastSequenceNr % _settings.SnapshotEvery == 0)
        {
            SaveSnapshot(_state.ToSnapshot());
        }
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
}
