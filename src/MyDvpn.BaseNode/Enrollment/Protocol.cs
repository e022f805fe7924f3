using System.Collections.Immutable;

namespace MyDvpn.BaseNode.Enrollment;

/// <summary>
/// A peer role as an enrollment token grants it and a peer claims it. The numbers are those of
/// <c>mydvpn.control.v1.PeerRole</c>; <see cref="SuperNode"/> is never granted and a claim of it is always refused.
/// </summary>
public enum EnrollmentRole
{
    Client = 1,
    Exit = 2,
    Both = 3,
    SuperNode = 4,
}

/// <summary>Why a redemption was refused: each is the <c>mydvpn.control.v1.RefusalReason</c> of the same name.</summary>
public enum TokenRefusal
{
    /// <summary>Unknown token id or wrong secret (the two are not told apart).</summary>
    BadToken,
    TokenExpired,
    TokenUsedUp,
    RoleNotAllowed,
    WrongRegion,
}

/// <summary>A message addressed to one enrollment token's entity (the sharding key).</summary>
public interface IWithTokenId
{
    string TokenId { get; }
}

/// <summary>
/// Creates a token that expires <paramref name="Ttl"/> after the entity receives this. Reply: <see cref="TokenIssued"/>,
/// or <c>Status.Failure</c> with an <see cref="ArgumentException"/> when a field is invalid or the id is taken.
/// </summary>
/// <param name="SecretSha256">Lowercase hex SHA-256 of the secret (<see cref="TokenCredential.SecretSha256"/>).</param>
public sealed record CreateToken(
    string TokenId,
    string SecretSha256,
    EnrollmentRole Role,
    string Region,
    int Uses,
    TimeSpan Ttl) : IWithTokenId;

public sealed record TokenIssued(string TokenId, EnrollmentRole Role, string Region, int Uses, DateTimeOffset ExpiresAt);

/// <summary>
/// A new peer spends one use of the token. Reply: an <see cref="ITokenRedeemReply"/>. Idempotent for the same peer id
/// and public key.
/// </summary>
/// <param name="SecretSha256">Lowercase hex SHA-256 of the secret the peer presented.</param>
/// <param name="PublicKey">The peer's Ed25519 public key (32 bytes), base64.</param>
public sealed record RedeemToken(
    string TokenId,
    string SecretSha256,
    string PeerId,
    EnrollmentRole ClaimedRole,
    string Region,
    string PublicKey) : IWithTokenId;

/// <summary>What a <see cref="RedeemToken"/> comes to.</summary>
public interface ITokenRedeemReply
{
    string TokenId { get; }

    string PeerId { get; }
}

/// <param name="AlreadyRedeemed">The peer had redeemed this token with this key before; no use was spent now.</param>
public sealed record TokenRedeemAccepted(string TokenId, string PeerId, int UsesLeft, bool AlreadyRedeemed)
    : ITokenRedeemReply;

/// <param name="Detail">The reason in words, for the operator; never contains the secret.</param>
public sealed record TokenRedeemRefused(string TokenId, string PeerId, TokenRefusal Reason, string Detail)
    : ITokenRedeemReply;

/// <summary>A message for the revocation list (one entity, <see cref="RevocationsEntity.EntityId"/>).</summary>
public interface IRevocationsCommand
{
}

/// <summary>One revoked peer and the version its revocation got.</summary>
public sealed record RevocationEntry(string PeerId, long Version, DateTimeOffset At);

/// <summary>
/// Revokes a peer for good. Reply: <see cref="PeerRevocationRecorded"/>; a peer revoked before keeps its version
/// (idempotent). <c>Status.Failure</c> with an <see cref="ArgumentException"/> for an invalid peer id.
/// </summary>
public sealed record RevokePeer(string PeerId) : IRevocationsCommand;

/// <param name="AlreadyRevoked">The peer was revoked before; nothing was persisted now.</param>
public sealed record PeerRevocationRecorded(RevocationEntry Revocation, bool AlreadyRevoked);

/// <summary>Reply: <see cref="RevocationsAfter"/>.</summary>
public sealed record GetRevocationsAfter(long Version) : IRevocationsCommand;

/// <param name="Revocations">Those with a version above the one asked for, in version order.</param>
/// <param name="Version">The highest version the list holds (0: none).</param>
public sealed record RevocationsAfter(ImmutableList<RevocationEntry> Revocations, long Version);

/// <summary>Reply: <see cref="RevocationVersion"/>. Cheap: what every SuperNode report asks.</summary>
public sealed record GetRevocationVersion : IRevocationsCommand
{
    public static readonly GetRevocationVersion Instance = new();
}

public sealed record RevocationVersion(long Version);

/// <summary>Reply: <see cref="RevocationOf"/>.</summary>
public sealed record GetRevocation(string PeerId) : IRevocationsCommand;

/// <param name="Revocation">Null when the peer is not revoked.</param>
public sealed record RevocationOf(string PeerId, RevocationEntry? Revocation);
