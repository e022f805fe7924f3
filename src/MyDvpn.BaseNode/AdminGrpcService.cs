using Akka.Actor;
using Akka.Cluster;
using Grpc.Core;
using MyDvpn.Protocol.Admin;
using MyDvpn.Protocol.Directory;

namespace MyDvpn.BaseNode;

/// <summary>The admin API (admin certificates only): what <c>mydvpn admin</c> shows.</summary>
public sealed class AdminGrpcService(ActorSystem system, DirectoryQueries directory) : Admin.AdminBase
{
    public override Task<ClusterState> GetCluster(GetClusterRequest request, ServerCallContext context)
    {
        var cluster = Cluster.Get(system);
        var state = cluster.State;
        var result = new ClusterState { SelfAddress = cluster.SelfAddress.ToString() };
        result.Members.AddRange(state.Members.Select(member => new ClusterMember
        {
            Address = member.Address.ToString(),
            Status = member.Status.ToString(),
            Roles = { member.Roles.OrderBy(r => r, StringComparer.Ordinal) },
            Reachable = !state.Unreachable.Contains(member),
            Leader = member.Address.Equals(state.Leader),
        }));
        return Task.FromResult(result);
    }

    public override Task<RegionList> ListRegions(ListRegionsRequest request, ServerCallContext context) =>
        directory.ListRegions(context.CancellationToken);
}
