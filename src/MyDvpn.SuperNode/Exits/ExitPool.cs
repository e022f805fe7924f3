using System.Diagnostics;
using Akka.Actor;
using Akka.Persistence;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using MyDvpn.Common;
using MyDvpn.Hosting;
using MyDvpn.SuperNode.Sessions;
using MyDvpn.Telemetry;
using ControlCommand = MyDvpn.Protocol.Control.Command;

namespace MyDvpn.SuperNode.Exits;

/// <summary>
/// A region's exits and who uses them (sharded entity type <see cref="ExitPoolEntityTypes.ExitPool"/>, entity id =
/// region; ARCHITECTURE §2 ExitPool). A thin persistent actor: every message goes to the pure <see cref="PoolState.Decide"/>,
/// whose <see cref="PoolDecision"/> it persists and whose <see cref="PoolEffect"/>s it then runs — the only place that
/// touches actors and timers. The flows live with their state: <see cref="ExitSetup"/> (allocation, the exit's answer,
/// rollback and the next exit), <see cref="AssignmentRelease"/> (release, superseded assignments, setups a restart cut
/// short), <see cref="ExitAnnouncements"/> (exits online, offline, silent).
/// <para>
/// The journal holds which subnet each exit owns and every assignment (<see cref="ExitPoolState"/>); exits' presence,
/// their recent failures and the setups under way live in memory only. Timers run on the pool's <see cref="TimeProvider"/>
/// (<see cref="ClockTimers"/>), so a test's manual clock moves both "now" and the timers.
/// </para>
/// </summary>
public sealed class ExitPool : ReceivePersistentActor
{
    public const string PersistenceIdPrefix = "exit-pool/";
    private const int SnapshotEvery = 100;

    private readonly IActorRef _peers;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly ClockTimers _timers;
    private readonly IClientRotations? _rotations;
    private readonly ExitMetrics _metrics;
    private readonly CancellationTokenSource _lifetime = new();
    private readonly Snapshots _snapshots;

    // The callers waiting for an allocation or a release, by what they wait for. Actor refs stay here, out of the pure
    // state: its effects name a caller by what it waits for (Await, Answer), so decisions stay plain values a test
    // compares, and the refs live exactly as long as the calls, which end with this incarnation.
    private readonly Dictionary<(Awaited What, string AssignmentId), List<IActorRef>> _waiting = [];

    /// <summary>The span of each allocation under way that came with a trace (<c>--otlp</c>); in memory only, like the setups.</summary>
    private readonly Dictionary<string, Activity> _allocationSpans = [];

    private PoolState _state;

    public ExitPool(string region, ExitSettings settings, IActorRef peers, TimeProvider time, ILogger logger, IClientRotations? rotations,
        ExitMetrics metrics)
    {
        _peers = peers;
        _rotations = rotations;
        _metrics = metrics;
        _time = time;
        _logger = logger;
        var self = Self;
        _timers = new ClockTimers(time, message => self.Tell(message));
        _state = PoolState.Empty(region, settings);
        PersistenceId = PersistenceIdPrefix + region;

        _snapshots = new Snapshots(this, SnapshotEvery, logger, $"Exit pool of region {region}");
        Recover<SnapshotOffer>(offer =>
            _snapshots.Restore<ExitPoolSnapshot>(offer, snapshot => _state = _state with { Durable = ExitPoolState.FromSnapshot(snapshot) }));
        Recover<IExitPoolEvent>(evt => _state = _state.Apply(evt));
        Recover<RecoveryCompleted>(_ => Run(_state.DecideRecovered(_time.GetUtcNow()), ActorRefs.Nobody));

        Command<AllocateExit>(allocate =>
        {
            TraceAllocation(allocate);
            Decide(allocate);
        });
        Command<CommandAccepted>(_ => { });
        Command<CommandOutcome>(Decide);
        Command<ReleaseExit>(Decide);
        Command<ExitOnline>(Decide);
        Command<ExitOffline>(Decide);
        Command<GetExitPool>(Decide);
        Command<GetAssignment>(Decide);
        Command<DrainExit>(Decide);
        Command<ExitPathFailed>(Decide);
        Command<UndrainExit>(Decide);
        Command<ClockTimers.Fired>(fired =>
        {
            if (_timers.Accept(fired) is { } message)
                Decide(message);
        });
        Command<StopExitPool>(_ => Context.Stop(Self));
        Command<ISnapshotResponse>(_snapshots.Handle);
    }

    public override string PersistenceId { get; }

    /// <param name="peers">The region's <c>peers</c> shard region, through which exits get their commands.</param>
    /// <param name="time">The clock for event times and timers; the system clock when null.</param>
    /// <param name="rotations">How the clients of lost and drained exits are asked to move; null: they are not (a pool of tests).</param>
    /// <param name="metrics">Where the pool shows how many exits it sees in each state; <see cref="ExitMetrics.Default"/> when null.</param>
    public static Props Props(string region, ExitSettings settings, IActorRef peers, TimeProvider? time = null, ILogger? logger = null,
        IClientRotations? rotations = null, ExitMetrics? metrics = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(region);
        ArgumentNullException.ThrowIfNull(peers);
        settings.Validate();
        var clock = time ?? TimeProvider.System;
        var log = logger ?? NullLogger.Instance;
        var shown = metrics ?? ExitMetrics.Default;
        return Akka.Actor.Props.Create(() => new ExitPool(region, settings, peers, clock, log, rotations, shown));
    }

    protected override void PostStop()
    {
        // The pool runs on one SuperNode of the region at a time: the next one shows its exits.
        _metrics.ShowAtZero(_state.Region);
        foreach (var span in _allocationSpans.Values)
            Tracing.End(span);
        _allocationSpans.Clear();
        _timers.Dispose();
        _lifetime.Cancel();
        _lifetime.Dispose();
        base.PostStop();
    }

    private void Decide(object message) => Run(_state.Decide(message, _time.GetUtcNow()), Sender);

    /// <summary>Persists the decision's events, then takes its state and runs its effects (at once when there are no events).</summary>
    private void Run(PoolDecision decision, IActorRef requester)
    {
        if (decision.Events.IsEmpty)
        {
            Take(decision.State);
            Perform(decision, requester);
            return;
        }

        var remaining = decision.Events.Count;
        PersistAll(decision.Events, _ =>
        {
            if (--remaining > 0)
                return;
            Take(decision.State);
            _snapshots.AfterPersisted(decision.Events.Count, _state.Durable.ToSnapshot);
            Perform(decision, requester);
        });
    }

    /// <summary>The decision's state is the pool's now; what it sees is shown (<c>mydvpn_exits</c>, <c>mydvpn_exit_capacity</c>, <c>mydvpn_exit_assignments</c>).</summary>
    private void Take(PoolState state)
    {
        _state = state;
        _metrics.PoolSees(_state.Region, _state.Figures());
    }

    private void Perform(PoolDecision decision, IActorRef requester)
    {
        foreach (var effect in decision.Effects)
        {
            switch (effect)
            {
                case PoolEffect.Reply reply:
                    if (reply.Message is ExitAllocated allocated)
                        EndAllocationSpan(allocated.Assignment.AssignmentId, allocated);
                    requester.Tell(reply.Message);
                    break;
                case PoolEffect.Await wait when !requester.IsNobody():
                    var key = (wait.What, wait.AssignmentId);
                    if (!_waiting.TryGetValue(key, out var waiters))
                        _waiting[key] = waiters = [];
                    waiters.Add(requester);
                    break;
                case PoolEffect.Answer answer:
                    EndAllocationSpan(answer.AssignmentId, answer.Message);
                    if (_waiting.Remove((answer.What, answer.AssignmentId), out var answered))
                    {
                        foreach (var waiter in answered)
                            waiter.Tell(answer.Message);
                    }
                    break;
                case PoolEffect.Issue issue:
                    _peers.Tell(new IssueCommand(issue.PeerId, Traced(issue.Command, _allocationSpans)));
                    break;
                case PoolEffect.StartTimer timer:
                    _timers.Start(timer.Key, timer.Message, timer.Delay, timer.Periodic);
                    break;
                case PoolEffect.MoveClient move when _rotations is not null:
                    MoveClient(move.Request);
                    break;
                case PoolEffect.CancelTimer cancel:
                    _timers.Cancel(cancel.Key);
                    break;
                case PoolEffect.Log log:
                    Note(log.Level, log.Template, log.Args);
                    break;
                case PoolEffect.CountRefusedEndpoint:
                    _metrics.EndpointRefused(_state.Region);
                    break;
            }
        }
    }

    /// <summary>
    /// Starts the pool's span of an allocation that came with a trace, the child of the caller's: it lasts until the pool
    /// answers, and the exit's SetupExit carries it (<see cref="Traced"/>). A span unanswered past twice the time a caller
    /// waits is ended here, so none is kept for ever.
    /// </summary>
    private void TraceAllocation(AllocateExit allocate)
    {
        // Spans keep the real clock's times.
        var now = DateTime.UtcNow;
        foreach (var (id, stale) in _allocationSpans.Where(s => now - s.Value.StartTimeUtc > 2 * _state.Settings.PoolAnswerWithin).ToList())
        {
            stale.SetStatus(ActivityStatusCode.Error, "no answer");
            Tracing.End(stale);
            _allocationSpans.Remove(id);
        }
        if (allocate.TraceParent is null || _allocationSpans.ContainsKey(allocate.AssignmentId))
            return;
        var span = Tracing.StartDetached("exit pool allocate", allocate.TraceParent);
        if (span is null)
            return;
        span.SetTag("mydvpn.region", allocate.Region);
        span.SetTag("mydvpn.assignment_id", allocate.AssignmentId);
        span.SetTag("mydvpn.client_peer_id", allocate.ClientPeerId);
        _allocationSpans[allocate.AssignmentId] = span;
    }

    /// <summary>A SetupExit of an allocation with a span carries it (<c>Command.trace_parent</c>): the exit's span applying it is its child.</summary>
    private static ControlCommand Traced(ControlCommand command, Dictionary<string, Activity> spans)
    {
        if (command.BodyCase != ControlCommand.BodyOneofCase.SetupExit || !spans.TryGetValue(command.SetupExit.AssignmentId, out var span))
            return command;
        var traced = command.Clone();
        traced.TraceParent = span.Id;
        span.AddEvent(new ActivityEvent("SetupExit issued", tags: new ActivityTagsCollection { ["mydvpn.command_id"] = command.CommandId }));
        return traced;
    }

    private void EndAllocationSpan(string assignmentId, object answer)
    {
        if (!_allocationSpans.Remove(assignmentId, out var span))
            return;
        if (answer is ExitAllocationRefused refused)
            span.SetStatus(ActivityStatusCode.Error, $"{refused.Reason}: {refused.Detail}");
        Tracing.End(span);
    }

    /// <summary>Asks the client's region to move it; a failure is logged, and the pool's periodic look asks again.</summary>
    private void MoveClient(Protocol.SuperNode.RotateClientRequest request)
    {
        var logger = _logger;
        var region = _state.Region;
        _ = _rotations!.RotateClientAsync(request, _lifetime.Token).ContinueWith(t =>
        {
            using (logger.BeginScope(new LogScope(("region", region))))
            {
                logger.LogWarning(t.Exception!.GetBaseException(),
                    "Could not ask region {ClientRegion} to move client {ClientPeerId} off exit {ExitPeerId}; asking again later",
                    request.Region, request.ClientPeerId, request.ExitPeerId);
            }
        }, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
    }

    private void Note(LogLevel level, string template, params object?[] args)
    {
        if (!_logger.IsEnabled(level))
            return;
        using (_logger.BeginScope(new Dictionary<string, object> { ["region"] = _state.Region }))
#pragma warning disable CA2254 // The templates are the flows' constants, carried in effects.
            _logger.Log(level, template, args);
#pragma warning restore CA2254
    }
}
