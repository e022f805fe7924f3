using Grpc.Core;
using Microsoft.Extensions.Logging;
using MyDvpn.BaseNode.Enrollment;
using MyDvpn.BaseNode.Web;
using MyDvpn.Common;
using MyDvpn.Protocol.Admin;
using MyDvpn.Protocol.Directory;
using MyDvpn.Protocol.SuperNode;
using Status = Grpc.Core.Status;

namespace MyDvpn.BaseNode;

/// <summary>
/// What the network looks like now, as the admin API (<c>admin regions|sessions|exits</c>) and the web topology page
/// (<see cref="TopologyPage"/>) both show it: the directory's regions, the sessions of every Up SuperNode and each
/// region's exit pool. One code path for both: the page is the admin API's three answers put together.
/// </summary>
public sealed class TopologyQueries(DirectoryQueries directory, SuperNodeClients superNodes, ILogger<TopologyQueries> logger)
{
    /// <summary>How long a SuperNode has to show its region's exit pool before the next one is asked.</summary>
    public static readonly TimeSpan ListExitsTimeout = TimeSpan.FromSeconds(5);

    public Task<RegionList> Regions(CancellationToken cancellationToken) => directory.ListRegions(cancellationToken);

    /// <summary>The open peer streams of every Up SuperNode (of <paramref name="region"/>, or all); those that did not answer named.</summary>
    public async Task<SessionList> Sessions(string? region, CancellationToken cancellationToken)
    {
        if (region is not null && !RegionName.IsValid(region, out var problem))
            throw new RpcException(new Status(StatusCode.InvalidArgument, problem));
        var targets = await directory.UpSuperNodes(region, cancellationToken);
        var gathered = await superNodes.CallEachAsync(
            targets,
            (client, options) => client.ListSessionsAsync(new ListLocalSessionsRequest(), options),
            "list sessions",
            cancellationToken);

        var list = new SessionList();
        list.Sessions.AddRange(gathered.Replies
            .SelectMany(r => r.Reply.Sessions)
            .Where(s => region is null || s.Region == region)
            .OrderBy(s => s.Region, StringComparer.Ordinal)
            .ThenBy(s => s.PeerId, StringComparer.Ordinal)
            // A peer moving between SuperNodes shows on both for a moment.
            .ThenBy(s => s.SupernodeId, StringComparer.Ordinal));
        list.UnreachableSupernodes.AddRange(gathered.Unreachable.Select(n => n.SuperNodeId).Order(StringComparer.Ordinal));
        return list;
    }

    /// <summary>
    /// A region's exits and assignments from its exit pool, through any Up SuperNode of the region; none up is
    /// UNAVAILABLE naming the region, and a SuperNode's refusal comes back as it gave it.
    /// </summary>
    public async Task<ExitPoolView> ExitPool(string region, CancellationToken cancellationToken)
    {
        if (!RegionName.IsValid(region, out var problem))
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"region: {problem}"));
        var targets = await directory.UpSuperNodes(region, cancellationToken);
        return await superNodes.CallAnyAsync(
            targets,
            invoker => new ExitAllocation.ExitAllocationClient(invoker),
            (client, options) => client.ListExitsAsync(new ListExitsRequest { Region = region }, options),
            ListExitsTimeout,
            $"the exits of region {region}",
            cancellationToken);
    }

    /// <summary>
    /// The whole picture for the web page: the regions, every session and each region's exit pool, asked at once. A part
    /// that does not answer (no SuperNode of a region up, the directory busy) is a problem in words in the view, not a
    /// failure of the whole; only the directory's regions are required.
    /// </summary>
    public async Task<TopologyView> Topology(DateTimeOffset now, CancellationToken cancellationToken)
    {
        var regions = await Regions(cancellationToken);
        var sessions = Answer(Sessions(region: null, cancellationToken), "the sessions");
        var pools = regions.Regions
            .Select(r => (Region: r.Region, Pool: Answer(ExitPool(r.Region, cancellationToken), $"the exits of region {r.Region}")))
            .ToList();
        var answered = new Dictionary<string, Answered<ExitPoolView>>(StringComparer.Ordinal);
        foreach (var (region, pool) in pools)
            answered[region] = await pool;
        return TopologyView.From(regions, await sessions, answered, now);
    }

    /// <summary>The answer, or why there is none (an RPC failure, in its words).</summary>
    private async Task<Answered<T>> Answer<T>(Task<T> call, string what)
        where T : class
    {
        try
        {
            return new Answered<T>(await call, null);
        }
        catch (RpcException ex) when (ex.StatusCode != StatusCode.Cancelled)
        {
            logger.LogDebug("Topology: {What} did not come: {StatusCode} {Detail}", what, ex.StatusCode, ex.Status.Detail);
            return new Answered<T>(null, $"{what} did not come: {ex.Status.Detail}");
        }
    }
}

/// <summary>An answer of one part of the topology, or in words why it did not come.</summary>
public sealed record Answered<T>(T? Value, string? Problem)
    where T : class;
