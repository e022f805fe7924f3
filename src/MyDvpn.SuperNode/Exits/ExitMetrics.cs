using Google.Protobuf.Reflection;
using MyDvpn.Protocol.SuperNode;
using Prometheus;

namespace MyDvpn.SuperNode.Exits;

/// <summary>
/// The exits' Prometheus metrics: the clients' rotations, counted by the client's session when one ends (live, never while
/// its journal is replayed; every reason and outcome at zero from the start), and what each region's pool sees — its exits by state, the client places they offer and its
/// assignments — set by the pool after each decision. A region's pool runs on one of its SuperNodes at a time: the others
/// show its figures at zero (<see cref="ShowAtZero"/>, from a SuperNode's start and when a pool stops there), so the region's
/// figures are the sum over its SuperNodes. <see cref="Default"/> is the one <c>/metrics</c> serves; a test makes its own
/// over a registry of its own and reads the values back.
/// </summary>
public sealed class ExitMetrics
{
    // The static fields Default's constructor reads come before it: static fields are initialised in the order they are
    // written (after it, the histogram got null buckets, so prometheus-net's default ones, up to 10 s).
    private static readonly EnumDescriptor Reasons =
        SupernodeReflection.Descriptor.EnumTypes.Single(e => e.ClrType == typeof(RotationReason));

    /// <summary>From 50 ms (a move between two exits near the SuperNode) to a minute (a client that had to be redelivered to).</summary>
    public static readonly double[] RotationBuckets = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60];

    public static readonly ExitMetrics Default = new(Metrics.DefaultFactory);

    public const string Moved = "moved", Failed = "failed";

    /// <summary>The <c>state</c> of <c>mydvpn_exit_assignments</c>: answered by both halves, or still setting up.</summary>
    public const string Active = "active", SettingUp = "setting_up";

    private readonly Counter _rotations;
    private readonly Histogram _rotationSeconds;
    private readonly Gauge _exits;
    private readonly Counter _refusedEndpoints;
    private readonly Gauge _capacity;
    private readonly Gauge _assignments;

    public ExitMetrics(IMetricFactory factory)
    {
        _rotations = factory.CreateCounter("mydvpn_exit_rotations_total",
            "Moves of a client from one exit to another that ended, by why it moved and whether it did (moved, failed).",
            new CounterConfiguration { LabelNames = ["reason", "outcome"] });
        _rotationSeconds = factory.CreateHistogram("mydvpn_exit_rotation_seconds",
            "Time from a rotation's start to the client moved (its RotatePeer applied), for rotations that moved the client.",
            new HistogramConfiguration { Buckets = RotationBuckets });
        _exits = factory.CreateGauge("mydvpn_exits",
            "Exits a region's pool sees, by state (online, stale, disconnected, lost, drained, offline); set by the SuperNode running the pool, zero on the others.",
            new GaugeConfiguration { LabelNames = ["region", "state"] });
        _refusedEndpoints = factory.CreateCounter("mydvpn_exit_endpoints_refused_total",
            "Endpoints exits claimed that the region did not take (not on the address their stream comes from, nor configured): their clients were pointed at the stream's address.",
            new CounterConfiguration { LabelNames = ["region"] });
        _capacity = factory.CreateGauge("mydvpn_exit_capacity",
            "Clients a region's online exits can take in all (each its declared capacity, at most its subnet's), the ones they serve included; set by the SuperNode running the pool, zero on the others.",
            new GaugeConfiguration { LabelNames = ["region"] });
        _assignments = factory.CreateGauge("mydvpn_exit_assignments",
            "Exit assignments a region's pool holds, by state (active, setting_up); set by the SuperNode running the pool, zero on the others.",
            new GaugeConfiguration { LabelNames = ["region", "state"] });
        // Every reason a rotation can have, both outcomes, at zero from the start: an increase() over the counter sees the
        // first rotation of a kind too, and the dashboard and alerts find the series before anything moved.
        foreach (var reason in Reasons.Values.Where(value => value.Number != (int)RotationReason.Unspecified))
        {
            _rotations.WithLabels(ReasonLabel((RotationReason)reason.Number), Moved);
            _rotations.WithLabels(ReasonLabel((RotationReason)reason.Number), Failed);
        }
    }

    /// <summary>An exit of <paramref name="region"/> claimed an endpoint the region did not take (<see cref="ExitEndpoints"/>).</summary>
    public void EndpointRefused(string region) => _refusedEndpoints.WithLabels(region).Inc();

    /// <summary>The <c>reason</c> label of a rotation: its proto name in lower case (<c>exit_lost</c>, <c>operator</c>).</summary>
    public static string ReasonLabel(RotationReason reason) =>
        reason == RotationReason.Unspecified
            ? "unspecified"
            : (Reasons.FindValueByNumber((int)reason)?.Name ?? reason.ToString()).ToLowerInvariant();

    /// <summary>A client's rotation ended: moved after <paramref name="took"/>, or failed.</summary>
    public void RotationEnded(RotationReason reason, bool moved, TimeSpan took)
    {
        _rotations.WithLabels(ReasonLabel(reason), moved ? Moved : Failed).Inc();
        if (moved)
            _rotationSeconds.Observe(Math.Max(0, took.TotalSeconds));
    }

    /// <summary>What <paramref name="region"/>'s pool sees now (every state of <see cref="ExitStates"/> is set).</summary>
    public void PoolSees(string region, PoolFigures figures)
    {
        foreach (var state in ExitStates.All)
            _exits.WithLabels(region, state).Set(figures.ExitsByState.GetValueOrDefault(state));
        _capacity.WithLabels(region).Set(figures.Capacity);
        _assignments.WithLabels(region, Active).Set(figures.ActiveAssignments);
        _assignments.WithLabels(region, SettingUp).Set(figures.SettingUpAssignments);
    }

    /// <summary>
    /// <paramref name="region"/>'s pool does not run here (not yet, or it stopped: moved to another SuperNode of the region,
    /// or shut down): its figures are zero here.
    /// </summary>
    public void ShowAtZero(string region) => PoolSees(region, PoolFigures.None);
}

/// <summary>What a region's pool sees, for its gauges: its exits by state, the client places they offer, its assignments.</summary>
public sealed record PoolFigures(IReadOnlyDictionary<string, int> ExitsByState, int Capacity, int ActiveAssignments, int SettingUpAssignments)
{
    public static readonly PoolFigures None = new(new Dictionary<string, int>(), 0, 0, 0);
}
