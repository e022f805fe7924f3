using Grpc.Core;
using Microsoft.Extensions.Logging;
using MyDvpn.BaseNode.Certificates;
using MyDvpn.BaseNode.Enrollment;
using MyDvpn.Common;
using MyDvpn.Hosting;
using MyDvpn.Protocol.Control;
using MyDvpn.Protocol.Directory;
using Prometheus;

namespace MyDvpn.BaseNode;

/// <summary>
/// What SuperNodes call (mutual TLS, SuperNode certificates only): register, report, leave, look up, enroll new peers
/// with tokens and catch up on revocations. A SuperNode reports, leaves and redeems tokens only as itself, in its own
/// region: what its certificate names (<see cref="CallerIdentity"/>); anything else is <c>PERMISSION_DENIED</c>,
/// <c>CERTIFICATE_MISMATCH</c>. Token redemptions are limited per calling SuperNode and in all (<see cref="RedemptionLimits"/>):
/// over it, <c>RESOURCE_EXHAUSTED</c>, <c>RATE_LIMITED</c>.
/// </summary>
public sealed class DirectoryGrpcService(
    DirectoryQueries directory,
    EnrollmentQueries enrollment,
    CrlQueries crl,
    RedemptionLimits redemptionLimits,
    ILogger<DirectoryGrpcService> logger) : SuperNodeDirectory.SuperNodeDirectoryBase
{
    private static readonly Counter Reports = Metrics.CreateCounter(
        "mydvpn_directory_reports_total", "SuperNode reports received, by region.", "region");

    public static readonly TimeSpan ReportInterval = Directory.DirectorySettings.Default.ReportInterval;

    /// <summary>
    /// How long a report waits for the revocation version. A report is a liveness signal first: when the revocation
    /// list is slow it goes out with version 0, which no SuperNode is behind, and the next report catches up.
    /// </summary>
    public static readonly TimeSpan RevocationVersionTimeout = ReportInterval / 2;

    public override async Task<ReportAck> Report(SuperNodeReport request, ServerCallContext context)
    {
        var info = DirectoryMapping.ToInfo(request.Registration);
        CallerIdentity.RequireSuperNode(context, logger, info.SuperNodeId, info.Region);
        var load = DirectoryMapping.ToLoad(request.Load);
        // The revocation version is asked alongside the registration, so it adds no latency to the report.
        var revocationVersion = RevocationVersionOrZero(info, context.CancellationToken);
        var crlNumber = CrlNumberOrZero(info, context.CancellationToken);
        await Task.WhenAll(Register(), revocationVersion, crlNumber);
        Reports.WithLabels(info.Region).Inc();
        if (request.PeersSeen.Count > 0)
            enrollment.RecordSightings(EnrollmentMapping.ToSightings(info.Region, request.PeersSeen));
        return new ReportAck
        {
            ReportIntervalMs = (uint)ReportInterval.TotalMilliseconds,
            RevocationVersion = (ulong)await revocationVersion,
            CrlNumber = await crlNumber,
        };

        async Task Register()
        {
            await directory.Report(info, load, context.CancellationToken);
            await directory.IndexRegion(info.Region, context.CancellationToken);
        }
    }

    public override async Task<DeregisterAck> Deregister(DeregisterRequest request, ServerCallContext context)
    {
        if (!RegionName.IsValid(request.Region, out var problem))
            throw new RpcException(new Status(StatusCode.InvalidArgument, problem));
        CallerIdentity.RequireSuperNode(context, logger, request.SupernodeId, request.Region);
        await directory.Deregister(request.Region, request.SupernodeId, context.CancellationToken);
        logger.LogInformation("SuperNode {SuperNodeId} of region {Region} left the directory", request.SupernodeId, request.Region);
        return new DeregisterAck();
    }

    public override Task<RegionList> ListRegions(ListRegionsRequest request, ServerCallContext context) =>
        directory.ListRegions(context.CancellationToken);

    public override async Task<RedeemTokenResponse> RedeemToken(RedeemTokenRequest request, ServerCallContext context)
    {
        var redeem = EnrollmentMapping.ToRedeem(request);
        using var scope = logger.BeginScope(new LogScope(("peer_id", redeem.PeerId), ("region", redeem.Region), ("token_id", redeem.TokenId)));
        // A SuperNode enrolls the peers of its own region only.
        var superNode = CallerIdentity.RequireSuperNode(context, logger, claimedId: null, redeem.Region).Id;
        // Before a token entity is asked: a SuperNode that lets a flood through costs its own share only.
        if (redemptionLimits.Admit(superNode) is { } tooMany)
            throw Refuse(superNode, redeem, RefusalReason.RateLimited, tooMany);

        // A revoked peer stays out: a token left over must not bring it back under a new key.
        if (await enrollment.RevocationOf(redeem.PeerId, context.CancellationToken) is { } revocation)
        {
            throw Refuse(superNode, redeem, RefusalReason.Revoked,
                $"peer {redeem.PeerId} was revoked at {revocation.At:u} (revocation version {revocation.Version})");
        }

        switch (await enrollment.Redeem(redeem, context.CancellationToken))
        {
            case TokenRedeemAccepted accepted:
                EnrollmentMetrics.Default.Redeemed(EnrollmentMetrics.Ok);
                enrollment.RecordEnrollment(new RecordEnrollment(redeem.PeerId, redeem.Region, redeem.ClaimedRole, accepted.TokenId));
                logger.LogInformation(
                    accepted.AlreadyRedeemed
                        ? "Peer {PeerId} presented token {TokenId} again with its registered key via SuperNode {SuperNode}; {UsesLeft} uses left"
                        : "Peer {PeerId} enrolled with token {TokenId} via SuperNode {SuperNode}; {UsesLeft} uses left",
                    accepted.PeerId, accepted.TokenId, superNode, accepted.UsesLeft);
                return new RedeemTokenResponse { TokenId = accepted.TokenId, UsesLeft = (uint)accepted.UsesLeft };
            case TokenRedeemRefused refused:
                throw Refuse(superNode, redeem, EnrollmentMapping.ToProto(refused.Reason), refused.Detail);
            case var other:
                throw new InvalidOperationException($"enrollment token {redeem.TokenId} answered {other.GetType().Name}");
        }
    }

    public override async Task<RevocationList> GetRevocations(GetRevocationsRequest request, ServerCallContext context)
    {
        var after = (long)Math.Min(request.AfterVersion, long.MaxValue);
        return EnrollmentMapping.ToProto(await enrollment.RevocationsAfter(after, context.CancellationToken));
    }

    public override async Task<SignedCrl> GetCrl(GetCrlRequest request, ServerCallContext context)
    {
        var current = await crl.Current(context.CancellationToken);
        return new SignedCrl { Number = current.Number, Der = Google.Protobuf.ByteString.CopyFrom(current.Der) };
    }

    /// <summary>The directory's CRL number for a report; 0 (no SuperNode is behind it) when the list is slow, as for revocations.</summary>
    private async Task<ulong> CrlNumberOrZero(Directory.SuperNodeInfo info, CancellationToken cancellationToken)
    {
        try
        {
            return (await crl.Current(cancellationToken, RevocationVersionTimeout)).Number;
        }
        catch (RpcException ex) when (ex.StatusCode == StatusCode.Unavailable)
        {
            logger.LogWarning("Report of SuperNode {SuperNodeId} of region {Region} goes out without the CRL number: {Detail}",
                info.SuperNodeId, info.Region, ex.Status.Detail);
            return 0;
        }
    }

    private async Task<long> RevocationVersionOrZero(Directory.SuperNodeInfo info, CancellationToken cancellationToken)
    {
        try
        {
            return await enrollment.RevocationVersion(RevocationVersionTimeout, cancellationToken);
        }
        catch (RpcException ex) when (ex.StatusCode == StatusCode.Unavailable)
        {
            logger.LogWarning("Report of SuperNode {SuperNodeId} of region {Region} goes out without the revocation version: {Detail}",
                info.SuperNodeId, info.Region, ex.Status.Detail);
            return 0;
        }
    }

    private RpcException Refuse(string superNode, RedeemToken redeem, RefusalReason reason, string detail)
    {
        var name = RefusalReasons.WireName(reason);
        EnrollmentMetrics.Default.Redeemed(name);
        logger.LogWarning("Security event: enrollment of peer {PeerId} as {Role} in region {Region} with token {TokenId} refused via SuperNode {SuperNode}: {Reason} ({Detail})",
            redeem.PeerId, redeem.ClaimedRole, redeem.Region, redeem.TokenId, superNode, name, detail);
        return EnrollmentMapping.Refused(reason, detail);
    }
}
