using MyDvpn.Protocol.Control;

namespace MyDvpn.SuperNode.Sessions;

/// <summary>
/// An event in a peer's journal (<see cref="PeerSession"/>). Protobuf messages are stored as their bytes
/// (<c>ToByteArray()</c>) so the default serializer never has to understand them.
/// </summary>
public interface IPeerSessionEvent
{
}

/// <summary>The peer redeemed token <paramref name="TokenId"/> and is known by <paramref name="PublicKey"/> from now on.</summary>
public sealed record PeerEnrolled(PeerRole Role, byte[] PublicKey, string TokenId, DateTimeOffset At) : IPeerSessionEvent;

/// <summary>
/// The peer authenticated as <paramref name="Role"/>; <paramref name="SessionId"/> is the only session a stream may
/// attach with from now on (persisted so a re-attach after hand-off or a restart is still recognised).
/// </summary>
public sealed record SessionStarted(string SessionId, PeerRole Role, DateTimeOffset At) : IPeerSessionEvent;

/// <summary>The peer is revoked for good. Also the reply to <see cref="RevokePeer"/>.</summary>
public sealed record PeerRevoked(string PeerId) : IPeerSessionEvent;

/// <summary>An operator took the peer's revocation back: it may authenticate again. Also the reply to <see cref="UnrevokePeer"/>.</summary>
public sealed record PeerUnrevoked(string PeerId) : IPeerSessionEvent;

/// <summary>A command was issued; persisted before it is first delivered. <paramref name="Command"/> is its protobuf bytes.</summary>
public sealed record CommandIssued(string CommandId, byte[] Command, string? ReplyToPeerId, DateTimeOffset At) : IPeerSessionEvent;

/// <summary>The peer answered; <paramref name="Response"/> is the <c>CommandResponse</c>'s protobuf bytes.</summary>
public sealed record CommandCompleted(string CommandId, byte[] Response, DateTimeOffset At) : IPeerSessionEvent;

/// <summary>The session gave up on the command.</summary>
public sealed record CommandFailed(string CommandId, string Reason, DateTimeOffset At) : IPeerSessionEvent;

/// <summary>The client asked for an exit in <paramref name="Region"/>; the allocation runs under <paramref name="AssignmentId"/>.</summary>
public sealed record ExitRequested(string AssignmentId, string Region, byte[] ClientPublicKey, DateTimeOffset At) : IPeerSessionEvent;

/// <summary>
/// The exit's region allocated <paramref name="Assignment"/> (its exit acked); SetupExit
/// <paramref name="SetupCommandId"/> tells the client (its <see cref="CommandIssued"/> is persisted with this event).
/// </summary>
public sealed record ExitAssigned(Exits.ExitAssignmentRecord Assignment, string SetupCommandId, DateTimeOffset At) : IPeerSessionEvent;

/// <summary>No exit was given; <paramref name="StatusCode"/> is the gRPC status code the client was told.</summary>
public sealed record ExitRequestRefused(string AssignmentId, int StatusCode, RefusalReason Reason, string Detail, DateTimeOffset At)
    : IPeerSessionEvent;

/// <summary>The assignment is being given back (both halves); the exit's region is asked until it confirms.</summary>
public sealed record ExitReleaseStarted(string AssignmentId, string Reason, DateTimeOffset At) : IPeerSessionEvent;

/// <summary>The exit's region confirmed the release: the session holds no exit any more.</summary>
public sealed record ExitReleaseCompleted(string AssignmentId, DateTimeOffset At) : IPeerSessionEvent;

/// <summary>The direct path failed: the tunnel goes through relay legs (host:port on a SuperNode of each region).</summary>
public sealed record RelayEstablished(string AssignmentId, string ClientLeg, string ExitLeg, DateTimeOffset At) : IPeerSessionEvent;

/// <summary>The direct path works again (a try of it handshook): the relay legs are closed.</summary>
public sealed record RelayClosed(string AssignmentId, DateTimeOffset At) : IPeerSessionEvent;

/// <summary>
/// The client is to move from its exit (assignment <paramref name="FromAssignmentId"/>) to another exit of the same region:
/// <paramref name="RotationId"/> is the new assignment's id, asked of the exit's region avoiding <paramref name="AvoidExitPeerId"/>.
/// </summary>
public sealed record ExitRotationStarted(
    string FromAssignmentId,
    string RotationId,
    Protocol.SuperNode.RotationReason Reason,
    string Detail,
    string? AvoidExitPeerId,
    DateTimeOffset At) : IPeerSessionEvent;

/// <summary>The exit's region set up <paramref name="Next"/> (its exit acked); RotatePeer <paramref name="CommandId"/> moves the client.</summary>
public sealed record ExitRotationAllocated(string RotationId, Exits.ExitAssignmentRecord Next, string CommandId, DateTimeOffset At) : IPeerSessionEvent;

/// <summary>The client applied its RotatePeer: its exit is the new assignment's, and the old assignment is given back.</summary>
public sealed record ExitRotated(string FromAssignmentId, string ToAssignmentId, DateTimeOffset At) : IPeerSessionEvent;

/// <summary>The rotation did not complete; a new assignment already made is given back.</summary>
public sealed record ExitRotationFailed(string RotationId, string Reason, DateTimeOffset At) : IPeerSessionEvent;
