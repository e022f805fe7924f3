using System.Collections.Immutable;
using Akka.Actor;
using Akka.Persistence;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using MyDvpn.Common;
using MyDvpn.Hosting;

namespace MyDvpn.BaseNode.Directory;

/// <summary>
/// One region's directory (sharded entity type <see cref="DirectoryEntityTypes.Directory"/>, entity id = region).
/// Registrations, downs and departures are persisted; load and last-report time are kept in memory only, and after
/// recovery every Up SuperNode gets one full grace period to report again. The silence check runs on the entity's
/// <see cref="TimeProvider"/> (<see cref="ClockTimers"/>), so a test's manual clock moves both "now" and the check.
/// </summary>
public sealed class DirectoryEntity : ReceivePersistentActor
{
    /// <summary>The persistence id of a region's directory is this prefix followed by the region.</summary>
    public const string PersistenceIdPrefix = "directory-";

    private const string SilenceCheckTimer = "silence-check";

    private readonly DirectorySettings _settings;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private readonly ClockTimers _timers;
    private readonly Snapshots _snapshots;

    /// <summary>Not persisted: the latest load and report time per SuperNode.</summary>
    private readonly Dictionary<string, LiveReport> _live = new(StringComparer.Ordinal);

    private DirectoryState _state;

    public DirectoryEntity(string region, DirectorySettings settings, TimeProvider time, ILogger logger)
    {
        _settings = settings;
        _time = time;
        _log = new ScopedLogger(logger, ("region", region));
        var self = Self;
        _timers = new ClockTimers(time, message => self.Tell(message));
        _state = DirectoryState.Empty(region);
        PersistenceId = PersistenceIdPrefix + region;
        _snapshots = new Snapshots(this, settings.SnapshotEvery, _log, $"Directory of region {region}");

        Recover<SnapshotOffer>(offer =>
            _snapshots.Restore<DirectorySnapshot>(offer, snapshot => _state = DirectoryState.FromSnapshot(snapshot)));
        Recover<IDirectoryEvent>(evt => _state = _state.Apply(evt));
        Recover<RecoveryCompleted>(_ => OnRecovered());

        Command<ReportSuperNode>(HandleReport);
        Command<DeregisterSuperNode>(HandleDeregister);
        Command<GetRegion>(_ => Sender.Tell(View()));
        Command<ClockTimers.Fired>(fired =>
        {
            if (_timers.Accept(fired) is CheckSilence)
                HandleSilenceCheck();
        });
        Command<ISnapshotResponse>(_snapshots.Handle);
    }

    public override string PersistenceId { get; }

    /// <param name="timeProvider">The clock for report times and the silence check; the system clock when null.</param>
    /// <param name="logger">Where the entity logs, in a <c>region</c> scope; nowhere when null.</param>
    public static Props Props(string region, DirectorySettings settings, TimeProvider? timeProvider = null, ILogger? logger = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(region);
        ArgumentNullException.ThrowIfNull(settings);
        settings.Validate();
        var time = timeProvider ?? TimeProvider.System;
        var log = logger ?? NullLogger.Instance;
        return Akka.Actor.Props.Create(() => new DirectoryEntity(region, settings, time, log));
    }

    protected override void PostStop()
    {
        _timers.Dispose();
        base.PostStop();
    }

    private void OnRecovered()
    {
        var now = _time.GetUtcNow();
        foreach (var node in _state.SuperNodes.Values.Where(n => n.Status == SuperNodeStatus.Up))
        {
            _live[node.Info.SuperNodeId] = new LiveReport(SuperNodeLoad.None, now);
        }

        _timers.StartPeriodic(SilenceCheckTimer, CheckSilence.Instance, _settings.SilenceCheckInterval);
    }

    private void HandleReport(ReportSuperNode report)
    {
        var sender = Sender;
        var now = _time.GetUtcNow();
        var id = report.Info.SuperNodeId;
        var accepted = new ReportAccepted(_state.Region, id);
        var registered = _state.DecideReport(report.Info, now);
        if (registered is null)
        {
            _live[id] = new LiveReport(report.Load, now);
            sender.Tell(accepted);
            return;
        }

        Persist(registered, evt =>
        {
            ApplyPersisted(evt);
            _live[id] = new LiveReport(report.Load, now);
            _log.LogInformation("Directory of region {Region}: SuperNode {SuperNodeId} registered at {GrpcEndpoint}", _state.Region, id,
                evt.Info.GrpcEndpoint);
            sender.Tell(accepted);
        });
    }

    private void HandleDeregister(DeregisterSuperNode deregister)
    {
        var sender = Sender;
        var reply = new SuperNodeDeregistered(_state.Region, deregister.SuperNodeId);
        var left = _state.DecideDeregister(deregister.SuperNodeId, _time.GetUtcNow());
        if (left is null)
        {
            sender.Tell(reply);
            return;
        }

        Persist(left, evt =>
        {
            ApplyPersisted(evt);
            _log.LogInformation("Directory of region {Region}: SuperNode {SuperNodeId} left", _state.Region, evt.SuperNodeId);
            sender.Tell(reply);
        });
    }

    private void HandleSilenceCheck()
    {
        var now = _time.GetUtcNow();
        var downs = _state.DecideSilent(LastReportAt, now, _settings.DownAfter);
        if (downs.IsEmpty)
        {
            return;
        }

        PersistAll(downs, evt =>
        {
            var silentFor = LastReportAt(evt.SuperNodeId) is { } last ? now - last : (TimeSpan?)null;
            ApplyPersisted(evt);
            _log.LogWarning("Directory of region {Region}: SuperNode {SuperNodeId} marked down, no report for {SilentFor} (grace {DownAfter})",
                _state.Region, evt.SuperNodeId, silentFor, _settings.DownAfter);
        });
    }

    private void ApplyPersisted(IDirectoryEvent evt)
    {
        _state = _state.Apply(evt);
        _snapshots.AfterPersisted(_state.ToSnapshot);
    }

    private DateTimeOffset? LastReportAt(string superNodeId) =>
        _live.TryGetValue(superNodeId, out var live) ? live.At : null;

    private RegionView View() =>
        new(
            _state.Region,
            _state.SuperNodes.Values
                .OrderBy(n => n.Info.SuperNodeId, StringComparer.Ordinal)
                .Select(n =>
                {
                    var live = _live.GetValueOrDefault(n.Info.SuperNodeId);
                    return new SuperNodeView(
                        n.Info,
                        n.Status == SuperNodeStatus.Up && live is not null ? live.Load : SuperNodeLoad.None,
                        n.Status,
                        n.RegisteredAt,
                        live?.At ?? n.RegisteredAt);
                })
                .ToImmutableList());

    private sealed record LiveReport(SuperNodeLoad Load, DateTimeOffset At);

    /// <summary>The periodic timer's tick; local only, never leaves this actor.</summary>
    private sealed class CheckSilence
    {
        public static readonly CheckSilence Instance = new();

        private CheckSilence()
        {
        }
    }
}
