using MyDvpn.Protocol.Control;
using Prometheus;

namespace MyDvpn.SuperNode.Edge;

/// <summary>
/// <c>mydvpn_sessions</c>: the authenticated peer streams this SuperNode holds, by region and the peer's role, read from
/// <see cref="LocalStreams"/> when <c>/metrics</c> is scraped (every role at zero without a stream). No peer is a label.
/// </summary>
public sealed class SessionMetrics(IMetricFactory factory)
{
    /// <summary>The roles a peer authenticates as, as the <c>role</c> label writes them (<c>client</c>, <c>exit</c>, <c>both</c>).</summary>
    public static readonly IReadOnlyList<PeerRole> Roles = [PeerRole.Client, PeerRole.Exit, PeerRole.Both];

    public static readonly SessionMetrics Default = new(Metrics.DefaultFactory);

    private readonly Gauge _sessions = factory.CreateGauge("mydvpn_sessions",
        "Authenticated peer streams this SuperNode holds, by region and the peer's role.",
        new GaugeConfiguration { LabelNames = ["region", "role"] });

    public static string RoleLabel(PeerRole role) => role.ToString().ToLowerInvariant();

    public void Show(LocalStreams streams)
    {
        var byRole = streams.Snapshot().CountBy(s => s.Role).ToDictionary();
        foreach (var role in Roles)
            _sessions.WithLabels(streams.Region, RoleLabel(role)).Set(byRole.GetValueOrDefault(role));
    }
}
