using Grpc.Core;
using MyDvpn.Protocol.Control;
using Prometheus;

namespace MyDvpn.BaseNode.Enrollment;

/// <summary>
/// The BaseNode's enrollment metrics: tokens created by role and redeemed by outcome (counted by the gRPC edge, where an
/// admin or a SuperNode asked: never on an entity's replay), and the peers the directory knows enrolled in each region by
/// role and state (<c>mydvpn_peers</c>, the directory's view, the same on every BaseNode, read from the peer registry when
/// <c>/metrics</c> is scraped). Every label value known in advance is there at zero from the start. <see cref="Default"/> is
/// the one <c>/metrics</c> serves; a test makes its own over a registry of its own.
/// </summary>
public sealed class EnrollmentMetrics
{
    /// <summary>The roles a token enrolls, as the <c>role</c> label writes them.</summary>
    public static readonly IReadOnlyList<EnrollmentRole> PeerRoles = [EnrollmentRole.Client, EnrollmentRole.Exit, EnrollmentRole.Both];

    /// <summary>Every outcome of a redemption: <c>ok</c>, or the reason it was refused with.</summary>
    public static readonly IReadOnlyList<string> RedemptionOutcomes =
    [
        Ok,
        .. new[]
        {
            RefusalReason.RateLimited, RefusalReason.Revoked, RefusalReason.BadToken, RefusalReason.TokenExpired,
            RefusalReason.TokenUsedUp, RefusalReason.RoleNotAllowed, RefusalReason.WrongRegion,
        }.Select(RefusalReasons.WireName),
    ];

    public const string Ok = "ok", Online = "online", Offline = "offline";

    /// <summary>How long a scrape waits for the peer registry and the region index before it shows the last figures again.</summary>
    public static readonly TimeSpan PeersAnswerWithin = TimeSpan.FromSeconds(2);

    public static readonly EnrollmentMetrics Default = new(Metrics.DefaultFactory);

    private readonly Counter _created;
    private readonly Counter _redemptions;
    private readonly Gauge _peers;

    public EnrollmentMetrics(IMetricFactory factory)
    {
        _created = factory.CreateCounter("mydvpn_tokens_created_total", "Enrollment tokens admins created, by the role they enroll.",
            new CounterConfiguration { LabelNames = ["role"] });
        _redemptions = factory.CreateCounter("mydvpn_enrollment_redemptions_total",
            "Enrollment token redemptions, by outcome (ok or the refusal reason).", new CounterConfiguration { LabelNames = ["outcome"] });
        _peers = factory.CreateGauge("mydvpn_peers",
            "Peers enrolled in a region, by role and by state (online: a SuperNode last said its stream was open); the directory's view.",
            new GaugeConfiguration { LabelNames = ["region", "role", "state"] });
        foreach (var role in PeerRoles)
            _created.WithLabels(RoleLabel(role));
        foreach (var outcome in RedemptionOutcomes)
            _redemptions.WithLabels(outcome);
    }

    /// <summary>The <c>role</c> label: <c>client</c>, <c>exit</c>, <c>both</c>.</summary>
    public static string RoleLabel(EnrollmentRole role) => role.ToString().ToLowerInvariant();

    public void TokenCreated(EnrollmentRole role) => _created.WithLabels(RoleLabel(role)).Inc();

    /// <summary>A redemption ended: <see cref="Ok"/> or the refusal reason's wire name.</summary>
    public void Redeemed(string outcome) => _redemptions.WithLabels(outcome).Inc();

    /// <summary>
    /// The peers of every region in <paramref name="regions"/> and in <paramref name="counts"/>: each role and state is set,
    /// to zero where the registry counts none.
    /// </summary>
    public void ShowPeers(IEnumerable<string> regions, PeerCounts counts)
    {
        var byKey = counts.Counts.ToDictionary(c => (c.Region, c.Role, c.Connected), c => c.Count);
        foreach (var region in regions.Concat(counts.Counts.Select(c => c.Region)).Distinct(StringComparer.Ordinal))
        {
            foreach (var role in PeerRoles)
            {
                _peers.WithLabels(region, RoleLabel(role), Online).Set(byKey.GetValueOrDefault((region, role, true)));
                _peers.WithLabels(region, RoleLabel(role), Offline).Set(byKey.GetValueOrDefault((region, role, false)));
            }
        }
    }

    /// <summary>
    /// Reads the regions and the peer counts and shows them; a registry or index that does not answer within
    /// <see cref="PeersAnswerWithin"/> (a cluster still forming) leaves the last figures shown.
    /// </summary>
    public async Task RefreshPeersAsync(
        Func<CancellationToken, Task<IEnumerable<string>>> regions, Func<CancellationToken, Task<PeerCounts>> counts, CancellationToken cancellationToken)
    {
        using var within = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        within.CancelAfter(PeersAnswerWithin);
        try
        {
            var known = regions(within.Token);
            var counted = counts(within.Token);
            ShowPeers(await known, await counted);
        }
        catch (Exception ex) when (ex is RpcException or OperationCanceledException)
        {
            // Shown again at the next scrape.
        }
    }
}
