using System.Collections.Immutable;
using Google.Protobuf;
using Microsoft.Extensions.Logging;
using MyDvpn.Protocol.Control;
using MyDvpn.Protocol.SuperNode;
using MyDvpn.SuperNode.Commands;
using MyDvpn.SuperNode.Exits;

namespace MyDvpn.SuperNode.Sessions;

/// <summary>A rotation of a client's active exit under way (part of <see cref="ClientExit"/>, so of its snapshot).</summary>
/// <param name="RotationId">The new assignment's id.</param>
/// <param name="AvoidExitPeerId">The exit the client leaves: not picked for it again.</param>
public sealed record ExitRotationState(string RotationId, RotationReason Reason, string Detail, string? AvoidExitPeerId, DateTimeOffset Since)
{
    /// <summary>The new assignment, once its exit acked; the client's RotatePeer <see cref="CommandId"/> is then in flight.</summary>
    public ExitAssignmentRecord? Next { get; init; }

    public string? CommandId { get; init; }
}

/// <summary>The last rotation of a client's exit: when, why, from which exit (shown by the admin and the agent).</summary>
public sealed record ExitRotationRecord(string FromAssignmentId, string FromExitPeerId, RotationReason Reason, string Detail, DateTimeOffset At)
{
    public Protocol.SuperNode.ExitRotationView ToProto() => new()
    {
        FromAssignmentId = FromAssignmentId,
        FromExitPeerId = FromExitPeerId,
        Reason = Reason,
        Detail = Detail,
        At = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(At),
    };

    public static ExitRotationRecord FromProto(Protocol.SuperNode.ExitRotationView r) =>
        new(r.FromAssignmentId, r.FromExitPeerId, r.Reason, r.Detail, r.At?.ToDateTimeOffset() ?? DateTimeOffset.MinValue);
}

/// <summary>An assignment the client left (rotated away from, or a rotation's new one that did not complete), being given back.</summary>
public sealed record RetiringExit(string AssignmentId, string Region, string Reason);

/// <summary>
/// Moving a client to another exit of the same region, make-before-break (ARCHITECTURE §4 Rotation, §5 "exit dies"): the
/// exit's region is asked for a new assignment avoiding the exit the client leaves (its SetupExit acked there first), then
/// the client gets RotatePeer and, once it applied it, the old assignment is given back. Every step is persisted with the
/// rotation's id. A step that fails rolls back: a new assignment already made is given back; the client keeps its exit —
/// or, when that exit is lost, is told NO_EXIT_AVAILABLE, its half is removed and it asks again with backoff.
/// </summary>
public static class ExitRotation
{
    public const string RetiredReleaseTimerPrefix = "exit-release:";

    /// <summary>The exit's region (its exit lost, drained or stale) or the operator moves the client.</summary>
    public static Decision Start(Decision d, RotateExit request, string newAssignmentId, DateTimeOffset now)
    {
        var state = d.State;
        if (state.Exit is not { Phase: ExitPhase.Active, Assignment: { } current } exit
            || (request.AssignmentId.Length > 0 && request.AssignmentId != exit.AssignmentId))
        {
            var why = state.Exit is null
                ? "the client holds no exit"
                : $"the client's exit is {state.Exit.AssignmentId} ({state.Exit.Phase}), not an active {request.AssignmentId}";
            return d.Log(LogLevel.Debug, "Rotation ({Reason}) not started: {Why}", request.Reason, why)
                .Do(new SessionEffect.Reply(RotationOutcome.Refused(state.PeerId, why)));
        }

        if (exit.Rotation is { } underWay)
            return d.Do(new SessionEffect.RememberRotationWaiter(underWay.RotationId));
        if (state.Config.Exits is null)
            return d.Do(new SessionEffect.Reply(RotationOutcome.Refused(state.PeerId, "exit allocation is not configured on this SuperNode")));

        var avoid = request.AvoidExitPeerId ?? current.ExitPeerId;
        d = d.Record(new ExitRotationStarted(exit.AssignmentId, newAssignmentId, request.Reason, request.Detail, avoid, now))
            .Log(LogLevel.Information, "Moving the client from exit {ExitPeerId} ({Reason}: {Detail}): asking region {ExitRegion} for another exit (assignment {AssignmentId})",
                current.ExitPeerId, request.Reason, request.Detail, exit.Region, newAssignmentId)
            .Do(new SessionEffect.RememberRotationWaiter(newAssignmentId));
        return Allocate(d);
    }

    /// <summary>Asks the exit's region for the rotation's new assignment (again, after a restart: idempotent there).</summary>
    public static Decision Allocate(Decision d)
    {
        var state = d.State;
        if (state.Exit is not { Rotation: { Next: null } rotation } exit)
            return d;
        var request = new AllocateExitRequest
        {
            AssignmentId = rotation.RotationId,
            Region = exit.Region,
            ClientPeerId = state.PeerId,
            ClientRegion = state.Region,
            ClientPublicKey = ByteString.CopyFrom(exit.ClientPublicKey),
            // Make-before-break: the pool keeps the assignment the client is on until the client moved.
            KeepsAssignmentId = exit.AssignmentId,
        };
        if (rotation.AvoidExitPeerId is { } avoid)
            request.AvoidExitPeerIds.Add(avoid);
        return d.Do(new SessionEffect.AllocateExit(request));
    }

    /// <summary>Whether <paramref name="finished"/> answers the rotation under way (else it is the exit flow's).</summary>
    public static bool Answers(PeerState state, AllocationFinished finished) => state.Exit?.Rotation?.RotationId == finished.AssignmentId;

    /// <summary>The exit's region answered the rotation's allocation: move the client (RotatePeer), or roll back.</summary>
    public static Decision Allocated(Decision d, AllocationFinished finished, DateTimeOffset now)
    {
        var state = d.State;
        var exit = state.Exit!;
        if (exit.Rotation is not { Next: null } || exit.Assignment is not { } current)
            return d;
        switch (finished.Result)
        {
            case ExitAllocationResult.Allocated allocated:
                var settings = state.Config.Exits!;
                var rotate = PeerCommands.RotateExit(allocated.Assignment, exit.AssignmentId, current.ExitPublicKey,
                    $"{exit.Rotation.Reason}: {exit.Rotation.Detail}", settings, now + settings.ClientSetupTimeout);
                if (state.Commands.DecideIssue(new IssueCommand(state.PeerId, rotate), rotate.CommandId, now, settings.ClientSetupTimeout,
                        state.Identity) is not IssueDecision.Issue issue)
                {
                    return Fail(d.Record(new ExitRotationAllocated(exit.Rotation.RotationId, allocated.Assignment, rotate.CommandId, now)),
                        "the client's RotatePeer could not be issued", now);
                }

                d = d.Record(new ExitRotationAllocated(exit.Rotation.RotationId, allocated.Assignment, rotate.CommandId, now)).Record(issue.Event)
                    .Log(LogLevel.Information, "Exit {ExitPeerId}@{ExitRegion} acked assignment {AssignmentId}; moving the client to it with RotatePeer",
                        allocated.Assignment.ExitPeerId, allocated.Assignment.Region, allocated.Assignment.AssignmentId);
                return CommandDelivery.Deliver(d, rotate.CommandId, now).Do(SessionEffect.ShowAssignments.Instance);
            case ExitAllocationResult.Refused refused:
                if (refused.Reason == RefusalReason.RegionUnreachable)
                    d = Retire(d, exit.Region, exit.Rotation.RotationId, "the client's session gave up waiting for it", tracked: false);
                return Fail(d, $"{RefusalReasons.WireName(refused.Reason)}: {refused.Detail}", now);
            default:
                throw new InvalidOperationException("unknown allocation result");
        }
    }

    /// <summary>A command ended: the client's RotatePeer completes the rotation, or fails it.</summary>
    public static Decision CommandConcluded(Decision d, CommandOutcome outcome, DateTimeOffset now)
    {
        if (d.State.Exit is not { Rotation: { CommandId: { } commandId } } || commandId != outcome.CommandId)
            return d;
        if (outcome.Succeeded)
            return Complete(d, now);
        var why = outcome.FailureReason ?? $"{outcome.Response!.Failure.Code}: {outcome.Response.Failure.Reason}";
        return Fail(d, $"the client could not apply its RotatePeer: {why}", now);
    }

    /// <summary>The exit goes while a rotation is under way (released, disconnected, revoked): the rotation ends with it.</summary>
    public static Decision Abandon(Decision d, string why, DateTimeOffset now) =>
        d.State.Exit?.Rotation is { } rotation ? Ended(d, rotation, $"abandoned: {why}", now) : d;

    /// <summary>The region answered the release of an assignment the client left: done, or asked again after a while.</summary>
    public static Decision ReleaseFinished(Decision d, ReleaseFinished finished, DateTimeOffset now)
    {
        if (d.State.Retiring.Find(r => r.AssignmentId == finished.AssignmentId) is not { } retiring)
            return d;
        if (finished.Problem is null)
        {
            return d.Record(new ExitReleaseCompleted(retiring.AssignmentId, now))
                .Log(LogLevel.Information, "Assignment {AssignmentId} the client left is released", retiring.AssignmentId);
        }

        var retry = d.State.Config.Exits!.ReleaseRetry;
        return d.Log(LogLevel.Warning, "Releasing assignment {AssignmentId} at region {ExitRegion} failed, retrying in {RetrySeconds:0} s: {Problem}",
                retiring.AssignmentId, retiring.Region, retry.TotalSeconds, finished.Problem)
            .Do(new SessionEffect.StartTimer(RetiredReleaseTimerPrefix + retiring.AssignmentId, new RetryRetiredRelease(retiring.AssignmentId), retry));
    }

    public static Decision RetryRelease(Decision d, RetryRetiredRelease retry) =>
        d.State.Retiring.Find(r => r.AssignmentId == retry.AssignmentId) is { } retiring ? SendRelease(d, retiring) : d;

    /// <summary>What a new incarnation picks up: an allocation asked (ask again), and the releases of assignments left.</summary>
    public static Decision Recovered(Decision d) => d.State.Retiring.Aggregate(Allocate(d), SendRelease);

    private static Decision Complete(Decision d, DateTimeOffset now)
    {
        var exit = d.State.Exit!;
        var rotation = exit.Rotation!;
        var from = exit.Assignment!;
        var to = rotation.Next!;
        d = d.Record(new ExitRotated(exit.AssignmentId, to.AssignmentId, now))
            .Log(LogLevel.Information, "The client moved from exit {FromExitPeerId} to exit {ExitPeerId} (assignment {AssignmentId})",
                from.ExitPeerId, to.ExitPeerId, to.AssignmentId)
            // The old path's relay legs go with the old assignment; the new path is watched afresh.
            .With(s => s with { Path = PathState.Initial })
            .Do(new SessionEffect.CancelTimer(PathMonitoring.DirectPathTimer), new SessionEffect.CloseRelayLegs(from.AssignmentId),
                new SessionEffect.AnnounceRotation(new RotationOutcome(d.State.PeerId, rotation.RotationId, from.AssignmentId, from.ExitPeerId,
                    to.AssignmentId, to.ExitPeerId, null)),
                new SessionEffect.CountRotation(rotation.Reason, Moved: true, now - rotation.Since),
                SessionEffect.ShowAssignments.Instance);
        d = SendRelease(d, d.State.Retiring.Find(r => r.AssignmentId == from.AssignmentId)!);
        return PathMonitoring.Activated(d);
    }

    /// <summary>
    /// Rolls the rotation back: the client keeps its exit, even a lost one. Its control stream's end does not prove that its
    /// data plane died (a SuperNode that stops or crashes ends every exit stream it holds, and the exits come back through
    /// another SuperNode a few seconds later), so a client no other exit takes stays where its traffic may still flow; the
    /// pool asks again every <see cref="Exits.ExitSettings.RotationRetry"/> while the exit stays lost. Once the client's own
    /// test of the path fails too, it gives the lost exit up (<see cref="PathState.ExitLostUnreplaced"/>,
    /// <see cref="ExitAssignment.GiveUpLostExit"/>).
    /// </summary>
    private static Decision Fail(Decision d, string why, DateTimeOffset now)
    {
        var rotation = d.State.Exit!.Rotation!;
        // Only a lost exit: a stale one is announced and may still carry traffic (a client's chain may have broken with a
        // SuperNode, not with the exit), and it stays the last resort of its region.
        if (rotation.Reason == RotationReason.ExitLost)
            d = d.With(s => s with { Path = s.Path with { ExitLostUnreplaced = rotation.Detail } });
        return Ended(d, rotation, why, now);
    }

    private static Decision Ended(Decision d, ExitRotationState rotation, string why, DateTimeOffset now)
    {
        var exit = d.State.Exit!;
        d = d.Record(new ExitRotationFailed(rotation.RotationId, why, now))
            .Log(LogLevel.Warning, "Moving the client from exit {ExitPeerId} failed: {Why}", exit.Assignment?.ExitPeerId, why)
            .Do(new SessionEffect.AnnounceRotation(new RotationOutcome(d.State.PeerId, rotation.RotationId, exit.AssignmentId,
                    exit.Assignment?.ExitPeerId ?? "", null, null, why)),
                new SessionEffect.CountRotation(rotation.Reason, Moved: false, now - rotation.Since),
                SessionEffect.ShowAssignments.Instance);
        return d.State.Retiring.Find(r => r.AssignmentId == rotation.RotationId) is { } made ? SendRelease(d, made) : d;
    }

    /// <summary>Gives back an assignment the session does not hold: tracked (retried until confirmed), or best effort.</summary>
    private static Decision Retire(Decision d, string region, string assignmentId, string reason, bool tracked) =>
        d.Do(new SessionEffect.ReleaseExit(new ReleaseExitRequest { AssignmentId = assignmentId, Region = region, Reason = reason }, tracked));

    private static Decision SendRelease(Decision d, RetiringExit retiring) =>
        d.State.Config.Exits is null
            ? d.Do(new SessionEffect.TellSelf(new ReleaseFinished(retiring.AssignmentId, null)))
            : Retire(d, retiring.Region, retiring.AssignmentId, retiring.Reason, tracked: true);
}

/// <summary>
/// The end of a rotation, to whoever asked for it (an operator's <c>admin rotate</c> waits for it). Moved: the
/// <c>To…</c> fields are set; else <paramref name="Failure"/> says why.
/// </summary>
public sealed record RotationOutcome(
    string PeerId,
    string RotationId,
    string FromAssignmentId,
    string FromExitPeerId,
    string? ToAssignmentId,
    string? ToExitPeerId,
    string? Failure)
{
    public bool Moved => ToAssignmentId is not null && Failure is null;

    public static RotationOutcome Refused(string peerId, string why) => new(peerId, "", "", "", null, null, why);
}

/// <summary>The retry of the release of an assignment the client left.</summary>
public sealed record RetryRetiredRelease(string AssignmentId);

/// <summary>Helpers for the retiring list.</summary>
internal static class Retiring
{
    public static ImmutableList<RetiringExit> Without(this ImmutableList<RetiringExit> list, string assignmentId) =>
        list.RemoveAll(r => r.AssignmentId == assignmentId);
}
