using Microsoft.Extensions.Logging;
using MyDvpn.SuperNode.Commands;

namespace MyDvpn.SuperNode.Sessions;

/// <summary>Where a try of the direct path of a relayed assignment stands (<see cref="DirectReturn"/>).</summary>
public enum DirectAttemptStage
{
    /// <summary>The exit's region unpins the exit from its leg (ExitAllocation.ReturnDirect); the client is still relayed.</summary>
    UnpinningExit,

    /// <summary>The client's RelayTeardown is in flight.</summary>
    PointingClient,

    /// <summary>The client applied it (its exit peer restarted on the direct endpoint): its next report shows whether a handshake came.</summary>
    Watching,
}

/// <param name="Since">When the stage began.</param>
/// <param name="RelayedHandshake">The last handshake with the exit the client reported over the chain: only a later one counts.</param>
/// <param name="CommandId">The client's RelayTeardown, from <see cref="DirectAttemptStage.PointingClient"/> on.</param>
public sealed record DirectAttempt(DirectAttemptStage Stage, DateTimeOffset Since, DateTimeOffset? RelayedHandshake, string? CommandId = null);

/// <summary>
/// A relayed client goes back to the direct path when it works again (ARCHITECTURE §4 Relay; the NAT or firewall that
/// broke it may change). <see cref="Exits.ExitSettings.DirectRetry"/> after its chain was set up, and after each try that
/// fails twice as long (up to <see cref="Exits.ExitSettings.DirectRetryMax"/>), the session tries: the exit's region
/// unpins the exit from its leg, so that the exit follows the client's handshake wherever it comes from (the leg stays
/// open); then the client gets RelayTeardown, which points its exit peer at the exit's direct endpoint and restarts it
/// there, so that a handshake of its own (not the relayed session, carried over) shows whether the direct path works. A
/// report with a handshake newer than the relayed one closes the chain on both sides (<see cref="RelayClosed"/>); a
/// report without one within <see cref="Exits.ExitSettings.DirectPathTimeout"/>, a failed path test, or any step that
/// fails points both back at the legs, which are still open (<see cref="PathMonitoring.StartRelay"/>). A failed try costs
/// the client that timeout's worth of packets. In memory only: a new incarnation starts counting afresh.
/// </summary>
public static class DirectReturn
{
    public const string Timer = "direct-return";

    /// <summary>The chain carries the client: its next try of the direct path is due after the backoff.</summary>
    public static Decision Schedule(Decision d)
    {
        var state = d.State;
        if (!state.Config.RelayAvailable || state.Exit is not { Phase: ExitPhase.Active, ClientRelayLeg: not null } exit || state.Path.Attempt is not null)
            return d;
        return d.Do(new SessionEffect.StartTimer(Timer, new DirectReturnDue(exit.AssignmentId),
            state.Config.Exits!.DirectRetryAfter(state.Path.FailedDirectAttempts)));
    }

    /// <summary>The backoff is over: unpin the exit first (the client stays relayed meanwhile).</summary>
    public static Decision Due(Decision d, DirectReturnDue due, DateTimeOffset now)
    {
        var state = d.State;
        if (state.Exit is not { Phase: ExitPhase.Active, ClientRelayLeg: not null, Rotation: null, Assignment: { } assignment } exit
            || exit.AssignmentId != due.AssignmentId || state.Path.Attempt is not null)
        {
            return d;
        }
        // A chain being set up reschedules when it is; a client without a stream when it attaches.
        if (state.Path.RelayStarting || !state.Stream.Attached)
            return d;

        return d.With(s => s with { Path = s.Path with { Attempt = new DirectAttempt(DirectAttemptStage.UnpinningExit, now, s.Path.ExitHandshake) } })
            .Log(LogLevel.Information, "Trying the direct path to exit {ExitPeerId} again (assignment {AssignmentId}, try {Try})", assignment.ExitPeerId,
                exit.AssignmentId, state.Path.FailedDirectAttempts + 1)
            .Do(new SessionEffect.UnpinExit(exit.AssignmentId, exit.Region));
    }

    /// <summary>The exit's region answered: the exit follows the client now, so the client is pointed at the direct endpoint.</summary>
    public static Decision ExitUnpinned(Decision d, ExitUnpinned unpinned, DateTimeOffset now)
    {
        var state = d.State;
        if (state.Path.Attempt is not { Stage: DirectAttemptStage.UnpinningExit } attempt
            || state.Exit is not { Phase: ExitPhase.Active, ClientRelayLeg: not null, Assignment: { } assignment } exit || exit.AssignmentId != unpinned.AssignmentId)
        {
            return d;
        }
        if (unpinned.Problem is { } problem)
        {
            // The exit may still have applied it late: then it follows the client, who stays on the leg, so nothing breaks.
            return Schedule(d.With(s => s with { Path = s.Path with { Attempt = null, FailedDirectAttempts = s.Path.FailedDirectAttempts + 1 } })
                .Log(LogLevel.Warning, "The direct path to exit {ExitPeerId} cannot be tried now ({Problem}); the relay chain stays", assignment.ExitPeerId, problem));
        }

        var teardown = PeerCommands.RelayTeardown(assignment.AssignmentId, assignment.ExitPublicKey, assignment.ExitEndpoint,
            now + state.Config.Exits!.AckTimeout);
        return CommandDelivery.IssueOwn(
            d.With(s => s with { Path = s.Path with { Attempt = attempt with { Stage = DirectAttemptStage.PointingClient, Since = now, CommandId = teardown.CommandId } } }),
            teardown, now);
    }

    /// <summary>The client's RelayTeardown ended: applied, its report decides; not applied, back to the chain.</summary>
    public static Decision CommandConcluded(Decision d, CommandOutcome outcome, DateTimeOffset now)
    {
        if (d.State.Path.Attempt is not { Stage: DirectAttemptStage.PointingClient } attempt || attempt.CommandId != outcome.CommandId
            || d.State.Exit is not { Phase: ExitPhase.Active, ClientRelayLeg: not null } exit)
        {
            return d;
        }
        if (!outcome.Succeeded)
        {
            return Failed(d, $"the client did not go back to the direct path ({outcome.FailureReason ?? outcome.Response?.Failure.Reason})");
        }
        // The agent reports as soon as its first handshake completes, or that none did within 2 s; the timer covers a report that never comes.
        return d.With(s => s with { Path = s.Path with { Attempt = attempt with { Stage = DirectAttemptStage.Watching, Since = now } } })
            .Do(new SessionEffect.StartTimer(Timer, new DirectReturnExpired(exit.AssignmentId), 2 * d.State.Config.Exits!.DirectPathTimeout));
    }

    /// <summary>A report while watching: a handshake newer than the relayed one proves the direct path; none in time, or a failed path test, does not.</summary>
    public static Decision Reported(Decision d, ReportedHandshake? withExit, ProbeFailure? probeFailed, DateTimeOffset now)
    {
        var state = d.State;
        if (state.Path.Attempt is not { Stage: DirectAttemptStage.Watching } attempt || state.Exit is not { Assignment: { } assignment })
            return d;
        if (withExit?.LastHandshake is { } at && (attempt.RelayedHandshake is not { } relayed || at > relayed))
            return Restored(d, at, now);
        if (probeFailed is not null)
            return Failed(d, $"the client sent to exit {assignment.ExitPeerId} over the direct path, heard nothing and its ping went unanswered");
        return withExit is not null && now - attempt.Since >= state.Config.Exits!.DirectPathTimeout
            ? Failed(d, $"no handshake with exit {assignment.ExitPeerId} over the direct path within {(now - attempt.Since).TotalSeconds:0.#} s")
            : d;
    }

    /// <summary>No report settled the try in time.</summary>
    public static Decision Expired(Decision d, DirectReturnExpired expired) =>
        d.State.Path.Attempt is { Stage: DirectAttemptStage.Watching } && d.State.Exit?.AssignmentId == expired.AssignmentId
            ? Failed(d, "no report from the client after it went back to the direct path")
            : d;

    /// <summary>The try failed: both sides go back to the legs, still open; the next try waits twice as long.</summary>
    private static Decision Failed(Decision d, string why)
    {
        var failed = d.State.Path.FailedDirectAttempts + 1;
        d = d.With(s => s with { Path = s.Path with { Attempt = null, FailedDirectAttempts = failed } }).Do(new SessionEffect.CancelTimer(Timer));
        return PathMonitoring.StartRelay(d, $"{why}; back to the relay chain, next try of the direct path in " +
                                            $"{d.State.Config.Exits!.DirectRetryAfter(failed).TotalSeconds:0} s");
    }

    /// <summary>The direct path works: the chain is closed on both sides.</summary>
    private static Decision Restored(Decision d, DateTimeOffset handshake, DateTimeOffset now)
    {
        var exit = d.State.Exit!;
        var assignment = exit.Assignment!;
        return d.Record(new RelayClosed(exit.AssignmentId, now))
            .With(s => s with
            {
                Path = s.Path with { Attempt = null, FailedDirectAttempts = 0, DirectConfirmed = true, DirectPathOverdue = false, NoHandshakeReported = false, Silence = null },
            })
            .Do(new SessionEffect.CancelTimer(Timer), new SessionEffect.CancelTimer(PathMonitoring.DirectPathTimer),
                new SessionEffect.CloseRelayLegs(exit.AssignmentId), new SessionEffect.CloseExitLeg(exit.AssignmentId, exit.Region),
                SessionEffect.ShowAssignments.Instance)
            .Log(LogLevel.Information, "Direct path to exit {ExitPeerId} works again (handshake at {Handshake:o}); relay chain {ClientLeg} ↔ {ExitLeg} closed",
                assignment.ExitPeerId, handshake, exit.ClientRelayLeg, exit.ExitRelayLeg);
    }
}
