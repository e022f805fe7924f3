using Akka.Actor;
using Akka.Hosting;

namespace MyDvpn.BaseNode.Enrollment;

/// <summary>Registry keys of the enrollment shard regions.</summary>
public sealed class EnrollmentTokenShard;

public sealed class RevocationsShard;

public sealed class TokenIndexShard;

public sealed class PeerRegistryShard;

/// <summary>
/// The gRPC edge's way into the token and revocation entities: Ask with a timeout and the call's cancellation,
/// <c>Unavailable</c> when the cluster does not answer (see <see cref="DirectoryQueries.AskAsync{T}"/>).
/// </summary>
public sealed class EnrollmentQueries(
    IRequiredActor<EnrollmentTokenShard> tokens,
    IRequiredActor<RevocationsShard> revocations,
    IRequiredActor<TokenIndexShard> tokenIndex,
    IRequiredActor<PeerRegistryShard> peerRegistry)
{
    private const string RevocationList = "revocation list";
    private const string TokenIndex = "token index";
    private const string PeerRegistry = "registry of enrolled peers";

    /// <summary>Indexes the token's id, then creates it: every token that exists is listed.</summary>
    public async Task<TokenIssued> CreateToken(CreateToken create, CancellationToken cancellationToken)
    {
        await DirectoryQueries.AskAsync<TokenIdIndexed>(tokenIndex.ActorRef, new IndexToken(create.TokenId), TokenIndex, cancellationToken);
        return await DirectoryQueries.AskAsync<TokenIssued>(tokens.ActorRef, create, $"enrollment token {create.TokenId}", cancellationToken);
    }

    /// <summary>Every token that exists, in the order they were created, each as its entity holds it now.</summary>
    public async Task<IReadOnlyList<TokenView>> Tokens(CancellationToken cancellationToken)
    {
        var ids = await DirectoryQueries.AskAsync<TokenIds>(tokenIndex.ActorRef, GetTokenIds.Instance, TokenIndex, cancellationToken);
        var views = await Task.WhenAll(ids.Ids.Select(id => Token(id, cancellationToken)));
        return [.. views.Where(v => v.Exists)];
    }

    public Task<TokenView> Token(string tokenId, CancellationToken cancellationToken) =>
        DirectoryQueries.AskAsync<TokenView>(tokens.ActorRef, new GetToken(tokenId), $"enrollment token {tokenId}", cancellationToken);

    public Task<TokenView> RevokeToken(string tokenId, string by, CancellationToken cancellationToken) =>
        DirectoryQueries.AskAsync<TokenView>(tokens.ActorRef, new RevokeToken(tokenId, by), $"enrollment token {tokenId}", cancellationToken);

    /// <returns>A <see cref="TokenRedeemAccepted"/> or a <see cref="TokenRedeemRefused"/>.</returns>
    public Task<ITokenRedeemReply> Redeem(RedeemToken redeem, CancellationToken cancellationToken) =>
        DirectoryQueries.AskAsync<ITokenRedeemReply>(tokens.ActorRef, redeem, $"enrollment token {redeem.TokenId}", cancellationToken);

    public Task<PeerRevocationRecorded> Revoke(string peerId, CancellationToken cancellationToken) =>
        DirectoryQueries.AskAsync<PeerRevocationRecorded>(revocations.ActorRef, new RevokePeer(peerId), RevocationList, cancellationToken);

    public Task<PeerUnrevocationRecorded> Unrevoke(string peerId, string by, CancellationToken cancellationToken) =>
        DirectoryQueries.AskAsync<PeerUnrevocationRecorded>(revocations.ActorRef, new UnrevokePeer(peerId, by), RevocationList, cancellationToken);

    public Task<RevokedPeers> RevokedPeers(CancellationToken cancellationToken) =>
        DirectoryQueries.AskAsync<RevokedPeers>(revocations.ActorRef, GetRevokedPeers.Instance, RevocationList, cancellationToken);

    /// <summary>Records an enrollment without waiting for it (<see cref="PeerRegistryEntity"/>).</summary>
    public void RecordEnrollment(RecordEnrollment record) => peerRegistry.ActorRef.Tell(record);

    /// <summary>Records what a SuperNode saw without waiting for it (<see cref="PeerRegistryEntity"/>).</summary>
    public void RecordSightings(RecordSightings record) => peerRegistry.ActorRef.Tell(record);

    public async Task<IReadOnlyList<EnrolledPeer>> EnrolledPeers(CancellationToken cancellationToken) =>
        (await DirectoryQueries.AskAsync<EnrolledPeers>(peerRegistry.ActorRef, GetEnrolledPeers.Instance, PeerRegistry, cancellationToken)).Peers;

    public async Task<EnrolledPeer?> EnrolledPeer(string peerId, CancellationToken cancellationToken) =>
        (await DirectoryQueries.AskAsync<EnrolledPeerOf>(peerRegistry.ActorRef, new GetEnrolledPeer(peerId), PeerRegistry, cancellationToken)).Peer;

    public Task<PeerCounts> PeerCounts(TimeSpan timeout, CancellationToken cancellationToken) =>
        DirectoryQueries.AskAsync<PeerCounts>(peerRegistry.ActorRef, GetPeerCounts.Instance, PeerRegistry, cancellationToken, timeout);

    public Task<RevocationsAfter> RevocationsAfter(long version, CancellationToken cancellationToken) =>
        DirectoryQueries.AskAsync<RevocationsAfter>(revocations.ActorRef, new GetRevocationsAfter(version), RevocationList, cancellationToken);

    public async Task<RevocationEntry?> RevocationOf(string peerId, CancellationToken cancellationToken) =>
        (await DirectoryQueries.AskAsync<RevocationOf>(revocations.ActorRef, new GetRevocation(peerId), RevocationList, cancellationToken))
        .Revocation;

    public async Task<long> RevocationVersion(TimeSpan timeout, CancellationToken cancellationToken) =>
        (await DirectoryQueries.AskAsync<RevocationVersion>(
            revocations.ActorRef, GetRevocationVersion.Instance, RevocationList, cancellationToken, timeout)).Version;
}
