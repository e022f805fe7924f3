namespace MyDvpn.BaseNode.Enrollment;

/// <summary>An event in an enrollment token's journal (<see cref="EnrollmentTokenEntity"/>).</summary>
public interface IEnrollmentTokenEvent
{
}

/// <summary>A token was created; only the SHA-256 of its secret is kept.</summary>
public sealed record TokenCreated(
    string TokenId,
    string SecretSha256,
    EnrollmentRole Role,
    string Region,
    int Uses,
    DateTimeOffset ExpiresAt,
    DateTimeOffset At) : IEnrollmentTokenEvent;

/// <summary>A peer spent one use of the token and registered its public key (base64) with it.</summary>
public sealed record TokenRedeemed(string PeerId, string PublicKey, DateTimeOffset At) : IEnrollmentTokenEvent;

/// <summary>A peer was revoked (<see cref="RevocationsEntity"/>); versions count up from 1 without gaps.</summary>
public sealed record PeerRevoked(string PeerId, long Version, DateTimeOffset At);
