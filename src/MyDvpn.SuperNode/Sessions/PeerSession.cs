using Akka.Actor;
using Akka.Cluster.Sharding;
using Akka.Persistence;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using MyDvpn.Common;
using MyDvpn.Hosting;
using MyDvpn.SuperNode.Exits;
using MyDvpn.SuperNode.Relay;
using MyDvpn.Telemetry;
using ControlCommand = MyDvpn.Protocol.Control.Command;

namespace MyDvpn.SuperNode.Sessions;

/// <summary>
/// The durable truth about one peer (sharded entity type <see cref="PeerSessionEntityTypes.Peers"/>, entity id = peer
/// id). A thin persistent actor: every message goes to the pure <see cref="PeerState.Decide"/>, whose
/// <see cref="Decision"/> it persists and whose <see cref="SessionEffect"/>s it then runs — the only place that touches
/// actors, timers, the relay, the directory and other regions. The flows themselves live with their state:
/// <see cref="Authentication"/>, <see cref="CommandDelivery"/>, <see cref="ExitAssignment"/>, <see cref="PathMonitoring"/>,
/// <see cref="StreamLifecycle"/>.
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
/// Timers run on the session's <see cref="TimeProvider"/> (<see cref="ClockTimers"/>), so a test's manual clock moves both
/// "now" and the timers. Delivery counts, issuers, the path and the stream live in memory only.
/// </para>
/// </summary>
public sealed class PeerSession : ReceivePersistentActor
{
    /// <summary>The persistence id is this prefix, the region, a dash and the peer id.</summary>
    // "/" cannot occur in a region name or a peer id, so no two (region, peer) pairs share an id.
    public const string PersistenceIdPrefix = "peer/";

    private readonly PeerSessionSettings _settings;
    private readonly IEnrollmentClient _enrollment;
    private readonly IActorRef? _peersShardRegion;
    private readonly TimeProvider _time;
    private readonly ExitServices? _exits;
    private readonly CommandMetrics _commandMetrics;
    private readonly ILogger _logger;
    private readonly ClockTimers _timers;
    private readonly Snapshots _snapshots;
    private readonly CancellationTokenSource _lifetime = new();

    // Not persisted: what a restart forgets.
    private readonly Dictionary<string, IActorRef> _issuers = new(StringComparer.Ordinal);

    /// <summary>
    /// Tracing (<c>--otlp</c>), in memory only: the traceparent of the latest exit request's edge span, which the next
    /// allocation continues, and per assignment the allocation's span, which the client's SetupExit carries (and under
    /// "relay:" and the assignment the relay chain's, which its RelaySetup carries).
    /// </summary>
    private string? _exitRequestTrace;
    private readonly Dictionary<string, string> _allocationTraces = new(StringComparer.Ordinal);
    private readonly Dictionary<string, List<IActorRef>> _rotationWaiters = new(StringComparer.Ordinal);
    private readonly List<AwaitingJournal> _awaitingJournal = [];
    private IActorRef? _edge;
    private string _shownAssignments = "";
    private DateTimeOffset _lastActive;
    /// <summary>The session asked its shard to passivate it as an unknown peer.</summary>
    private bool _stopping;

    private PeerState _state;

    public PeerSession(string peerId, string region, PeerSessionSettings settings, IEnrollmentClient enrollment, IActorRef? peersShardRegion,
        TimeProvider time, ExitServices? exits, ILogger logger, CommandMetrics commandMetrics)
    {
        _settings = settings;
        _commandMetrics = commandMetrics;
        _exits = exits;
        _enrollment = enrollment;
        _peersShardRegion = peersShardRegion;
        _time = time;
        _logger = logger;
        var self = Self;
        _timers = new ClockTimers(time, message => self.Tell(message));
        var config = new SessionConfig(settings, exits?.Settings, exits?.Relay is not null);
        _state = PeerState.Empty(peerId, region, config);
        PersistenceId = PersistenceIdFor(region, peerId);

        _snapshots = new Snapshots(this, settings.SnapshotEvery, logger, $"Session of peer {peerId}");
        Recover<SnapshotOffer>(offer => _snapshots.Restore<PeerSnapshot>(offer, snapshot => _state = PeerState.FromSnapshot(snapshot, config)));
        Recover<IPeerSessionEvent>(evt => _state = _state.Apply(evt));
        Recover<RecoveryCompleted>(_ => OnRecovered());

        Command<AuthenticatePeer>(request =>
        {
            if (_state.Identity.Redeeming)
                Stash.Stash(); // one enrollment at a time: the next attempt is decided against the state it leaves
            else
                Decide(request);
        });
        Command<RedemptionFinished>(finished => Decide(finished, finished.ReplyTo));
        Command<AttachStream>(attach =>
        {
            if (attach.Edge.Equals(_edge))
                Sender.Tell(new StreamAttached(PeerId, attach.SessionId));
            else
                Decide(attach);
        });
        Command<Terminated>(terminated =>
        {
            if (!terminated.ActorRef.Equals(_edge))
                return;
            _edge = null;
            Decide(StreamDetached.Instance);
        });
        Command<ClockTimers.Fired>(fired =>
        {
            switch (_timers.Accept(fired))
            {
                case IdleCheck:
                    PassivateIfIdle();
                    break;
                case { } message:
                    Decide(message);
                    break;
            }
        });
        Command<RevokePeer>(revoke => Decide(revoke));
        Command<UnrevokePeer>(unrevoke => Decide(unrevoke));
        Command<IssueCommand>(issue => Decide(issue));
        Command<CommandAnswered>(answered => Decide(answered));
        Command<PeerRttMeasured>(measured => Decide(measured));
        Command<RequestExit>(request =>
        {
            _exitRequestTrace = request.TraceParent;
            Decide(request);
        });
        Command<AllocationFinished>(finished =>
        {
            // A refused or failed allocation sends no SetupExit that would carry (and drop) its span: a client asking again
            // with backoff would otherwise add one entry per attempt.
            if (finished.Result is not ExitAllocationResult.Allocated)
                _allocationTraces.Remove(finished.AssignmentId);
            Decide(finished);
        });
        Command<ClientReleasesExit>(release => Decide(release));
        Command<ReleaseFinished>(finished => Decide(finished));
        Command<HandshakesReported>(reported => Decide(reported));
        Command<RelayFinished>(finished =>
        {
            if (finished.Problem is not null)
                _allocationTraces.Remove("relay:" + finished.AssignmentId);
            Decide(finished);
        });
        Command<RelayLegLost>(lost => Decide(lost));
        Command<ExitUnpinned>(unpinned => Decide(unpinned));
        Command<RotateExit>(rotate => Decide(rotate));
        Command<GetPeerState>(_ => Sender.Tell(_state.View()));
        // The hand-over point to this session's rollback step for commands issued on other peers on its behalf.
        Command<CommandOutcomeFor>(outcome => Note(LogLevel.Information, "Command {CommandId} on peer {OtherPeerId} ended: {Outcome}",
            outcome.Outcome.CommandId, outcome.Outcome.PeerId, outcome.Outcome.FailureReason ?? outcome.Outcome.Response?.OutcomeCase.ToString()));
        Command<StopPeerSession>(_ => Context.Stop(Self));
        Command<ISnapshotResponse>(_snapshots.Handle);
    }

    public override string PersistenceId { get; }

    private string PeerId => _state.PeerId;

    public static string PersistenceIdFor(string region, string peerId) => PersistenceIdPrefix + region + "/" + peerId;

    /// <param name="peersShardRegion">
    /// The <c>peers</c> shard region, for <see cref="CommandOutcomeFor"/>; null: those outcomes are not sent.
    /// </param>
    /// <param name="time">The clock for deadlines, event times and timers; the system clock when null.</param>
    /// <param name="exits">Exit allocation; null: exit requests are refused as unavailable.</param>
    /// <param name="commandMetrics">Where the session counts its commands; <see cref="CommandMetrics.Default"/> when null.</param>
    public static Props Props(string peerId, string region, PeerSessionSettings settings, IEnrollmentClient enrollment, IActorRef? peersShardRegion,
        TimeProvider? time = null, ExitServices? exits = null, ILogger? logger = null, CommandMetrics? commandMetrics = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(peerId);
        ArgumentException.ThrowIfNullOrEmpty(region);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(enrollment);
        settings.Validate();
        exits?.Settings.Validate();
        var clock = time ?? TimeProvider.System;
        var log = logger ?? NullLogger.Instance;
        var commands = commandMetrics ?? CommandMetrics.Default;
        return Akka.Actor.Props.Create(() => new PeerSession(peerId, region, settings, enrollment, peersShardRegion, clock, exits, log, commands));
    }

    protected override void PostStop()
    {
        _timers.Dispose();
        _lifetime.Cancel();
        _lifetime.Dispose();
        base.PostStop();
    }

    /// <summary>Whoever waits for a persist gets a refusal instead of silence; the session then stops.</summary>
    protected override void OnPersistFailure(Exception cause, object @event, long sequenceNr)
    {
        Note(LogLevel.Error, "Persisting {Event} (sequence number {SequenceNr}) failed; the session stops: {Problem}", @event.GetType().Name,
            sequenceNr, cause.Message);
        foreach (var waiting in _awaitingJournal)
            TellIfLost(waiting);
        _awaitingJournal.Clear();
    }

    protected override void OnPersistRejected(Exception cause, object @event, long sequenceNr)
    {
        Note(LogLevel.Error, "The journal rejected {Event} (sequence number {SequenceNr}): {Problem}", @event.GetType().Name, sequenceNr, cause.Message);
        if (_awaitingJournal.Find(w => w.Events.Any(e => ReferenceEquals(e, @event))) is { } waiting)
        {
            _awaitingJournal.Remove(waiting);
            TellIfLost(waiting);
        }
    }

    private void OnRecovered()
    {
        if (_settings.PassivateIdleAfter is { } idle)
        {
            _lastActive = _time.GetUtcNow();
            _timers.StartPeriodic(IdleTimer, IdleCheck.Instance, idle);
        }
        Run(_state.DecideRecovered(_time.GetUtcNow()), ActorRefs.Nobody);
        if (_state.Identity.Enrolled || _state.Identity.Revoked)
        {
            Note(LogLevel.Debug, "Recovered: enrolled {Enrolled}, revoked {Revoked}, {Commands} commands in flight", _state.Identity.Enrolled,
                _state.Identity.Revoked, _state.Commands.InFlight.Count);
        }
    }

    private void Decide(object message, IActorRef? requester = null)
    {
        var clientLegPeer = message is AttachStream && _state.Exit is { } exit
            ? _exits?.Relay?.PeerAddressOf(exit.AssignmentId, RelaySides.Client)
            : null;
        Run(_state.Decide(message, _time.GetUtcNow(), Guid.NewGuid().ToString("N"), clientLegPeer), requester ?? Sender ?? ActorRefs.Nobody);
    }

    /// <summary>Persists the decision's events, then takes its state and runs its effects (at once when there are no events).</summary>
    private void Run(Decision decision, IActorRef requester)
    {
        if (decision.Events.IsEmpty)
        {
            _state = decision.State;
            Perform(decision.Effects, requester);
            return;
        }

        var waiting = new AwaitingJournal(requester, decision.ReplyIfLost, decision.Events);
        _awaitingJournal.Add(waiting);
        var remaining = decision.Events.Count;
        PersistAll(decision.Events, _ =>
        {
            if (--remaining > 0 || !_awaitingJournal.Remove(waiting))
                return;
            _state = decision.State;
            _snapshots.AfterPersisted(decision.Events.Count, _state.ToSnapshot);
            Perform(decision.Effects, requester);
        });
    }

    /// <summary>
    /// A client's SetupExit of an allocation that was traced carries the allocation's span (<c>Command.trace_parent</c>), its
    /// RelaySetup the relay chain's.
    /// </summary>
    private ControlCommand Traced(ControlCommand command)
    {
        var key = command.BodyCase switch
        {
            ControlCommand.BodyOneofCase.SetupExit => command.SetupExit.AssignmentId,
            ControlCommand.BodyOneofCase.RelaySetup => "relay:" + command.RelaySetup.AssignmentId,
            _ => null,
        };
        if (key is null || !_allocationTraces.Remove(key, out var traceParent))
            return command;
        var traced = command.Clone();
        traced.TraceParent = traceParent;
        return traced;
    }

    private void Perform(IEnumerable<SessionEffect> effects, IActorRef requester)
    {
        foreach (var effect in effects)
        {
            switch (effect)
            {
                case SessionEffect.Reply reply:
                    requester.Tell(reply.Message);
                    break;
                case SessionEffect.RememberIssuer remember when !requester.IsNobody():
                    // The latest issuer of a command id gets its outcome (an earlier one may have been an Ask, long gone).
                    _issuers[remember.CommandId] = requester;
                    break;
                case SessionEffect.RememberRotationWaiter waiter when !requester.IsNobody():
                    if (!_rotationWaiters.TryGetValue(waiter.RotationId, out var waiting))
                        _rotationWaiters[waiter.RotationId] = waiting = [];
                    waiting.Add(requester);
                    break;
                case SessionEffect.AnnounceRotation announce:
                    if (_rotationWaiters.Remove(announce.Outcome.RotationId, out var waiters))
                        waiters.ForEach(w => w.Tell(announce.Outcome));
                    break;
                case SessionEffect.CountRotation count:
                    (_exits?.Metrics ?? ExitMetrics.Default).RotationEnded(count.Reason, count.Moved, count.Took);
                    break;
                case SessionEffect.CountCommand count:
                    _commandMetrics.Count(count.Kind, count.Stage, count.Took);
                    break;
                case SessionEffect.AdoptStream adopt:
                    _edge = adopt.Edge;
                    Context.Watch(_edge);
                    _shownAssignments = "";
                    break;
                case SessionEffect.CloseStream close when _edge is { } edge:
                    Context.Unwatch(edge);
                    edge.Tell(new CloseStream(close.Reason, close.Detail));
                    _edge = null;
                    break;
                case SessionEffect.SendCommand send:
                    _edge?.Tell(new DeliverCommand(Traced(send.Command)));
                    break;
                case SessionEffect.SendToPeer send:
                    _edge?.Tell(new SendToPeer(send.Message));
                    break;
                case SessionEffect.ShowAssignments:
                    ShowAssignments();
                    break;
                case SessionEffect.Announce announce:
                    if (_issuers.Remove(announce.Outcome.CommandId, out var issuer) && !issuer.IsNobody())
                        issuer.Tell(announce.Outcome);
                    if (announce.ReplyToPeerId is { } replyTo)
                        _peersShardRegion?.Tell(new CommandOutcomeFor(replyTo, announce.Outcome));
                    break;
                case SessionEffect.StartTimer timer:
                    _timers.Start(timer.Key, timer.Message, timer.Delay, timer.Periodic);
                    break;
                case SessionEffect.CancelTimer cancel:
                    _timers.Cancel(cancel.Key);
                    break;
                case SessionEffect.UnstashAll:
                    Stash.UnstashAll();
                    break;
                case SessionEffect.ForgetUnknownPeer:
                    ForgetUnknownPeer();
                    break;
                case SessionEffect.RedeemToken redeem:
                    var authenticating = requester;
                    SessionWork.RedeemAsync(_enrollment, redeem.Enroll, PeerId, _state.Region, _settings.EnrollmentTimeout, _time, _lifetime.Token)
                        .PipeTo(Self, success: result => new RedemptionFinished(authenticating, redeem.Enroll, result),
                            failure: e => new RedemptionFinished(authenticating, redeem.Enroll, new EnrollmentResult.Unavailable(e.Message)));
                    break;
                case SessionEffect.AllocateExit allocate:
                    // With a trace (--otlp) the call to the exit's region carries this span in its metadata.
                    var allocation = Tracing.StartDetached("allocate exit", _exitRequestTrace, System.Diagnostics.ActivityKind.Client);
                    _exitRequestTrace = null;
                    if (allocation is not null)
                    {
                        allocation.SetTag("mydvpn.peer_id", PeerId);
                        allocation.SetTag("mydvpn.exit_region", allocate.Request.Region);
                        allocation.SetTag("mydvpn.assignment_id", allocate.Request.AssignmentId);
                        _allocationTraces[allocate.Request.AssignmentId] = allocation.Id!;
                    }
                    var exits = _exits!;
                    Tracing.RunIn(allocation, () => SessionWork.AllocateAsync(exits.Allocator, allocate.Request, exits.Settings.AllocationTimeout, _time, _lifetime.Token))
                        .PipeTo(Self, success: result => new AllocationFinished(allocate.Request.AssignmentId, result));
                    break;
                case SessionEffect.ReleaseExit { Tracked: true } release:
                    _exits!.Allocator.ReleaseAsync(release.Request, _lifetime.Token).PipeTo(Self,
                        success: _ => new ReleaseFinished(release.Request.AssignmentId, null),
                        failure: e => new ReleaseFinished(release.Request.AssignmentId, e.Message));
                    break;
                case SessionEffect.ReleaseExit release:
                    BestEffort(_exits!.Allocator.ReleaseAsync(release.Request, _lifetime.Token));
                    break;
                case SessionEffect.OpenRelayChain open:
                    // With tracing on, a chain's set-up is a trace: the call to the exit's region, the exit's RelaySetup and the client's.
                    var chain = Tracing.StartDetached("open relay chain");
                    if (chain is not null)
                    {
                        chain.SetTag("mydvpn.peer_id", PeerId);
                        chain.SetTag("mydvpn.assignment_id", open.AssignmentId);
                        _allocationTraces["relay:" + open.AssignmentId] = chain.Id!;
                    }
                    var relayExits = _exits!;
                    var owner = new RelayLegOwner(_state.Region, PeerId);
                    Tracing.RunIn(chain, () => SessionWork.RelayAsync(relayExits.Relay!, relayExits.Allocator, open, owner,
                            relayExits.Settings.AllocationTimeout, _time, _lifetime.Token))
                        .PipeTo(Self, success: legs => new RelayFinished(open.AssignmentId, legs.ClientLeg, legs.ExitLeg, null),
                            failure: e => new RelayFinished(open.AssignmentId, null, null, e.Message));
                    break;
                case SessionEffect.CloseRelayLegs close:
                    _ = _exits?.Relay?.CloseAsync(close.AssignmentId);
                    break;
                case SessionEffect.UnpinExit unpin:
                    SessionWork.UnpinExitAsync(_exits!.Allocator, unpin, _exits.Settings.AllocationTimeout, _time, _lifetime.Token)
                        .PipeTo(Self, success: problem => new ExitUnpinned(unpin.AssignmentId, problem));
                    break;
                case SessionEffect.ReportPathFailure report:
                    BestEffort(_exits!.Allocator.ReportPathFailureAsync(report.Report, _lifetime.Token));
                    break;
                case SessionEffect.CloseExitLeg closeExitLeg:
                    BestEffort(_exits!.Allocator.CloseRelayAsync(
                        new MyDvpn.Protocol.SuperNode.CloseRelayRequest { AssignmentId = closeExitLeg.AssignmentId, Region = closeExitLeg.ExitRegion }, _lifetime.Token));
                    break;
                case SessionEffect.TellExitPool tell:
                    _exits?.Pools.Tell(tell.Message);
                    break;
                case SessionEffect.TellSelf tell:
                    Self.Tell(tell.Message);
                    break;
                case SessionEffect.Log log:
                    Note(log.Level, log.Template, log.Args);
                    break;
            }
        }
    }

    /// <summary>A call whose answer the session does not wait for: its failure is observed (not left unobserved) and dropped.</summary>
    private static void BestEffort(Task call) => _ = call.ContinueWith(t => _ = t.Exception, TaskContinuationOptions.OnlyOnFaulted);

    /// <summary>The edge shows the assignments in the admin's session list; sent when they change.</summary>
    private void ShowAssignments()
    {
        if (_edge is null)
            return;
        var assignments = _state.Assignments();
        var shown = string.Join(",", assignments.Select(a => $"{a.AssignmentId}:{a.State}:{a.Path}:{a.ClientRelayLeg}:{a.ExitRelayLeg}"));
        if (shown == _shownAssignments)
            return;
        _shownAssignments = shown;
        _edge.Tell(new PeerAssignments(PeerId, assignments));
    }

    /// <summary>Counts every message but the session's own timers as activity, for passivation.</summary>
    protected override bool AroundReceive(Receive receive, object message)
    {
        if (message is not ClockTimers.Fired)
            _lastActive = _time.GetUtcNow();
        return base.AroundReceive(receive, message);
    }

    /// <summary>
    /// Quiet for <see cref="PeerSessionSettings.PassivateIdleAfter"/> with no stream, command in flight, enrollment or exit
    /// step under way: the session asks its shard to passivate it (checked on the session's clock, once per that period).
    /// </summary>
    private void PassivateIfIdle()
    {
        if (_time.GetUtcNow() - _lastActive < _settings.PassivateIdleAfter || _edge is not null || !_state.Idle || _awaitingJournal.Count > 0)
            return;
        Note(LogLevel.Debug, "Idle, asking to be passivated");
        _timers.Cancel(IdleTimer);
        Context.Parent.Tell(new Passivate(StopPeerSession.Instance));
    }

    /// <summary>
    /// A refused peer the region does not know: with nothing in its journal, no stream and nothing under way, the session
    /// asks its shard to passivate it now, so that logins naming made-up peers do not keep sessions alive.
    /// </summary>
    private void ForgetUnknownPeer()
    {
        if (LastSequenceNr != 0 || _edge is not null || !_state.Idle || _awaitingJournal.Count > 0 || _stopping)
            return;
        _stopping = true;
        Note(LogLevel.Debug, "Unknown peer refused, asking to be passivated");
        _timers.Cancel(IdleTimer);
        Context.Parent.Tell(new Passivate(StopPeerSession.Instance));
    }

    private void TellIfLost(AwaitingJournal waiting)
    {
        if (waiting.ReplyIfLost is not null && !waiting.ReplyTo.IsNobody())
            waiting.ReplyTo.Tell(waiting.ReplyIfLost);
    }

    private void Note(LogLevel level, string template, params object?[] args)
    {
        if (!_logger.IsEnabled(level))
            return;
        using (_logger.BeginScope(new LogScope(("peer_id", PeerId), ("region", _state.Region))))
#pragma warning disable CA2254 // The templates are the flows' constants, carried in effects.
            _logger.Log(level, template, args);
#pragma warning restore CA2254
    }

    private const string IdleTimer = "idle";

    private sealed record IdleCheck
    {
        public static readonly IdleCheck Instance = new();
    }

    private sealed record AwaitingJournal(IActorRef ReplyTo, object? ReplyIfLost, IReadOnlyList<IPeerSessionEvent> Events);
}

/// <summary>What a session needs to allocate exits: the settings, the way to a region's pool, this region's pools.</summary>
/// <param name="Relay">This SuperNode's relay legs; null: no relay (the direct path is all there is).</param>
public sealed record ExitServices(ExitSettings Settings, IExitAllocator Allocator, IActorRef Pools, IRelayLegs? Relay = null)
{
    /// <summary>Where the sessions count their clients' rotations.</summary>
    public ExitMetrics Metrics { get; init; } = ExitMetrics.Default;
}
