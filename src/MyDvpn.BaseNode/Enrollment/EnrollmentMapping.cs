using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using MyDvpn.Common;
using MyDvpn.Protocol.Admin;
using MyDvpn.Protocol.Control;
using Proto = MyDvpn.Protocol.Directory;

namespace MyDvpn.BaseNode.Enrollment;

/// <summary>Between the wire (proto) and the enrollment entities' records; validates what comes in.</summary>
public static class EnrollmentMapping
{
    /// <summary>Validates the request and turns it into a command for the token entity; InvalidArgument if malformed.</summary>
    public static RedeemToken ToRedeem(Proto.RedeemTokenRequest request)
    {
        if (!TokenCredential.TryParse(request.Token, out var credential, out var tokenProblem))
            throw Invalid($"token: {tokenProblem}");
        if (!NodeId.IsValid(request.PeerId, out var idProblem))
            throw Invalid($"peer_id '{request.PeerId}' {idProblem}");
        if (!RegionName.IsValid(request.Region, out var regionProblem))
            throw Invalid(regionProblem);
        if (ToRole(request.Role) is not { } role)
            throw Invalid($"role {request.Role} is not a peer role (1 client, 2 exit, 3 both)");
        if (request.PublicKey.Length != TokenLimits.PublicKeyLength)
            throw Invalid($"public_key must be {TokenLimits.PublicKeyLength} bytes (Ed25519), was {request.PublicKey.Length}");
        return new RedeemToken(credential.TokenId, credential.SecretSha256, request.PeerId, role, request.Region,
            request.PublicKey.ToBase64());
    }

    /// <summary>
    /// Validates the request and turns it into a command creating <paramref name="credential"/>'s token, with the
    /// defaults for what the request leaves 0; InvalidArgument if malformed.
    /// </summary>
    public static CreateToken ToCreate(CreateTokenRequest request, TokenCredential credential)
    {
        var role = ToRole(request.Role);
        if (role == EnrollmentRole.SuperNode)
            throw Invalid("role: a token never enrolls a SuperNode; SuperNodes join with an operator-issued node certificate");
        if (role is null)
            throw Invalid($"role {request.Role} is not a peer role (1 client, 2 exit, 3 both)");
        if (!RegionName.IsValid(request.Region, out var regionProblem))
            throw Invalid(regionProblem);
        var uses = request.Uses == 0 ? TokenLimits.DefaultUses : request.Uses;
        if (uses > TokenLimits.MaxUses)
            throw Invalid($"uses must be 1-{TokenLimits.MaxUses}, was {uses}; enroll more peers with more tokens");
        var ttl = request.TtlSeconds == 0 ? TokenLimits.DefaultTtl : TimeSpan.FromSeconds(request.TtlSeconds);
        return new CreateToken(credential.TokenId, credential.SecretSha256, role.Value, request.Region, (int)uses, ttl);
    }

    public static EnrollmentToken ToProto(TokenIssued issued, TokenCredential credential) => new()
    {
        Token = credential.Text,
        TokenId = issued.TokenId,
        ExpiresAt = Timestamp.FromDateTimeOffset(issued.ExpiresAt),
        Uses = (uint)issued.Uses,
    };

    /// <summary>A role number of <c>mydvpn.control.v1.PeerRole</c>, or null for unspecified and unknown numbers.</summary>
    public static EnrollmentRole? ToRole(int number) =>
        System.Enum.IsDefined((EnrollmentRole)number) ? (EnrollmentRole)number : null;

    public static RefusalReason ToProto(TokenRefusal refusal) => refusal switch
    {
        TokenRefusal.BadToken or TokenRefusal.TokenRevoked => RefusalReason.BadToken,
        TokenRefusal.TokenExpired => RefusalReason.TokenExpired,
        TokenRefusal.TokenUsedUp => RefusalReason.TokenUsedUp,
        TokenRefusal.RoleNotAllowed => RefusalReason.RoleNotAllowed,
        TokenRefusal.WrongRegion => RefusalReason.WrongRegion,
        _ => throw new ArgumentOutOfRangeException(nameof(refusal), refusal, "unknown refusal"),
    };

    /// <summary>
    /// The reason's status from the refusal catalogue (PermissionDenied for every token refusal and a revocation), the
    /// reason in words and its name in the <c>mydvpn-reason</c> trailer.
    /// </summary>
    public static RpcException Refused(RefusalReason reason, string detail) => RefusalReasons.ToRpcException(reason, detail);

    public static Proto.RevocationList ToProto(RevocationsAfter after)
    {
        var list = new Proto.RevocationList { Version = (ulong)after.Version };
        list.Revocations.AddRange(after.Revocations.Select(r => new Proto.Revocation
        {
            Version = (ulong)r.Version,
            PeerId = r.PeerId,
            RevokedAt = Timestamp.FromDateTimeOffset(r.At),
            Unrevoked = r.Unrevoked,
        }));
        return list;
    }

    /// <summary>A token as <c>admin token list</c> shows it.</summary>
    public static Protocol.Admin.TokenView ToProto(TokenView token)
    {
        var view = new Protocol.Admin.TokenView
        {
            TokenId = token.TokenId,
            Role = (PeerRole)(int)token.Role,
            Region = token.Region,
            Uses = (uint)token.Uses,
            UsesLeft = (uint)token.UsesLeft,
            CreatedAt = Timestamp.FromDateTimeOffset(token.CreatedAt),
            ExpiresAt = Timestamp.FromDateTimeOffset(token.ExpiresAt),
            State = token switch
            {
                { Revoked: not null } => TokenState.Revoked,
                { UsesLeft: 0 } => TokenState.UsedUp,
                { Expired: true } => TokenState.Expired,
                _ => TokenState.Active,
            },
            EnrolledPeers = { token.EnrolledPeers },
        };
        if (token.Revoked is { } revoked)
        {
            view.RevokedAt = Timestamp.FromDateTimeOffset(revoked.At);
            view.RevokedBy = revoked.By;
        }
        return view;
    }

    /// <summary>What a SuperNode of <paramref name="region"/> reports it saw; a sighting without a time is left out.</summary>
    public static RecordSightings ToSightings(string region, IEnumerable<Proto.PeerSighting> sightings) =>
        new(region, [.. sightings.Where(s => s.At is not null).Select(s => new PeerSighting(
            s.PeerId, region, ToRole(s.Role) ?? default, s.At.ToDateTimeOffset(), s.Connected))]);

    /// <summary>An enrolled peer as <c>admin peers</c> shows it; <paramref name="session"/> its stream, when one is open.</summary>
    public static Protocol.Admin.EnrolledPeer ToProto(EnrolledPeer peer, bool revoked, Protocol.SuperNode.Session? session, DateTimeOffset now)
    {
        var view = new Protocol.Admin.EnrolledPeer
        {
            PeerId = peer.PeerId,
            Region = peer.Region,
            Role = (PeerRole)(int)peer.Role,
            TokenId = peer.TokenId ?? "",
            Online = session is not null,
            SupernodeId = session?.SupernodeId ?? "",
            Revoked = revoked,
        };
        if (peer.EnrolledAt is { } enrolled)
            view.EnrolledAt = Timestamp.FromDateTimeOffset(enrolled);
        // Online: seen now. A SuperNode reports a stream when it opens and ends, not while it lasts.
        if ((session is not null ? now : peer.LastSeen) is { } seen)
            view.LastSeen = Timestamp.FromDateTimeOffset(seen);
        return view;
    }

    private static RpcException Invalid(string reason) => new(new Status(StatusCode.InvalidArgument, reason));
}
