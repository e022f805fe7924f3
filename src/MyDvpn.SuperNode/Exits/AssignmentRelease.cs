using Microsoft.Extensions.Logging;
using MyDvpn.Protocol.Control;
using MyDvpn.SuperNode.Commands;

namespace MyDvpn.SuperNode.Exits;

/// <summary>
/// An assignment given back: the client's address is free at once and the exit is sent RemoveExit — commands to one exit
/// are applied in issue order, so a later SetupExit that reuses the address comes after it. A release asked during the
/// setup waits for its end (<see cref="ExitSetup"/>); a newer assignment of the same client supersedes the older one; a
/// pool that restarts with setups under way cancels them the same way (their callers, whose calls ended with the
/// restart, ask again).
/// </summary>
public static class AssignmentRelease
{
    public const string RestartReason = "the exit pool restarted during the setup";

    public static PoolDecision Release(PoolDecision d, ReleaseExit release, DateTimeOffset now)
    {
        var id = release.AssignmentId;
        if (d.State.Setups.TryGetValue(id, out var setup))
        {
            return d.With(s => s with { Setups = s.Setups.SetItem(id, setup.ReleaseAsked(release.Reason)) })
                .Do(new PoolEffect.Await(Awaited.Release, id));
        }

        return d.State.Durable.Assignments.ContainsKey(id)
            ? ReleaseNow(d, id, release.Reason, now).Do(new PoolEffect.Reply(new ExitReleased(id, true)))
            : d.Do(new PoolEffect.Reply(new ExitReleased(id, false)));
    }

    /// <summary>
    /// Releases the other assignments of <paramref name="request"/>'s client (at once, or when their setup ends), but the one
    /// a rotation moves away from: the client uses it until it moved.
    /// </summary>
    public static PoolDecision Supersede(PoolDecision d, AllocateExit request, DateTimeOffset now)
    {
        var reason = $"superseded by assignment {request.AssignmentId}";
        var older = d.State.Durable.Assignments.Values
            .Where(a => a.ClientPeerId == request.ClientPeerId && a.ClientRegion == request.ClientRegion && a.AssignmentId != request.AssignmentId
                        && a.AssignmentId != request.Keeps)
            .OrderBy(a => a.At).ThenBy(a => a.AssignmentId, StringComparer.Ordinal)
            .ToList();
        foreach (var assignment in older)
        {
            d = d.State.Setups.TryGetValue(assignment.AssignmentId, out var setup)
                ? d.With(s => s with { Setups = s.Setups.SetItem(assignment.AssignmentId, setup.ReleaseAsked(reason)) })
                : ReleaseNow(d, assignment.AssignmentId, reason, now);
        }
        return d;
    }

    /// <summary>Persists the release of an assignment the pool holds and tells its exit.</summary>
    public static PoolDecision ReleaseNow(PoolDecision d, string assignmentId, string reason, DateTimeOffset now)
    {
        var assignment = d.State.Durable.Assignments[assignmentId];
        d = d.Record(new AssignmentReleased(assignmentId, reason, now))
            .Log(LogLevel.Information, "Assignment {AssignmentId} of client {ClientPeerId}@{ClientRegion} on exit {ExitPeerId} released: {Reason}",
                assignmentId, assignment.ClientPeerId, assignment.ClientRegion, assignment.ExitPeerId, reason);
        return RemoveFromExit(d, assignment, reason, now);
    }

    /// <summary>The exit drops the client's half; an exit away now gets it when it reconnects within the deadline.</summary>
    public static PoolDecision RemoveFromExit(PoolDecision d, PoolAssignment assignment, string reason, DateTimeOffset now) =>
        d.Do(new PoolEffect.Issue(assignment.ExitPeerId, PeerCommands.RemoveExit(assignment.AssignmentId, assignment.ClientPublicKey, ExitSide.Exit,
            reason, now + d.State.Settings.RemoveDeadline)));

    /// <summary>Setups the journal shows under way had their callers and timers die with the last incarnation: rolled back.</summary>
    public static PoolDecision CancelCutShort(PoolDecision d, DateTimeOffset now)
    {
        var cutShort = d.State.Durable.Assignments.Values
            .Where(a => !a.Active)
            .OrderBy(a => a.At).ThenBy(a => a.AssignmentId, StringComparer.Ordinal)
            .ToList();
        foreach (var assignment in cutShort)
            d = RemoveFromExit(d.Record(new AssignmentCancelled(assignment.AssignmentId, RestartReason, now)), assignment, RestartReason, now);
        return cutShort.Count == 0 ? d : d.Log(LogLevel.Warning, "Rolled back {Count} setups cut short by a restart", cutShort.Count);
    }
}
