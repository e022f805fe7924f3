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

    public async Task<Proto.RegionList> ListRegions(CancellationToken cancellationToken)
    {
        var names = await AskAsync<RegionNames>(regionIndex.ActorRef, GetRegionNames.Instance, "region index", cancellationToken);
        var views = await Task.WhenAll(names.Regions.Select(region =>
            AskAsync<RegionView>(directory.ActorRef, new GetRegion(region), $"directory of region {region}", cancellationToken)));
        var list = new Proto.RegionList();
        list.Regions.AddRange(views.Select(DirectoryMapping.ToProto));
        return list;
    }

    private static async Task<T> AskAsync<T>(IActorRef target, object message, string what, CancellationToken cancellationToken)
    {
        try
        {
            return await target.Ask<T>(message, AskTimeout, cancellationToken);
        }
        catch (AskTimeoutException)
        {
            throw new RpcException(new Grpc.Core.Status(StatusCode.Unavailable,
                $"the {what} did not answer within {AskTimeout.TotalSeconds:0} s (cluster forming or journal unavailable); retry"));
        }
    }
}
