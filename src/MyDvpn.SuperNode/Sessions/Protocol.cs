using System.Collections.Immutable;
using Akka.Actor;
using MyDvpn.Protocol.Control;

namespace MyDvpn.SuperNode.Sessions;

/// <summary>A message addressed to one peer's <see cref="PeerSession"/> (the sharding key).</summary>
public interface IWithPeerId
{
    string PeerId { get; }
}

/// <summary>
/// Edge → session: a peer answered the challenge. The edge has already checked that the challenge is fresh and
/// single-use, and <paramref name="Transcript"/> is exactly the bytes the peer signed. <paramref name="EnrollmentToken"/>
/// and <paramref name="PublicKey"/> count only for a peer that is not enrolled yet.
/// Reply: <see cref="PeerAuthenticated"/> or <see cref="PeerRefused"/>.
/// </summary>
public sealed record AuthenticatePeer(
    string PeerId,
    PeerRole Role,
    string Region,
    byte[] Transcript,
    byte[] Signature,
    string? EnrollmentToken,
    byte[]? PublicKey) : IWithPeerId;

/// <summary>The peer is who it claims and may take <paramref name="Role"/>; a new session id per authentication.</summary>
/// <param name="ExitAssignmentId">A client's exit assignment that is not being released; null: none.</param>
public sealed record PeerAuthenticated(string PeerId, PeerRole Role, string SessionId, string? ExitAssignmentId = null);

public sealed record PeerRefused(string PeerId, RefusalReason Reason, string Detail);

/// <summary>
/// Edge → session: the stream of session <paramref name="SessionId"/> is held by <paramref name="Edge"/>, which the
/// session watches. Reply: <see cref="StreamAttached"/>, or <see cref="CloseStream"/> when the session id is not
/// the peer's latest (<c>Replaced</c>), the peer never authenticated (<c>UnknownPeer</c>) or is revoked
/// (<c>Revoked</c>). An edge attached before gets <see cref="CloseStream"/> with <c>Replaced</c>.
/// </summary>
/// <param name="RemoteAddress">The IP the stream comes from (an exit's endpoint when it does not know its own).</param>
/// <param name="ExitCapacity">Clients the peer offers to serve as an exit (its ExitOffer); 0: none.</param>
public sealed record AttachStream(string PeerId, string SessionId, IActorRef Edge, string RemoteAddress = "", int ExitCapacity = 0) : IWithPeerId;

public sealed record StreamAttached(string PeerId, string SessionId);

/// <summary>Session → edge: end the peer's stream with this reason.</summary>
public sealed record CloseStream(RefusalReason Reason, string Detail);

/// <summary>Session → edge: write this command to the peer. The same command may come again (a retry).</summary>
public sealed record DeliverCommand(Command Command);

/// <summary>Edge → session: the peer answered a command.</summary>
public sealed record CommandAnswered(string PeerId, CommandResponse Response) : IWithPeerId;

/// <summary>
/// Have the peer carry out <paramref name="Command"/>. An empty command id is assigned (a Guid, "N" format); an
/// unset deadline becomes now + <see cref="PeerSessionSettings.DefaultDeadline"/>. Reply: <see cref="CommandAccepted"/>
/// once the command is persisted, or at once a final <see cref="CommandOutcome"/> when it is refused (peer revoked or
/// not enrolled, deadline already passed, command id already finished). An id already in flight is accepted again
/// without a second issue. The final <see cref="CommandOutcome"/> goes to the sender (if it is still alive: an Ask's
/// temporary actor is not) and, when <paramref name="ReplyToPeerId"/> is set, as <see cref="CommandOutcomeFor"/>
/// through the <c>peers</c> shard region — the durable route, since the sender is not remembered across restarts.
/// </summary>
public sealed record IssueCommand(string PeerId, Command Command, string? ReplyToPeerId = null) : IWithPeerId;

public sealed record CommandAccepted(string PeerId, string CommandId);

/// <summary>
/// The end of a command: the peer's <paramref name="Response"/> (a result or a <c>CommandFailure</c>), or a
/// <paramref name="FailureReason"/> when the session gave up (no answer after the attempts, deadline passed, peer
/// revoked) or refused to issue it. Exactly one of the two is set.
/// </summary>
public sealed record CommandOutcome(string PeerId, string CommandId, CommandResponse? Response, string? FailureReason)
{
    public bool Succeeded => Response?.OutcomeCase == CommandResponse.OutcomeOneofCase.Result;
}

/// <summary>A <see cref="CommandOutcome"/> of a command issued on behalf of peer <paramref name="PeerId"/>'s session.</summary>
public sealed record CommandOutcomeFor(string PeerId, CommandOutcome Outcome) : IWithPeerId;

/// <summary>
/// Revoke the peer for good: its stream is closed with <c>Revoked</c>, its commands in flight fail ("peer revoked")
/// and it is refused from then on. Idempotent. Reply: <see cref="PeerRevoked"/> (also the persisted event).
/// </summary>
public sealed record RevokePeer(string PeerId) : IWithPeerId;

/// <summary>
/// Takes the peer's revocation back (an operator's unrevoke): it may authenticate again with its enrolled key. Idempotent.
/// Reply: <see cref="PeerUnrevoked"/> (also the persisted event, when the peer was revoked).
/// </summary>
public sealed record UnrevokePeer(string PeerId) : IWithPeerId;

/// <summary>Reply: <see cref="PeerStateView"/>.</summary>
public sealed record GetPeerState(string PeerId) : IWithPeerId;

/// <summary>
/// What a session knows about its peer. <paramref name="Role"/> is the enrolled role (<c>Unspecified</c> when not
/// enrolled); <paramref name="InFlightCommandIds"/> are in issue order.
/// </summary>
public sealed record PeerStateView(
    string PeerId,
    bool Enrolled,
    PeerRole Role,
    bool Revoked,
    string? SessionId,
    bool StreamAttached,
    int CommandsInFlight,
    ImmutableList<string> InFlightCommandIds)
{
    /// <summary>A client's exit, or the clients an exit serves.</summary>
    public ImmutableList<Exits.ExitAssignmentRecord> Assignments { get; init; } = [];
}

/// <summary>
/// The shard's hand-off stop message for <c>peers</c> (and what a session passivates itself with): the session
/// stops after the events it is persisting are written, which a <see cref="PoisonPill"/> would not wait for.
/// </summary>
public sealed record StopPeerSession
{
    public static readonly StopPeerSession Instance = new();

    private StopPeerSession()
    {
    }
}

/// <summary>Edge → session: the client asked for an exit (its ExitRequest).</summary>
public sealed record RequestExit(string PeerId, string Region, byte[] ClientPublicKey) : IWithPeerId
{
    /// <summary>The W3C traceparent of the edge's span for the request (tracing on), which the allocation continues; never persisted.</summary>
    public string? TraceParent { get; init; }
}

/// <summary>Edge → session: the client gives its exit back (its ExitRelease).</summary>
public sealed record ClientReleasesExit(string PeerId, string AssignmentId) : IWithPeerId;

/// <summary>Edge → session: the last heartbeat round trip of the peer's stream.</summary>
public sealed record PeerRttMeasured(string PeerId, TimeSpan Rtt) : IWithPeerId;

/// <summary>Session → edge: write this message to the peer (e.g. ExitRequestFailed).</summary>
public sealed record SendToPeer(ControlMessage Message);

/// <summary>Session → edge: the peer's exit assignments changed (shown by the admin's session list).</summary>
public sealed record PeerAssignments(string PeerId, ImmutableList<Exits.ExitAssignmentRecord> Assignments);

/// <summary>Edge → session: the WireGuard handshakes the peer's last StatusReport shows, per peer public key.</summary>
/// <summary>
/// A SuperNode holding a leg of the client's relay chain for <paramref name="AssignmentId"/> is letting it go (shutting
/// down) or is gone (its region's cluster lost it): the session chains the client's leg to a new one elsewhere.
/// </summary>
/// <param name="ExitLeg">The leg that goes (host:port); null when not said. A chain already on another leg stays as it is.</param>
public sealed record RelayLegLost(string PeerId, string AssignmentId, string SuperNodeId, string Reason, string? ExitLeg = null) : IWithPeerId
{
    /// <summary>The region of the SuperNode that told (from its certificate); null: not known (a test). News from another region than the exit's is ignored.</summary>
    public string? FromRegion { get; init; }
}

/// <summary>
/// Move the client to another exit of its exit's region, make-before-break (from the exit's region through
/// <c>ExitAllocation.RotateClient</c>, or an operator's <c>admin rotate</c>). <paramref name="AssignmentId"/> empty: whatever
/// exit it holds. Reply: <see cref="RotationOutcome"/> once the rotation ended (at once when none could start).
/// </summary>
/// <param name="AvoidExitPeerId">The exit not to pick; null: the one the client leaves.</param>
public sealed record RotateExit(string PeerId, string AssignmentId, Protocol.SuperNode.RotationReason Reason, string Detail, string? AvoidExitPeerId = null)
    : IWithPeerId;

public sealed record HandshakesReported(string PeerId, ImmutableList<ReportedHandshake> Peers) : IWithPeerId
{
    /// <summary>The agent's test of the path failed (StatusReport.probe_failed): it sent, heard nothing back, and its ping of the exit went unanswered.</summary>
    public ProbeFailure? ProbeFailed { get; init; }
}

/// <summary>The agent's path test failed for its WireGuard peer <paramref name="PublicKey"/> after <paramref name="SilentFor"/> without an answer.</summary>
public sealed record ProbeFailure(byte[] PublicKey, TimeSpan SilentFor);

/// <param name="LastHandshake">Null: no handshake yet.</param>
/// <param name="RxBytes">Bytes received from the peer since its WireGuard peer was (re)created.</param>
/// <param name="TxBytes">Bytes sent to the peer since then.</param>
public sealed record ReportedHandshake(byte[] PublicKey, DateTimeOffset? LastHandshake, ulong RxBytes = 0, ulong TxBytes = 0);
