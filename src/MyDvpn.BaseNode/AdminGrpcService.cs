using Akka.Actor;
using Akka.Cluster;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using MyDvpn.BaseNode.Certificates;
using MyDvpn.BaseNode.Enrollment;
using MyDvpn.Common;
using MyDvpn.Protocol.Admin;
using MyDvpn.Protocol.Directory;
using MyDvpn.Protocol.SuperNode;
using Status = Grpc.Core.Status;

namespace MyDvpn.BaseNode;

/// <summary>The admin API (admin certificates only): what <c>mydvpn admin</c> shows and does.</summary>
public sealed class AdminGrpcService(
    ActorSystem system,
    DirectoryQueries directory,
    EnrollmentQueries enrollment,
    SuperNodeClients superNodes,
    CrlPublication crl,
    ILogger<AdminGrpcService> logger) : Admin.AdminBase
{
    /// <summary>How long a SuperNode has to show its region's exit pool before the next one is asked.</summary>
    private static readonly TimeSpan ListExitsTimeout = TimeSpan.FromSeconds(5);

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

    public override async Task<EnrollmentToken> CreateToken(CreateTokenRequest request, ServerCallContext context)
    {
        // The secret exists only here and in the reply; the token entity gets its SHA-256.
        var credential = TokenCredential.Generate();
        var issued = await enrollment.CreateToken(EnrollmentMapping.ToCreate(request, credential), context.CancellationToken);
        logger.LogInformation("Enrollment token {TokenId} created by {Admin}: role {Role}, region {Region}, {Uses} uses, expires {ExpiresAt:u}",
            issued.TokenId, AdminName(context), issued.Role, issued.Region, issued.Uses, issued.ExpiresAt);
        return EnrollmentMapping.ToProto(issued, credential);
    }

    public override async Task<RevokePeerResponse> RevokePeer(RevokePeerRequest request, ServerCallContext context)
    {
        if (!NodeId.IsValid(request.PeerId, out var problem))
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"peer_id '{request.PeerId}' {problem}"));
        var recorded = await enrollment.Revoke(request.PeerId, context.CancellationToken);
        var version = recorded.Revocation.Version;
        logger.LogWarning(
            recorded.AlreadyRevoked
                ? "Security event: {Admin} revoked peer {PeerId} again (revocation version {Version}); telling the SuperNodes again"
                : "Security event: {Admin} revoked peer {PeerId} (revocation version {Version})",
            AdminName(context), request.PeerId, version);

        IReadOnlyList<Directory.SuperNodeInfo> targets;
        try
        {
            targets = await directory.UpSuperNodes(region: null, context.CancellationToken);
        }
        catch (RpcException ex)
        {
            throw new RpcException(new Status(ex.StatusCode,
                $"peer {request.PeerId} is revoked (version {version}), but no SuperNode was told: {ex.Status.Detail}. "
                + "SuperNodes pick the revocation up with their next report."));
        }

        var told = await superNodes.CallEachAsync(
            targets,
            (client, options) => client.RevokeAsync(new RevokeRequest { PeerId = request.PeerId, Version = (ulong)version }, options),
            $"revoke {request.PeerId}",
            context.CancellationToken);
        var response = new RevokePeerResponse { Version = (ulong)version };
        response.NotifiedSupernodes.AddRange(SortedIds(told.Replies.Select(r => r.SuperNode)));
        response.UnreachableSupernodes.AddRange(SortedIds(told.Unreachable));
        logger.LogInformation("Revocation of peer {PeerId} (version {Version}) told to {Notified}; unreachable: {Unreachable}",
            request.PeerId, version, JoinOrNone(response.NotifiedSupernodes), JoinOrNone(response.UnreachableSupernodes));
        return response;
    }

    public override async Task<SessionList> ListSessions(ListSessionsRequest request, ServerCallContext context)
    {
        var region = request.Region.Length == 0 ? null : request.Region;
        if (region is not null && !RegionName.IsValid(region, out var problem))
            throw new RpcException(new Status(StatusCode.InvalidArgument, problem));
        var targets = await directory.UpSuperNodes(region, context.CancellationToken);
        var gathered = await superNodes.CallEachAsync(
            targets,
            (client, options) => client.ListSessionsAsync(new ListLocalSessionsRequest(), options),
            "list sessions",
            context.CancellationToken);

        var list = new SessionList();
        list.Sessions.AddRange(gathered.Replies
            .SelectMany(r => r.Reply.Sessions)
            .Where(s => region is null || s.Region == region)
            .OrderBy(s => s.Region, StringComparer.Ordinal)
            .ThenBy(s => s.PeerId, StringComparer.Ordinal)
            // A peer moving between SuperNodes shows on both for a moment.
            .ThenBy(s => s.SupernodeId, StringComparer.Ordinal));
        list.UnreachableSupernodes.AddRange(SortedIds(gathered.Unreachable));
        return list;
    }

    public override async Task<IssueCommandResponse> IssueCommand(AdminCommandRequest request, ServerCallContext context)
    {
        if (!RegionName.IsValid(request.Region, out var problem))
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"region: {problem}"));
        if (request.Request is not { } issue || !NodeId.IsValid(issue.PeerId, out problem))
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"peer_id: {problem}"));
        var targets = await directory.UpSuperNodes(request.Region, context.CancellationToken);
        logger.LogInformation("{Admin} issues {Command} to peer {PeerId} of region {Region}",
            AdminName(context), issue.Command?.BodyCase, issue.PeerId, request.Region);
        // Waiting covers the session's retries up to the command's deadline.
        return await superNodes.CallAnyAsync(
            targets,
            (client, options) => client.IssueCommandAsync(issue, options),
            issue.Wait ? TimeSpan.FromSeconds(60) : TimeSpan.FromSeconds(15),
            $"a command for peer {issue.PeerId} of region {request.Region}",
            context.CancellationToken);
    }

    public override async Task<ExitPoolView> ListExits(ListExitsRequest request, ServerCallContext context)
    {
        if (!RegionName.IsValid(request.Region, out var problem))
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"region: {problem}"));
        // Any SuperNode of the region reaches its exit pool; none up is UNAVAILABLE naming the region, and a
        // SuperNode's refusal comes back as it gave it.
        var targets = await directory.UpSuperNodes(request.Region, context.CancellationToken);
        return await superNodes.CallAnyAsync(
            targets,
            invoker => new ExitAllocation.ExitAllocationClient(invoker),
            (client, options) => client.ListExitsAsync(new ListExitsRequest { Region = request.Region }, options),
            ListExitsTimeout,
            $"the exits of region {request.Region}",
            context.CancellationToken);
    }

    public override async Task<DrainExitResponse> DrainExit(DrainExitRequest request, ServerCallContext context)
    {
        var region = await ExitRegionAsync(request.ExitPeerId, request.Region, context);
        var wait = request.WaitSeconds == 0 ? TimeSpan.FromSeconds(60) : TimeSpan.FromSeconds(request.WaitSeconds);
        logger.LogInformation("{Admin} drains exit {ExitPeerId} of region {Region}", AdminName(context), request.ExitPeerId, region);
        return await superNodes.CallAnyAsync(
            await directory.UpSuperNodes(region, context.CancellationToken),
            (client, options) => client.DrainExitAsync(new DrainExitRequest { Region = region, ExitPeerId = request.ExitPeerId, WaitSeconds = request.WaitSeconds }, options),
            wait + TimeSpan.FromSeconds(10),
            $"the drain of exit {request.ExitPeerId} of region {region}",
            context.CancellationToken);
    }

    public override async Task<UndrainExitResponse> UndrainExit(UndrainExitRequest request, ServerCallContext context)
    {
        var region = await ExitRegionAsync(request.ExitPeerId, request.Region, context);
        logger.LogInformation("{Admin} undrains exit {ExitPeerId} of region {Region}", AdminName(context), request.ExitPeerId, region);
        return await superNodes.CallAnyAsync(
            await directory.UpSuperNodes(region, context.CancellationToken),
            (client, options) => client.UndrainExitAsync(new UndrainExitRequest { Region = region, ExitPeerId = request.ExitPeerId }, options),
            ListExitsTimeout,
            $"the undrain of exit {request.ExitPeerId} of region {region}",
            context.CancellationToken);
    }

    public override async Task<RotationResult> RotateClient(RotateOneClientRequest request, ServerCallContext context)
    {
        if (!NodeId.IsValid(request.PeerId, out var problem))
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"peer_id: {problem}"));
        var region = ValidRegion(request.Region);
        logger.LogInformation("{Admin} moves client {PeerId} of region {Region} to another exit", AdminName(context), request.PeerId, region);
        return await superNodes.CallAnyAsync(
            await directory.UpSuperNodes(region, context.CancellationToken),
            (client, options) => client.RotateClientAsync(request, options),
            TimeSpan.FromSeconds(75),
            $"the move of client {request.PeerId} of region {region}",
            context.CancellationToken);
    }

    /// <summary>The region named for an exit (checked), or the one whose exit pool knows it when none is named.</summary>
    private async Task<string> ExitRegionAsync(string exitPeerId, string region, ServerCallContext context)
    {
        if (!NodeId.IsValid(exitPeerId, out var problem))
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"exit_peer_id: {problem}"));
        return region.Length > 0 ? ValidRegion(region) : await RegionOfExitAsync(exitPeerId, context);
    }

    /// <summary>The region whose exit pool knows the exit (it holds a subnet there, or is online there).</summary>
    private async Task<string> RegionOfExitAsync(string exitPeerId, ServerCallContext context)
    {
        var regions = await directory.ListRegions(context.CancellationToken);
        foreach (var region in regions.Regions.Select(r => r.Region).Order(StringComparer.Ordinal))
        {
            try
            {
                var pool = await ListExits(new ListExitsRequest { Region = region }, context);
                if (pool.Exits.Any(e => e.PeerId == exitPeerId))
                    return region;
            }
            catch (RpcException ex) when (ex.StatusCode == StatusCode.Unavailable)
            {
                logger.LogInformation("Region {Region} did not show its exits while looking for exit {ExitPeerId}: {Problem}", region, exitPeerId, ex.Status.Detail);
            }
        }
        throw new RpcException(new Status(StatusCode.NotFound,
            $"no region's exit pool knows exit {exitPeerId} (regions asked: {JoinOrNone(regions.Regions.Select(r => r.Region))}); name its region with --region"));
    }

    private static string ValidRegion(string region) =>
        RegionName.IsValid(region, out var problem) ? region : throw new RpcException(new Status(StatusCode.InvalidArgument, $"region: {problem}"));

    private static IEnumerable<string> SortedIds(IEnumerable<Directory.SuperNodeInfo> nodes) =>
        nodes.Select(n => n.SuperNodeId).Order(StringComparer.Ordinal);

    private static string JoinOrNone(IEnumerable<string> ids) => string.Join(", ", ids.DefaultIfEmpty("none"));

    /// <summary>Who did it, for the audit log: the CN of the caller's admin certificate.</summary>
    public override Task<PublishCrlResponse> PublishCrl(PublishCrlRequest request, ServerCallContext context) =>
        crl.PublishAsync(request.Crl.ToByteArray(), AdminName(context), context.CancellationToken);

    public override Task<CrlView> GetCrl(GetCrlRequest request, ServerCallContext context) =>
        crl.ViewAsync(context.CancellationToken);

    private static string AdminName(ServerCallContext context) =>
        context.AuthContext.FindPropertiesByName("x509_common_name").FirstOrDefault()?.Value ?? context.Peer;
}
