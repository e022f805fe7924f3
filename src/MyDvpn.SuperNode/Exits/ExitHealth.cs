using System.Collections.Immutable;
using Microsoft.Extensions.Logging;
using MyDvpn.Protocol.SuperNode;

namespace MyDvpn.SuperNode.Exits;

/// <summary>The pool's periodic look at its exits (every <see cref="ExitSettings.ExitHeartbeat"/>).</summary>
public sealed record HealthTick
{
    public static readonly HealthTick Instance = new();
}

/// <summary>
/// Exit health, decided by the exit's region (ARCHITECTURE §5 "exit dies"): an exit whose stream ended and did not come
/// back within <see cref="ExitSettings.LostAfter"/>, or that stopped announcing itself, is lost; one whose clients report
/// their paths to it breaking (<see cref="ExitSettings.StaleClients"/>) is stale for <see cref="ExitSettings.StaleFor"/>,
/// even while its control stream is alive; the operator may drain one.
/// A lost or drained exit takes no new clients (a stale one only when no other fits), and each client it serves is asked to move (<c>ExitAllocation.RotateClient</c>
/// to its session, which moves it make-before-break); a client still on it is asked again every
/// <see cref="ExitSettings.RotationRetry"/> until its assignment is released here.
/// </summary>
public static class ExitHealth
{
    public const string HealthTimer = "health";

    /// <summary>The grace after the exit's stream ended is over: lost, unless it came back (or ended again later).</summary>
    public static PoolDecision GraceOver(PoolDecision d, ExitGraceOver over, DateTimeOffset now) =>
        d.State.Exits.Disconnected.TryGetValue(over.PeerId, out var since) && since == over.DisconnectedAt
            ? Lose(d, over.PeerId, $"its stream ended {(now - since).TotalSeconds:0.#} s ago and did not come back", now)
            : d;

    /// <summary>The exit is lost: it takes no clients, and its clients are moved to other exits.</summary>
    public static PoolDecision Lose(PoolDecision d, string exitPeerId, string why, DateTimeOffset now)
    {
        d = d.With(s => s with { Exits = s.Exits.LostSince(exitPeerId, now, why) })
            .Log(LogLevel.Warning, "Exit {ExitPeerId} is lost ({Why}); moving its {Clients} clients to other exits", exitPeerId, why,
                d.State.Durable.ClientsOf(exitPeerId));
        return MoveClients(d, exitPeerId, RotationReason.ExitLost, $"exit {exitPeerId} is lost: {why}", now);
    }

    /// <summary>
    /// A client's region reports that the client's path to its exit broke: counted per client within
    /// <see cref="ExitSettings.StaleWindow"/>; enough of them (<see cref="IsStale"/>) make the exit stale and its clients move.
    /// A report of an assignment this pool does not hold on that exit for that client is ignored.
    /// </summary>
    public static PoolDecision PathFailed(PoolDecision d, ExitPathFailed failed, DateTimeOffset now)
    {
        var state = d.State;
        var held = state.Durable.Assignments.GetValueOrDefault(failed.AssignmentId);
        if (held is not { Active: true } || held.ExitPeerId != failed.ExitPeerId || held.ClientPeerId != failed.ClientPeerId)
        {
            return d.Log(LogLevel.Debug, "Path failure of {ClientPeerId} to exit {ExitPeerId} ignored: assignment {AssignmentId} is not theirs here",
                failed.ClientPeerId, failed.ExitPeerId, failed.AssignmentId);
        }

        var window = state.Settings.StaleWindow;
        var recent = state.Exits.Complaints.GetValueOrDefault(failed.ExitPeerId)?.RemoveRange(
                         state.Exits.Complaints[failed.ExitPeerId].Where(c => now - c.Value.At >= window).Select(c => c.Key))
                     ?? ImmutableDictionary.Create<string, PathComplaint>(StringComparer.Ordinal);
        var relayed = failed.Relayed || recent.GetValueOrDefault(failed.ClientPeerId)?.Relayed == true;
        recent = recent.SetItem(failed.ClientPeerId, new PathComplaint(now, relayed));
        d = d.With(s => s with { Exits = s.Exits with { Complaints = s.Exits.Complaints.SetItem(failed.ExitPeerId, recent) } })
            .Log(LogLevel.Information, "Client {ClientPeerId} reports its {Path} path to exit {ExitPeerId} broken ({Detail}); {Complaints} of its {Clients} clients within {WindowSeconds:0} s",
                failed.ClientPeerId, failed.Relayed ? "relayed" : "direct", failed.ExitPeerId, failed.Detail, recent.Count,
                state.Durable.ClientsOf(failed.ExitPeerId), window.TotalSeconds);
        if (state.Exits.Stale.ContainsKey(failed.ExitPeerId) || state.Durable.Drained.Contains(failed.ExitPeerId)
            || !IsStale([.. recent.Values], ActiveOn(state, failed.ExitPeerId).Count(), state.Settings.StaleClients))
        {
            return d;
        }

        var why = $"{recent.Count} of its clients' paths to it broke within {window.TotalSeconds:0} s" +
                  (recent.Values.Any(c => c.Relayed) ? ", relayed ones too" : "");
        var stale = new LostExit(now, why);
        d = d.With(s => s with { Exits = s.Exits with { Stale = s.Exits.Stale.SetItem(failed.ExitPeerId, stale), Complaints = s.Exits.Complaints.Remove(failed.ExitPeerId) } })
            .Log(LogLevel.Warning, "Exit {ExitPeerId} is stale ({Why}); for {StaleSeconds:0} s it takes new clients only when no other exit fits, and its clients move to other exits",
                failed.ExitPeerId, why, state.Settings.StaleFor.TotalSeconds);
        return MoveClients(d, failed.ExitPeerId, RotationReason.ExitStale, $"exit {failed.ExitPeerId} is stale: {why}", now);
    }

    /// <summary>
    /// Whether these complaints (one per client, within the window) make an exit stale: <paramref name="staleClients"/> of
    /// its clients, or all of its <paramref name="clients"/> (at least one) with a relayed path among them.
    /// </summary>
    public static bool IsStale(IReadOnlyCollection<PathComplaint> complaints, int clients, int staleClients) =>
        complaints.Count >= staleClients || (clients > 0 && complaints.Count >= clients && complaints.Any(c => c.Relayed));

    /// <summary>The operator drains the exit: persisted, then its clients are moved.</summary>
    public static PoolDecision Drain(PoolDecision d, DrainExit drain, DateTimeOffset now)
    {
        var state = d.State;
        var known = state.Durable.Subnets.ContainsKey(drain.PeerId) || state.Exits.Online.ContainsKey(drain.PeerId);
        if (!state.Durable.Drained.Contains(drain.PeerId))
        {
            d = d.Record(new ExitDrained(drain.PeerId, now))
                .Log(LogLevel.Information, "Exit {ExitPeerId} drained by the operator: it takes no new clients; moving its {Clients} clients",
                    drain.PeerId, state.Durable.ClientsOf(drain.PeerId));
        }

        var moving = ActiveOn(d.State, drain.PeerId).Select(a => new MovingClient(a.AssignmentId, a.ClientPeerId, a.ClientRegion)).ToImmutableList();
        // Asked again even when asked before: the operator's drain is a fresh request.
        d = d.With(s => s with { Exits = s.Exits with { Moving = s.Exits.Moving.RemoveRange(moving.Select(m => m.AssignmentId)) } });
        return MoveClients(d, drain.PeerId, RotationReason.ExitDrained, $"exit {drain.PeerId} is drained by the operator", now)
            .Do(new PoolEffect.Reply(new ExitDrainStarted(drain.PeerId, moving, known)));
    }

    public static PoolDecision Undrain(PoolDecision d, UndrainExit undrain, DateTimeOffset now)
    {
        if (!d.State.Durable.Drained.Contains(undrain.PeerId))
            return d.Do(new PoolEffect.Reply(new ExitUndrainResult(undrain.PeerId, WasDrained: false)));
        return d.Record(new ExitUndrained(undrain.PeerId, now))
            .Log(LogLevel.Information, "Exit {ExitPeerId} undrained by the operator: it takes clients again", undrain.PeerId)
            .Do(new PoolEffect.Reply(new ExitUndrainResult(undrain.PeerId, WasDrained: true)));
    }

    /// <summary>
    /// The periodic look: exits that stopped announcing themselves are lost; clients still on a lost or drained exit are
    /// asked again when their last request is <see cref="ExitSettings.RotationRetry"/> old; finished moves are forgotten.
    /// </summary>
    public static PoolDecision Tick(PoolDecision d, DateTimeOffset now)
    {
        d = ExitAnnouncements.ForgetSilent(d, now);
        var assignments = d.State.Durable.Assignments;
        d = d.With(s => s with { Exits = s.Exits with { Moving = s.Exits.Moving.RemoveRange(s.Exits.Moving.Keys.Where(id => !assignments.ContainsKey(id))) } });
        foreach (var (exit, lost) in d.State.Exits.Lost.OrderBy(e => e.Key, StringComparer.Ordinal))
            d = MoveClients(d, exit, RotationReason.ExitLost, $"exit {exit} is lost: {lost.Why}", now);
        foreach (var exit in d.State.Durable.Drained)
            d = MoveClients(d, exit, RotationReason.ExitDrained, $"exit {exit} is drained by the operator", now);
        foreach (var (exit, stale) in d.State.Exits.Stale.OrderBy(e => e.Key, StringComparer.Ordinal))
        {
            if (now - stale.At < d.State.Settings.StaleFor)
            {
                d = MoveClients(d, exit, RotationReason.ExitStale, $"exit {exit} is stale: {stale.Why}", now);
                continue;
            }
            d = d.With(s => s with { Exits = s.Exits with { Stale = s.Exits.Stale.Remove(exit) } })
                .Log(LogLevel.Information, "Exit {ExitPeerId} takes clients again ({StaleSeconds:0} s after its clients found it stale)", exit,
                    (now - stale.At).TotalSeconds);
        }
        return d;
    }

    /// <summary>The pool's periodic look starts with its incarnation.</summary>
    public static PoolDecision Start(PoolDecision d) =>
        d.Do(new PoolEffect.StartTimer(HealthTimer, HealthTick.Instance, d.State.Settings.ExitHeartbeat, Periodic: true));

    /// <summary>Asks the session of each client on the exit to move it (those asked within the retry interval excepted).</summary>
    private static PoolDecision MoveClients(PoolDecision d, string exitPeerId, RotationReason reason, string detail, DateTimeOffset now)
    {
        foreach (var assignment in ActiveOn(d.State, exitPeerId))
        {
            if (d.State.Exits.Moving.TryGetValue(assignment.AssignmentId, out var asked) && now - asked < d.State.Settings.RotationRetry)
                continue;
            d = d.With(s => s with { Exits = s.Exits with { Moving = s.Exits.Moving.SetItem(assignment.AssignmentId, now) } })
                .Do(new PoolEffect.MoveClient(new RotateClientRequest
                {
                    AssignmentId = assignment.AssignmentId,
                    Region = assignment.ClientRegion,
                    ClientPeerId = assignment.ClientPeerId,
                    ExitPeerId = exitPeerId,
                    Reason = reason,
                    Detail = detail,
                }));
        }
        return d;
    }

    private static IEnumerable<PoolAssignment> ActiveOn(PoolState state, string exitPeerId) =>
        state.Durable.Assignments.Values
            .Where(a => a.Active && a.ExitPeerId == exitPeerId)
            .OrderBy(a => a.At).ThenBy(a => a.AssignmentId, StringComparer.Ordinal);
}
