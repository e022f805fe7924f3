using Akka.Hosting;

namespace MyDvpn.BaseNode.Enrollment;

/// <summary>Registry keys of the enrollment shard regions.</summary>
public sealed class EnrollmentTokenShard;

public sealed class RevocationsShard;

/// <summary>
/// The gRPC edge's way into the token and revocation entities: Ask with a timeout and the call's cancellation,
/// <c>Unavailable</c> when the cluster does not answer (see <see cref="DirectoryQueries.AskAsync{T}"/>).
/// </summary>
public sealed class EnrollmentQueries(IRequiredActor<EnrollmentTokenShard> tokens, IRequiredActor<RevocationsShard> revocations)
{
    private const string RevocationList = "revocation list";

    public Task<TokenIssued> CreateToken(CreateToken create, CancellationToken cancellationToken) =>
        DirectoryQueries.AskAsync<TokenIssued>(tokens.ActorRef, create, $"enrollment token {create.TokenId}", cancellationToken);

    /// <returns>A <see cref="TokenRedeemAccepted"/> or a <see cref="TokenRedeemRefused"/>.</returns>
    public Task<ITokenRedeemReply> Redeem(RedeemToken redeem, CancellationToken cancellationToken) =>
        DirectoryQueries.AskAsync<ITokenRedeemReply>(tokens.ActorRef, redeem, $"enrollment token {redeem.TokenId}", cancellationToken);

    public Task<PeerRevocationRecorded> Revoke(string peerId, CancellationToken cancellationToken) =>
        DirectoryQueries.AskAsync<PeerRevocationRecorded>(revocations.ActorRef, new RevokePeer(peerId), RevocationList, cancellationToken);

    public Task<RevocationsAfter> RevocationsAfter(long version, CancellationToken cancellationToken) =>
        DirectoryQueries.AskAsync<RevocationsAfter>(revocations.ActorRef, new GetRevocationsAfter(version), RevocationList, cancellationToken);

    public async Task<RevocationEntry?> RevocationOf(string peerId, CancellationToken cancellationToken) =>
        (await DirectoryQueries.AskAsync<RevocationOf>(revocations.ActorRef, new GetRevocation(peerId), RevocationList, cancellationToken))
        .Revocation;

    public async Task<long> RevocationVersion(TimeSpan timeout, CancellationToken cancellationToken) =>
        (await DirectoryQueries.AskAsync<RevocationVersion>(
            revocations.ActorRef, GetRevocationVersion.Instance, RevocationList, cancellationToken, timeout)).Version;
}
