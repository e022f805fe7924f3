using MyDvpn.Protocol.Control;

namespace MyDvpn.SuperNode.Sessions;

/// <summary>
/// Redeems a peer's enrollment token with the directory (the BaseNodes). Called at most once per token
/// presentation, and only after the peer has proved it holds <c>publicKey</c>. Expected refusals and an unreachable
/// directory are results, not exceptions.
/// </summary>
public interface IEnrollmentClient
{
    Task<EnrollmentResult> RedeemAsync(
        string token,
        string peerId,
        PeerRole role,
        string region,
        byte[] publicKey,
        CancellationToken ct);
}

/// <summary>The directory's answer to a token redemption.</summary>
public abstract record EnrollmentResult
{
    private EnrollmentResult()
    {
    }

    /// <summary>The token was valid for this peer, role and region, and one of its uses is spent.</summary>
    public sealed record Redeemed(string TokenId) : EnrollmentResult;

    /// <summary>The token is unknown, used up, expired or not for this role or region.</summary>
    public sealed record Refused(RefusalReason Reason, string Detail) : EnrollmentResult;

    /// <summary>The directory could not be asked; the peer may retry later.</summary>
    public sealed record Unavailable(string Detail) : EnrollmentResult;
}
