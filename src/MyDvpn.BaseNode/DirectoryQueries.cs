using System.Collections.Immutable;
using Akka.Actor;
using Akka.Hosting;
using Grpc.Core;
using MyDvpn.BaseNode.Directory;
using Proto = MyDvpn.Protocol.Directory;

namespace MyDvpn.BaseNode;

/// <summary>Registry keys of the BaseNode's shard regions.</summary>
public sealed class DirectoryShard;

public sealed class RegionIndexShard;

/// <summary>
/// The gRPC edge's way into the directory entities: Ask with a timeout and the call's
/// cancellation, mapped to gRPC status codes when the cluster does not answer.
/// </summary>
public sealed class DirectoryQueries(IRequiredActor<DirectoryShard> directory, IRequiredActor<RegionIndexShard> regionIndex)
{
    public static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(5);

    public Task<ReportAccepted> Report(SuperNodeInfo info, SuperNodeLoad load, CancellationToken cancellationToken) =>
        AskAsync<ReportAccepted>(directory.ActorRef, new ReportSuperNode(info, load), $"directory of region {info.Region}", cancellationToken);

    public Task<RegionAdded> IndexRegion(string region, CancellationToken cancellationToken) =>
        AskAsync<RegionAdded>(regionIndex.ActorRef, new AddRegion(region), "region index", cancellationToken);

    public Task<SuperNodeDeregistered> Deregister(string region, string superNodeId, CancellationToken cancellationToken) =>
        AskAsync<SuperNodeDeregistered>(directory.ActorRef, new DeregisterSuperNode(region, superNodeId), $"directory of region {region}", cancellationToken);

    /// <summary>The names of the regions any SuperNode ever registered in.</summary>
    public async Task<ImmutableSortedSet<string>> RegionNames(CancellationToken cancellationToken) =>
        (await AskAsync<RegionNames>(regionIndex.ActorRef, GetRegionNames.Instance, "region index", cancellationToken)).Regions;

    public async Task<Proto.RegionList> ListRegions(CancellationToken cancellationToken)
    {
        var views = await RegionViews(region: null, cancellationToken);
        var list = new Proto.RegionList();
        list.Regions.AddRange(views.Select(DirectoryMapping.ToProto));
        return list;
    }

    /// <summary>The SuperNodes the directory holds Up, of one region or (<paramref name="region"/> null) all.</summary>
    public async Task<ImmutableList<SuperNodeInfo>> UpSuperNodes(string? region, CancellationToken cancellationToken)
    {
        var views = await RegionViews(region, cancellationToken);
        return views
            .SelectMany(view => view.SuperNodes)
            .Where(node => node.Status == SuperNodeStatus.Up)
            .Select(node => node.Info)
            .ToImmutableList();
    }

    /// <summary>
    /// Ask with <paramref name="timeout"/> (default <see cref="AskTimeout"/>); no answer in time is
    /// <see cref="StatusCode.Unavailable"/> naming <paramref name="what"/>.
    /// </summary>
    internal static async Task<T> AskAsync<T>(IActorRef target, object message, string what, CancellationToken cancellationToken, TimeSpan? timeout = null)
    {
        var wait = timeout ?? AskTimeout;
        try
        {
            return await target.Ask<T>(message, wait, cancellationToken);
        }
        catch (AskTimeoutException)
        {
            throw new RpcException(new Grpc.Core.Status(StatusCode.Unavailable,
                $"the {what} did not answer within {wait.TotalSeconds:0.#} s (cluster forming or journal unavailable); retry"));
        }
    }

    /// <summary>
    /// Region views in name order. Only indexed regions are asked: asking a directory entity for an unknown name
    /// would start (and remember) an entity for it.
    /// </summary>
    private async Task<RegionView[]> RegionViews(string? region, CancellationToken cancellationToken)
    {
        var names = await AskAsync<RegionNames>(regionIndex.ActorRef, GetRegionNames.Instance, "region index", cancellationToken);
        var wanted = names.Regions.Where(name => region is null || name == region);
        return await Task.WhenAll(wanted.Select(name =>
            AskAsync<RegionView>(directory.ActorRef, new GetRegion(name), $"directory of region {name}", cancellationToken)));
    }
}
