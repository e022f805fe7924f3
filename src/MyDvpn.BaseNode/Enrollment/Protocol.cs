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

    /// <summary>An operator revoked the token (on the wire BAD_TOKEN: to the peer, a revoked token is as good as none).</summary>
    TokenRevoked,
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

/// <summary>
/// One change of the revocation list and the version it got: a peer revoked, or (<paramref name="Unrevoked"/>) its
/// revocation taken back.
/// </summary>
public sealed record RevocationEntry(string PeerId, long Version, DateTimeOffset At, bool Unrevoked = false);

/// <summary>
/// Revokes a peer for good. Reply: <see cref="PeerRevocationRecorded"/>; a peer revoked before keeps its version
/// (idempotent). <c>Status.Failure</c> with an <see cref="ArgumentException"/> for an invalid peer id.
/// </summary>
public sealed record RevokePeer(string PeerId) : IRevocationsCommand;

/// <param name="AlreadyRevoked">The peer was revoked before; nothing was persisted now.</param>
public sealed record PeerRevocationRecorded(RevocationEntry Revocation, bool AlreadyRevoked);

/// <summary>Reply: <see cref="RevocationsAfter"/>.</summary>
public sealed record GetRevocationsAfter(long Version) : IRevocationsCommand;

/// <param name="Revocations">The changes with a version above the one asked for, in version order.</param>
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

/// <summary>
/// Revokes the token: it can no longer be redeemed. Reply: <see cref="TokenView"/> (idempotent; a token revoked before keeps
/// its first revocation); <see cref="TokenView.Exists"/> false for an id that was never created, which persists nothing.
/// </summary>
public sealed record RevokeToken(string TokenId, string By) : IWithTokenId;

/// <summary>Reply: <see cref="TokenView"/>.</summary>
public sealed record GetToken(string TokenId) : IWithTokenId;

/// <summary>What <c>admin token list</c> shows of a token: never its secret, nor the hash of it.</summary>
/// <param name="Exists">False: no token of this id was ever created (the other fields are empty).</param>
/// <param name="Expired">Whether it had expired when the entity answered, by its clock.</param>
public sealed record TokenView(
    string TokenId,
    bool Exists,
    EnrollmentRole Role,
    string Region,
    int Uses,
    int UsesLeft,
    DateTimeOffset CreatedAt,
    DateTimeOffset ExpiresAt,
    bool Expired,
    TokenRevoked? Revoked,
    ImmutableList<string> EnrolledPeers);

/// <summary>
/// Takes a peer's revocation back. Reply: <see cref="PeerUnrevocationRecorded"/>; <see cref="PeerUnrevocationRecorded.Version"/>
/// 0 when the peer is not revoked (nothing persisted). <c>Status.Failure</c> with an <see cref="ArgumentException"/> for an
/// invalid peer id.
/// </summary>
public sealed record UnrevokePeer(string PeerId, string By) : IRevocationsCommand;

/// <param name="Version">The version the unrevocation got; 0: the peer was not revoked and nothing changed.</param>
public sealed record PeerUnrevocationRecorded(string PeerId, long Version);

/// <summary>Reply: <see cref="RevokedPeers"/>.</summary>
public sealed record GetRevokedPeers : IRevocationsCommand
{
    public static readonly GetRevokedPeers Instance = new();
}

/// <param name="Peers">The peers revoked now, in the order of their revocations' versions.</param>
public sealed record RevokedPeers(ImmutableList<RevocationEntry> Peers, long Version);

/// <summary>A message for the index of tokens (one entity, <see cref="TokenIndexEntity.EntityId"/>).</summary>
public interface ITokenIndexCommand
{
}

/// <summary>Adds a token id to the index before the token is created. Reply: <see cref="TokenIdIndexed"/> once persisted.</summary>
public sealed record IndexToken(string TokenId) : ITokenIndexCommand;

public sealed record TokenIdIndexed(string TokenId);

/// <summary>Reply: <see cref="TokenIds"/>.</summary>
public sealed record GetTokenIds : ITokenIndexCommand
{
    public static readonly GetTokenIds Instance = new();
}

/// <param name="Ids">In the order they were created.</param>
public sealed record TokenIds(ImmutableList<string> Ids);

/// <summary>A message for the registry of enrolled peers (one entity, <see cref="PeerRegistryEntity.EntityId"/>).</summary>
public interface IPeerRegistryCommand
{
}

/// <summary>A peer enrolled (its token was redeemed). No reply: the enrollment does not wait for the registry.</summary>
public sealed record RecordEnrollment(string PeerId, string Region, EnrollmentRole Role, string TokenId) : IPeerRegistryCommand;

/// <summary>
/// A SuperNode of <paramref name="Region"/> reports the peers it saw connect and whose streams ended. No reply.
/// </summary>
public sealed record RecordSightings(string Region, ImmutableList<PeerSighting> Sightings) : IPeerRegistryCommand;

/// <summary>A peer seen by a SuperNode: its stream authenticated (<paramref name="Connected"/>) or ended at <paramref name="At"/>.</summary>
public sealed record PeerSighting(string PeerId, string Region, EnrollmentRole Role, DateTimeOffset At, bool Connected);

/// <summary>Reply: <see cref="EnrolledPeers"/>.</summary>
public sealed record GetEnrolledPeers : IPeerRegistryCommand
{
    public static readonly GetEnrolledPeers Instance = new();
}

/// <param name="Peers">By peer id.</param>
public sealed record EnrolledPeers(ImmutableList<EnrolledPeer> Peers);

/// <summary>Reply: <see cref="EnrolledPeerOf"/>.</summary>
public sealed record GetEnrolledPeer(string PeerId) : IPeerRegistryCommand;

/// <summary>Reply: <see cref="PeerCounts"/>.</summary>
public sealed record GetPeerCounts : IPeerRegistryCommand
{
    public static readonly GetPeerCounts Instance = new();
}

/// <summary>How many enrolled peers each region has of a role, connected (as a SuperNode last said) or not; no zero counts.</summary>
public sealed record PeerCounts(ImmutableList<PeerCount> Counts)
{
    public bool Equals(PeerCounts? other) => other is not null && Counts.SequenceEqual(other.Counts);

    public override int GetHashCode() => Counts.Count;
}

public sealed record PeerCount(string Region, EnrollmentRole Role, bool Connected, int Count);

/// <param name="Peer">Null when the directory knows no enrollment of the peer.</param>
public sealed record EnrolledPeerOf(string PeerId, EnrolledPeer? Peer);
