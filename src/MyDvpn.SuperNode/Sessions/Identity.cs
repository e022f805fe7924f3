using Microsoft.Extensions.Logging;
using MyDvpn.Protocol.Control;
using MyDvpn.Security;

namespace MyDvpn.SuperNode.Sessions;

/// <summary>
/// Who the peer is: how it enrolled, whether it is revoked, its latest session. Persisted (<see cref="PeerEnrolled"/>,
/// <see cref="SessionStarted"/>, <see cref="PeerRevoked"/>, <see cref="PeerUnrevoked"/>) but for <see cref="Redeeming"/>.
/// </summary>
/// <param name="Enrollment">How the peer enrolled (its role and public key); null while it is unknown.</param>
/// <param name="SessionId">The latest authenticated session: the only one a stream may attach with.</param>
public sealed record PeerIdentity(string PeerId, string Region, PeerEnrolled? Enrollment, bool Revoked, string? SessionId, PeerRole SessionRole)
{
    public const int PublicKeyLength = 32;

    /// <summary>A token is being redeemed at the directory; further authentications wait for it.</summary>
    public bool Redeeming { get; init; }

    public bool Enrolled => Enrollment is not null;

    public PeerIdentity Apply(IPeerSessionEvent evt) => evt switch
    {
        PeerEnrolled e => this with { Enrollment = e },
        SessionStarted e => this with { SessionId = e.SessionId, SessionRole = e.Role },
        PeerRevoked => this with { Revoked = true },
        PeerUnrevoked => this with { Revoked = false },
        _ => this,
    };

    /// <summary>What an enrolled role lets a peer claim: BOTH allows client, exit or both; the others only themselves.</summary>
    public static bool RoleAllows(PeerRole enrolled, PeerRole claimed) =>
        enrolled == PeerRole.Both
            ? claimed is PeerRole.Client or PeerRole.Exit or PeerRole.Both
            : claimed == enrolled && claimed is PeerRole.Client or PeerRole.Exit;

    /// <summary>
    /// Whether the peer may authenticate, in this order: a role a peer may take (client, exit, both), this
    /// region, not revoked; then an enrolled peer's signature is checked with its enrolled key and its claimed role
    /// against the enrolled one (a token it presents is ignored), while an unknown peer needs a token and a 32-byte
    /// public key whose signature verifies — before the token is redeemed, so a forger never spends one.
    /// </summary>
    public AuthDecision DecideAuthentication(AuthenticatePeer request)
    {
        if (request.PeerId != PeerId)
        {
            return new AuthDecision.Refuse(RefusalReason.MalformedMessage,
                $"the request for peer '{request.PeerId}' reached the session of peer '{PeerId}'");
        }

        if (request.Role is not (PeerRole.Client or PeerRole.Exit or PeerRole.Both))
            return new AuthDecision.Refuse(RefusalReason.RoleNotAllowed, $"a peer may act as client, exit or both, not as {request.Role}");

        if (request.Region != Region)
        {
            return new AuthDecision.Refuse(RefusalReason.WrongRegion,
                $"the peer claims region '{request.Region}' but this SuperNode serves region '{Region}'");
        }

        if (Revoked)
            return new AuthDecision.Refuse(RefusalReason.Revoked, "the peer is revoked");

        if (Enrollment is { } enrolled)
        {
            if (!SignatureVerifies(enrolled.PublicKey, request))
                return new AuthDecision.Refuse(RefusalReason.BadSignature, "the signature does not verify with the peer's enrolled public key");

            return RoleAllows(enrolled.Role, request.Role)
                ? new AuthDecision.StartSession(request.Role)
                : new AuthDecision.Refuse(RefusalReason.RoleNotAllowed, $"the peer is enrolled as {enrolled.Role} and may not act as {request.Role}");
        }

        if (string.IsNullOrEmpty(request.EnrollmentToken))
            return new AuthDecision.Refuse(RefusalReason.UnknownPeer, "the peer is not enrolled and presented no enrollment token");

        if (request.PublicKey is not { Length: PublicKeyLength } publicKey)
            return new AuthDecision.Refuse(RefusalReason.MalformedMessage, $"an enrolling peer must present its {PublicKeyLength}-byte Ed25519 public key");

        if (!SignatureVerifies(publicKey, request))
            return new AuthDecision.Refuse(RefusalReason.BadSignature, "the signature does not verify with the presented public key");

        return new AuthDecision.Enroll(request.Role, (byte[])publicKey.Clone(), request.EnrollmentToken);
    }

    private static bool SignatureVerifies(byte[] publicKey, AuthenticatePeer request) =>
        IdentityKey.Verify(publicKey, request.Transcript ?? [], request.Signature ?? []);
}

/// <summary>Authentication, enrollment and revocation (ARCHITECTURE §3): decisions on the whole session state.</summary>
public static class Authentication
{
    /// <summary>
    /// A peer answered its challenge. An enrolled peer that proved its identity starts a session (persisted, with a new id);
    /// an unknown one has its token redeemed first (<see cref="SessionEffect.RedeemToken"/>). Refusals are logged as
    /// security events. The caller stashes authentications while <see cref="PeerIdentity.Redeeming"/>.
    /// </summary>
    public static Decision Authenticate(Decision d, AuthenticatePeer request, string newSessionId, DateTimeOffset now) =>
        d.State.Identity.DecideAuthentication(request) switch
        {
            AuthDecision.Refuse refuse => Refuse(d, refuse.Reason, refuse.Detail),
            AuthDecision.StartSession start => StartSession(d, [], start.Role, newSessionId, now),
            AuthDecision.Enroll enroll => d
                .With(s => s with { Identity = s.Identity with { Redeeming = true } })
                .Do(new SessionEffect.RedeemToken(enroll)),
            _ => throw new InvalidOperationException("unknown authentication decision"),
        };

    /// <summary>The token redemption ended: enroll and start the session, or refuse; the authentications that waited go on.</summary>
    public static Decision Redeemed(Decision d, AuthDecision.Enroll enroll, EnrollmentResult result, string newSessionId, DateTimeOffset now)
    {
        d = d.With(s => s with { Identity = s.Identity with { Redeeming = false } }).Do(SessionEffect.UnstashAll.Instance);
        switch (result)
        {
            case EnrollmentResult.Redeemed when d.State.Identity.Revoked:
                return Refuse(d, RefusalReason.Revoked, "the peer was revoked while it enrolled");
            case EnrollmentResult.Redeemed redeemed:
                var enrolled = new PeerEnrolled(enroll.Role, enroll.PublicKey, redeemed.TokenId, now);
                return StartSession(
                    d.Log(LogLevel.Information, "Enrolling as {Role} with token {TokenId}", enrolled.Role, enrolled.TokenId),
                    [enrolled], enroll.Role, newSessionId, now);
            case EnrollmentResult.Refused refused:
                return Refuse(d, refused.Reason, refused.Detail);
            case EnrollmentResult.Unavailable unavailable:
                return Refuse(d.Log(LogLevel.Warning, "The enrollment token could not be redeemed: {Problem}", unavailable.Detail),
                    RefusalReason.Unavailable, "the directory cannot be reached to enroll; retry");
            default:
                throw new InvalidOperationException("unknown enrollment result");
        }
    }

    /// <summary>Revokes the peer for good: its stream closes, its commands in flight fail, its exit is released.</summary>
    public static Decision Revoke(Decision d, DateTimeOffset now)
    {
        var state = d.State;
        if (state.Identity.Revoked)
            return d.Do(new SessionEffect.Reply(new PeerRevoked(state.PeerId)));

        d = d.IfLost(new Akka.Actor.Status.Failure(new InvalidOperationException(PeerState.JournalUnavailable)))
            .Record(new PeerRevoked(state.PeerId))
            .Log(LogLevel.Warning, "Revoked")
            .Then(x => StreamLifecycle.Close(x, RefusalReason.Revoked, "the peer was revoked"));
        foreach (var command in state.Commands.InFlight)
            d = CommandDelivery.Fail(d, command.CommandId, "peer revoked", now);
        return d.Do(new SessionEffect.Reply(new PeerRevoked(state.PeerId)))
            .Then(x => ExitAssignment.StartRelease(x, "peer revoked", removeFromClient: false, now));
    }

    /// <summary>Takes the revocation back: the peer may authenticate again; nothing else of it comes back (its exit was released).</summary>
    public static Decision Unrevoke(Decision d)
    {
        var peerId = d.State.PeerId;
        if (!d.State.Identity.Revoked)
            return d.Do(new SessionEffect.Reply(new PeerUnrevoked(peerId)));
        return d.IfLost(new Akka.Actor.Status.Failure(new InvalidOperationException(PeerState.JournalUnavailable)))
            .Record(new PeerUnrevoked(peerId))
            .Log(LogLevel.Warning, "Security: the revocation of peer {PeerId} was taken back; it may authenticate again", peerId)
            .Do(new SessionEffect.Reply(new PeerUnrevoked(peerId)));
    }

    private static Decision StartSession(Decision d, IReadOnlyList<IPeerSessionEvent> before, PeerRole role, string sessionId, DateTimeOffset now)
    {
        var peerId = d.State.PeerId;
        d = d.IfLost(new PeerRefused(peerId, RefusalReason.Unavailable, PeerState.JournalUnavailable));
        foreach (var evt in before)
            d = d.Record(evt);
        d = d.Record(new SessionStarted(sessionId, role, now))
            .Log(LogLevel.Information, "Authenticated as {Role}, session {SessionId}", role, sessionId);
        var exit = d.State.Exit is { Phase: ExitPhase.Requested or ExitPhase.SettingUp or ExitPhase.Active } held ? held.AssignmentId : null;
        return d.Do(new SessionEffect.Reply(new PeerAuthenticated(peerId, role, sessionId, exit)));
    }

    /// <summary>
    /// Refuses the authentication. A peer the region does not know (never enrolled, not revoked) leaves nothing behind:
    /// nothing was persisted for it, and its session is let go at once rather than kept until it is idle.
    /// </summary>
    private static Decision Refuse(Decision d, RefusalReason reason, string detail)
    {
        d = d.Log(LogLevel.Warning, "Security: peer {PeerId} refused in region {Region}: {Reason} ({Detail})", d.State.PeerId, d.State.Region,
                RefusalReasons.WireName(reason), detail)
            .Do(new SessionEffect.Reply(new PeerRefused(d.State.PeerId, reason, detail)));
        var identity = d.State.Identity;
        return identity is { Enrolled: false, Revoked: false, Redeeming: false, SessionId: null } ? d.Do(SessionEffect.ForgetUnknownPeer.Instance) : d;
    }
}
