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

/// <summary>An operator revoked the token: it enrolls nobody from now on (the peers it enrolled stay enrolled).</summary>
/// <param name="By">The admin who did it (the CN of their certificate).</param>
public sealed record TokenRevoked(DateTimeOffset At, string By) : IEnrollmentTokenEvent;

/// <summary>
/// An operator took a peer's revocation back (<see cref="RevocationsEntity"/>): it may connect again. It takes the next
/// version, as a revocation does, so SuperNodes catch up on it in order.
/// </summary>
/// <param name="By">The admin who did it (the CN of their certificate).</param>
public sealed record PeerUnrevoked(string PeerId, long Version, DateTimeOffset At, string By);

/// <summary>A token was created (<see cref="TokenIndexEntity"/>): the index of the tokens <c>admin token list</c> shows.</summary>
public sealed record TokenIndexed(string TokenId, DateTimeOffset At);

/// <summary>A peer enrolled with a token in a region (<see cref="PeerRegistryEntity"/>).</summary>
public sealed record PeerEnrollmentRecorded(string PeerId, string Region, EnrollmentRole Role, string TokenId, DateTimeOffset At);

/// <summary>SuperNodes of a region saw these peers connect or their streams end (<see cref="PeerRegistryEntity"/>).</summary>
public sealed record PeersSighted(System.Collections.Immutable.ImmutableList<PeerSighting> Sightings);
