using System.Text.Json;
using System.Text.Json.Serialization;
using MyDvpn.Protocol.Directory;
using MyDvpn.Protocol.SuperNode;

namespace MyDvpn.BaseNode.Web;

/// <summary>
/// What <c>/api/topology</c> answers and the page draws: the regions with their SuperNodes and exits, and every client's
/// live assignment. Made by <see cref="From"/> out of the admin API's own answers (<see cref="TopologyQueries"/>).
/// </summary>
/// <param name="Problems">The parts that did not answer, in words: what the page does not show and why.</param>
public sealed record TopologyView(
    DateTimeOffset GeneratedAt,
    IReadOnlyList<RegionTopology> Regions,
    IReadOnlyList<AssignmentTopology> Assignments,
    IReadOnlyList<string> UnreachableSuperNodes,
    IReadOnlyList<string> Problems)
{
    /// <summary>
    /// The regions as the directory lists them; each SuperNode's streams are the sessions it answered with; each region's
    /// exits from its pool. A client's assignment comes from its own session, which knows the path (direct, or relayed
    /// through which legs); an assignment a pool holds whose client session was not seen (its SuperNode did not answer, or
    /// the client is between streams) is shown from the pool, path unknown.
    /// </summary>
    public static TopologyView From(RegionList regions, Answered<SessionList> sessions, IReadOnlyDictionary<string, Answered<ExitPoolView>> pools,
        DateTimeOffset now)
    {
        var problems = new List<string>();
        if (sessions.Problem is { } sessionsProblem)
            problems.Add(sessionsProblem);
        var sessionList = sessions.Value?.Sessions ?? [];
        var streams = sessionList
            .GroupBy(s => (s.Region, s.SupernodeId))
            .ToDictionary(g => g.Key, g => g.Count());

        var regionViews = new List<RegionTopology>();
        foreach (var region in regions.Regions.OrderBy(r => r.Region, StringComparer.Ordinal))
        {
            var pool = pools.GetValueOrDefault(region.Region);
            if (pool?.Problem is { } poolProblem)
                problems.Add(poolProblem);
            var superNodes = region.Supernodes
                .OrderBy(n => n.Registration.SupernodeId, StringComparer.Ordinal)
                .Select(n => new SuperNodeTopology(
                    n.Registration.SupernodeId,
                    StatusName(n.Status),
                    n.Registration.GrpcEndpoint,
                    n.Load?.ConnectedPeers ?? 0,
                    n.Registration.Capacity,
                    n.Load?.ExitsAvailable ?? 0,
                    // Only an Up SuperNode is asked for its sessions.
                    n.Status == SuperNodeStatus.Up && sessions.Value is not null
                        ? streams.GetValueOrDefault((region.Region, n.Registration.SupernodeId))
                        : null,
                    n.LastReportAt?.ToDateTimeOffset()))
                .ToList();
            var exits = pool?.Value?.Exits
                .OrderBy(e => e.PeerId, StringComparer.Ordinal)
                .Select(e => new ExitTopology(e.PeerId, e.State.Length == 0 ? (e.Online ? "online" : "offline") : e.State, e.Online, e.Capacity, e.Clients,
                    e.Subnet, e.PublicAddress, e.RttMicros == 0 ? null : e.RttMicros / 1000.0))
                .ToList();
            regionViews.Add(new RegionTopology(region.Region, superNodes, exits, pool?.Problem));
        }

        var assignments = new Dictionary<string, AssignmentTopology>(StringComparer.Ordinal);
        // A client's own assignments, as its session holds them (a peer of role "both" may serve clients too: those are the
        // clients' to show). A client on two SuperNodes for a moment shows once.
        foreach (var session in sessionList)
            foreach (var a in session.Assignments.Where(a => a.ClientPeerId == session.PeerId))
                assignments.TryAdd(a.AssignmentId, Assignment(a, a.Path.Length == 0 ? "unknown" : a.Path, session.SupernodeId));
        foreach (var pool in pools.Values)
            foreach (var a in pool.Value?.Assignments ?? [])
                assignments.TryAdd(a.AssignmentId, Assignment(a, "unknown", null));

        return new TopologyView(
            now,
            regionViews,
            [.. assignments.Values.OrderBy(a => a.ClientRegion, StringComparer.Ordinal).ThenBy(a => a.ClientPeerId, StringComparer.Ordinal)
                .ThenBy(a => a.AssignmentId, StringComparer.Ordinal)],
            sessions.Value?.UnreachableSupernodes.ToList() ?? [],
            problems);
    }

    private static AssignmentTopology Assignment(ExitAssignment a, string path, string? clientSuperNode) => new(
        a.AssignmentId,
        a.ClientPeerId,
        a.ClientRegion,
        clientSuperNode,
        a.ExitPeerId,
        a.Region,
        a.ClientAddress,
        a.State,
        path,
        path == "relay" ? NullIfEmpty(a.ClientRelayLeg) : null,
        path == "relay" ? NullIfEmpty(a.ExitRelayLeg) : null);

    private static string? NullIfEmpty(string text) => text.Length == 0 ? null : text;

    private static string StatusName(SuperNodeStatus status) => status switch
    {
        SuperNodeStatus.Up => "up",
        SuperNodeStatus.Down => "down",
        SuperNodeStatus.Left => "left",
        _ => "unknown",
    };

    public string ToJson() => JsonSerializer.Serialize(this, TopologyJson.Default.TopologyView);
}

public sealed record RegionTopology(
    string Name,
    IReadOnlyList<SuperNodeTopology> SuperNodes,
    // Null when its exit pool did not answer (ExitsProblem says why).
    IReadOnlyList<ExitTopology>? Exits,
    string? ExitsProblem);

/// <param name="Status">up, down or left, as the directory holds it.</param>
/// <param name="ConnectedPeers">Its load, as its last report to the directory gave it.</param>
/// <param name="Streams">The peer streams it answered it holds now; null when it was not asked (not up) or did not answer.</param>
public sealed record SuperNodeTopology(
    string Id,
    string Status,
    string GrpcEndpoint,
    uint ConnectedPeers,
    uint Capacity,
    uint ExitsAvailable,
    int? Streams,
    DateTimeOffset? LastReportAt);

/// <param name="State">online, disconnected, lost, drained or offline, as the region's pool holds it.</param>
public sealed record ExitTopology(
    string PeerId,
    string State,
    bool Online,
    uint Capacity,
    uint Clients,
    string Subnet,
    string PublicAddress,
    double? RttMs);

/// <param name="Path">direct, relay, or unknown (the pool's view only: the client's session was not seen).</param>
/// <param name="ClientRelayLeg">When relayed: the client's leg, on a SuperNode of its region.</param>
/// <param name="ExitRelayLeg">When relayed: the exit's leg, on a SuperNode of the exit's region.</param>
public sealed record AssignmentTopology(
    string AssignmentId,
    string ClientPeerId,
    string ClientRegion,
    string? ClientSuperNode,
    string ExitPeerId,
    string ExitRegion,
    string ClientAddress,
    string State,
    string Path,
    string? ClientRelayLeg,
    string? ExitRelayLeg);

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, WriteIndented = false)]
[JsonSerializable(typeof(TopologyView))]
internal sealed partial class TopologyJson : JsonSerializerContext;
