using Akka.Actor;
using MyDvpn.SuperNode.Exits;

namespace MyDvpn.SuperNode.Sessions;

// The session's messages to itself: its timers and the results of work it started outside the actor (piped back).
// Never sent by anyone else.

/// <summary>A token redemption ended; <paramref name="ReplyTo"/> asked to authenticate.</summary>
public sealed record RedemptionFinished(IActorRef ReplyTo, AuthDecision.Enroll Enroll, EnrollmentResult Result);

/// <summary>The attached stream's edge stopped.</summary>
public sealed record StreamDetached
{
    public static readonly StreamDetached Instance = new();
}

/// <summary>A command's timer: its answer is overdue, its backoff is over, or its deadline came.</summary>
public sealed record CommandTimerFired(string CommandId);

/// <summary>The exit's region answered an allocation (or the call failed).</summary>
public sealed record AllocationFinished(string AssignmentId, ExitAllocationResult Result);

/// <summary>The direct path's timeout passed; <paramref name="Retry"/>: a relay attempt failed before, try again now.</summary>
public sealed record DirectPathExpired(string AssignmentId, bool Retry);

/// <summary>A relayed assignment's next try of the direct path is due (<see cref="DirectReturn"/>).</summary>
public sealed record DirectReturnDue(string AssignmentId);

/// <summary>The exit's region unpinned the exit from its relay leg, or could not (<paramref name="Problem"/>).</summary>
public sealed record ExitUnpinned(string AssignmentId, string? Problem);

/// <summary>No report settled a try of the direct path in time.</summary>
public sealed record DirectReturnExpired(string AssignmentId);

/// <summary>A relay chain was set up (both legs) or could not be (<paramref name="Problem"/>).</summary>
public sealed record RelayFinished(string AssignmentId, string? ClientLeg, string? ExitLeg, string? Problem);

/// <summary>A release call ended; <paramref name="Problem"/> is null when the region confirmed it.</summary>
public sealed record ReleaseFinished(string AssignmentId, string? Problem);

public sealed record RetryRelease
{
    public static readonly RetryRelease Instance = new();
}

/// <summary>An exit's session re-announces it to its region's pool.</summary>
public sealed record ExitHeartbeatTick
{
    public static readonly ExitHeartbeatTick Instance = new();
}
