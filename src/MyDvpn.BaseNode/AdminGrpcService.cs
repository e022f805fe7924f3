using Akka.Actor;
using Akka.Cluster;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using MyDvpn.BaseNode.Certificates;
using MyDvpn.BaseNode.Enrollment;
using MyDvpn.BaseNode.Web;
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
    TopologyQueries topology,
    WebTokens webTokens,
    WebSettings web,
    CrlPublication crl,
    ILogger<AdminGrpcService> logger) : Admin.AdminBase
{
    private static readonly TimeSpan ListExitsTimeout = TopologyQueries.ListExitsTimeout;

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
        topology.Regions(context.CancellationToken);

    public override async Task<EnrollmentToken> CreateToken(CreateTokenRequest request, ServerCallContext context)
    {
        // The secret exists only here and in the reply; the token entity gets its SHA-256.
        var credential = TokenCredential.Generate();
        var create = EnrollmentMapping.ToCreate(request, credential);
        // A region no SuperNode ever registered in is a typo or a region still to come: the token is made (it is harmless,
        // and tokens may go out before a region's first SuperNode starts), and the reply says so for the admin to check.
        var knownRegions = directory.RegionNames(context.CancellationToken);
        var issued = await enrollment.CreateToken(create, context.CancellationToken);
        EnrollmentMetrics.Default.TokenCreated(issued.Role);
        bool regionUnknown;
        try
        {
            regionUnknown = !(await knownRegions).Contains(issued.Region);
        }
        catch (RpcException ex)
        {
            // The token is made: not knowing the regions only costs the warning.
            logger.LogWarning("Enrollment token {TokenId}: the region index did not answer, region {Region} not checked: {Detail}", issued.TokenId, issued.Region,
                ex.Status.Detail);
            regionUnknown = false;
        }
        logger.LogInformation("Enrollment token {TokenId} created by {Admin}: role {Role}, region {Region}{Unknown}, {Uses} uses, expires {ExpiresAt:u}",
            issued.TokenId, AdminName(context), issued.Role, issued.Region, regionUnknown ? " (a region the directory does not know)" : "", issued.Uses,
            issued.ExpiresAt);
        var token = EnrollmentMapping.ToProto(issued, credential);
        token.RegionUnknown = regionUnknown;
        return token;
    }

    public override async Task<RevokePeerResponse> RevokePeer(RevokePeerRequest request, ServerCallContext context)
    {
        if (!NodeId.IsValid(request.PeerId, out var problem))
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"peer_id '{request.PeerId}' {problem}"));
        if (!request.Force
            && await enrollment.EnrolledPeer(request.PeerId, context.CancellationToken) is null
            && await enrollment.RevocationOf(request.PeerId, context.CancellationToken) is null)
        {
            logger.LogInformation("{Admin} asked to revoke peer {PeerId}, which never enrolled; refused without force", AdminName(context), request.PeerId);
            throw new RpcException(new Status(StatusCode.FailedPrecondition,
                $"peer {request.PeerId} never enrolled (the directory knows no enrollment of it, in any region): check the id with `mydvpn admin peers`; "
                + "a revocation is for good, so to ban this id before it enrolls, revoke it with --force"));
        }
        var recorded = await enrollment.Revoke(request.PeerId, context.CancellationToken);
        var version = recorded.Revocation.Version;
        logger.LogWarning(
            recorded.AlreadyRevoked
                ? "Security event: {Admin} revoked peer {PeerId} again (revocation version {Version}); telling the SuperNodes again"
                : "Security event: {Admin} revoked peer {PeerId} (revocation version {Version})",
            AdminName(context), request.PeerId, version);
        return await TellSuperNodesAsync(request.PeerId, version, "revoked", "revoke",
            (client, options) => client.RevokeAsync(new RevokeRequest { PeerId = request.PeerId, Version = (ulong)version }, options), context);
    }

    public override async Task<RevokePeerResponse> UnrevokePeer(UnrevokePeerRequest request, ServerCallContext context)
    {
        if (!NodeId.IsValid(request.PeerId, out var problem))
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"peer_id '{request.PeerId}' {problem}"));
        var recorded = await enrollment.Unrevoke(request.PeerId, AdminName(context), context.CancellationToken);
        if (recorded.Version == 0)
        {
            throw new RpcException(new Status(StatusCode.FailedPrecondition,
                $"peer {request.PeerId} is not revoked: nothing to take back (`mydvpn admin revocations` lists the revoked peers)"));
        }
        // The revocations entity logged it too; this line carries the admin's name in the API's log.
        logger.LogWarning("Security event: {Admin} took back the revocation of peer {PeerId} (revocation version {Version}); it may connect again",
            AdminName(context), request.PeerId, recorded.Version);
        return await TellSuperNodesAsync(request.PeerId, recorded.Version, "unrevoked", "unrevoke",
            (client, options) => client.UnrevokeAsync(new UnrevokeRequest { PeerId = request.PeerId, Version = (ulong)recorded.Version }, options), context);
    }

    /// <summary>
    /// Tells every Up SuperNode of a change of the revocation list persisted as <paramref name="version"/>; those that do not
    /// answer catch up with their next report.
    /// </summary>
    /// <param name="done">What happened to the peer, for the error: "revoked".</param>
    private async Task<RevokePeerResponse> TellSuperNodesAsync<T>(string peerId, long version, string done, string what,
        Func<SuperNodePeers.SuperNodePeersClient, CallOptions, AsyncUnaryCall<T>> call, ServerCallContext context)
    {
        IReadOnlyList<Directory.SuperNodeInfo> targets;
        try
        {
            targets = await directory.UpSuperNodes(region: null, context.CancellationToken);
        }
        catch (RpcException ex)
        {
            throw new RpcException(new Status(ex.StatusCode,
                $"peer {peerId} is {done} (version {version}), but no SuperNode was told: {ex.Status.Detail}. "
                + "SuperNodes pick the change up with their next report."));
        }

        var told = await superNodes.CallEachAsync(targets, call, $"{what} {peerId}", context.CancellationToken);
        var response = new RevokePeerResponse { Version = (ulong)version };
        response.NotifiedSupernodes.AddRange(SortedIds(told.Replies.Select(r => r.SuperNode)));
        response.UnreachableSupernodes.AddRange(SortedIds(told.Unreachable));
        logger.LogInformation("Revocation change {Version} of peer {PeerId} ({What}) told to {Notified}; unreachable: {Unreachable}",
            version, peerId, what, JoinOrNone(response.NotifiedSupernodes), JoinOrNone(response.UnreachableSupernodes));
        return response;
    }

    public override async Task<TokenList> ListTokens(ListTokensRequest request, ServerCallContext context)
    {
        var list = new TokenList();
        list.Tokens.AddRange((await enrollment.Tokens(context.CancellationToken)).Select(EnrollmentMapping.ToProto));
        return list;
    }

    public override async Task<Protocol.Admin.TokenView> RevokeToken(RevokeTokenRequest request, ServerCallContext context)
    {
        if (!TokenCredential.IsTokenId(request.TokenId))
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument,
                $"token_id '{request.TokenId}' is not a token id ({TokenCredential.TokenIdLength} lowercase hex characters, the part of a token before the dot)"));
        }
        // Asked first, so that an id no token has creates nothing.
        if (!(await enrollment.Token(request.TokenId, context.CancellationToken)).Exists)
            throw new RpcException(new Status(StatusCode.NotFound, $"no enrollment token has id {request.TokenId}; `mydvpn admin token list` shows them"));
        var revoked = await enrollment.RevokeToken(request.TokenId, AdminName(context), context.CancellationToken);
        logger.LogWarning("Security event: {Admin} revoked enrollment token {TokenId} (role {Role}, region {Region}, {UsesLeft} uses left)",
            AdminName(context), revoked.TokenId, revoked.Role, revoked.Region, revoked.UsesLeft);
        return EnrollmentMapping.ToProto(revoked);
    }

    public override async Task<RevokedPeerList> ListRevocations(ListRevocationsRequest request, ServerCallContext context)
    {
        var revoked = await enrollment.RevokedPeers(context.CancellationToken);
        var list = new RevokedPeerList { Version = (ulong)revoked.Version };
        list.Peers.AddRange(revoked.Peers.Select(r => new RevokedPeer
        {
            PeerId = r.PeerId,
            Version = (ulong)r.Version,
            RevokedAt = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(r.At),
        }));
        return list;
    }

    /// <summary>
    /// The enrolled peers (of a region), each online when an Up SuperNode holds its stream now; a SuperNode that does not
    /// answer is named, and its peers show offline with when they were last seen.
    /// </summary>
    public override async Task<PeerList> ListPeers(ListPeersRequest request, ServerCallContext context)
    {
        var region = request.Region.Length == 0 ? null : ValidRegion(request.Region);
        var peers = enrollment.EnrolledPeers(context.CancellationToken);
        var revoked = enrollment.RevokedPeers(context.CancellationToken);
        SessionList sessions;
        try
        {
            sessions = await ListSessions(new ListSessionsRequest { Region = region ?? "" }, context);
        }
        catch (RpcException ex) when (ex.StatusCode == StatusCode.Unavailable)
        {
            // No SuperNode up (of the region): every peer is offline, and the list still says when each was last seen.
            sessions = new SessionList();
        }
        var online = sessions.Sessions.GroupBy(s => (s.Region, s.PeerId)).ToDictionary(g => g.Key, g => g.First());
        var revokedIds = (await revoked).Peers.Select(r => r.PeerId).ToHashSet(StringComparer.Ordinal);
        var now = DateTimeOffset.UtcNow;
        var list = new PeerList();
        list.Peers.AddRange((await peers)
            .Where(p => region is null || p.Region == region)
            .Select(p => EnrollmentMapping.ToProto(p, revokedIds.Contains(p.PeerId), online.GetValueOrDefault((p.Region, p.PeerId)), now)));
        list.UnreachableSupernodes.AddRange(sessions.UnreachableSupernodes);
        return list;
    }

    public override Task<SessionList> ListSessions(ListSessionsRequest request, ServerCallContext context) =>
        topology.Sessions(request.Region.Length == 0 ? null : request.Region, context.CancellationToken);

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

    public override Task<ExitPoolView> ListExits(ListExitsRequest request, ServerCallContext context) =>
        topology.ExitPool(request.Region, context.CancellationToken);

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

    public override Task<WebToken> CreateWebToken(CreateWebTokenRequest request, ServerCallContext context)
    {
        if (web.Address is not { } address)
        {
            throw new RpcException(new Status(StatusCode.FailedPrecondition,
                "this BaseNode serves no web page: start it with --web HOST:PORT (tokens are valid only on the BaseNode that made them)"));
        }
        var lifetime = request.TtlSeconds == 0 ? WebSettings.DefaultTokenLifetime : TimeSpan.FromSeconds(request.TtlSeconds);
        if (lifetime > WebSettings.MaxTokenLifetime)
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument,
                $"a web token lives at most {WebSettings.MaxTokenLifetime.TotalHours:0} h; {request.TtlSeconds} s (--ttl) is longer"));
        }
        var (token, expiresAt) = webTokens.Issue(AdminName(context), lifetime);
        logger.LogInformation("Web token made for {Admin}, valid until {ExpiresAt:u}", AdminName(context), expiresAt);
        return Task.FromResult(new WebToken
        {
            Token = token,
            ExpiresAt = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(expiresAt),
            WebAddress = address.ToString(),
        });
    }

    /// <summary>Who did it, for the audit log: the CN of the caller's admin certificate.</summary>
    public override Task<PublishCrlResponse> PublishCrl(PublishCrlRequest request, ServerCallContext context) =>
        crl.PublishAsync(request.Crl.ToByteArray(), AdminName(context), context.CancellationToken);

    public override Task<CrlView> GetCrl(GetCrlRequest request, ServerCallContext context) =>
        crl.ViewAsync(context.CancellationToken);

    private static string AdminName(ServerCallContext context) =>
        context.AuthContext.FindPropertiesByName("x509_common_name").FirstOrDefault()?.Value ?? context.Peer;
}
