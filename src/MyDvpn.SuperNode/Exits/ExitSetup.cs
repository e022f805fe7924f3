using System.Collections.Immutable;
using Microsoft.Extensions.Logging;
using MyDvpn.Protocol.Control;
using MyDvpn.SuperNode.Commands;
using MyDvpn.SuperNode.Sessions;

namespace MyDvpn.SuperNode.Exits;

/// <summary>
/// A setup waiting for its exit's answer (in memory only: its callers and its timer die with the pool's incarnation, and
/// a new one rolls it back).
/// </summary>
public sealed record PendingSetup(AllocateExit Request)
{
    public string AssignmentId => Request.AssignmentId;

    /// <summary>The exits tried for this request, in order; the last one is being tried while <see cref="CommandId"/> is set.</summary>
    public ImmutableList<string> Tried { get; init; } = [];

    /// <summary>Why each exit tried so far did not set the client up, in order.</summary>
    public ImmutableList<string> Failures { get; init; } = [];

    /// <summary>The exit the last SetupExit went to.</summary>
    public string? ExitPeerId { get; init; }

    /// <summary>The id of the SetupExit the pool waits for; null between a failure and the next exit.</summary>
    public string? CommandId { get; init; }

    /// <summary>
    /// Set when a release was asked during the setup (by the client, or by a newer assignment of the same client that
    /// supersedes this one): carried out once the setup ends.
    /// </summary>
    public string? ReleaseReason { get; init; }

    public bool ReleaseRequested => ReleaseReason is not null;

    /// <summary>The first release asked keeps its reason.</summary>
    public PendingSetup ReleaseAsked(string reason) => this with { ReleaseReason = ReleaseReason ?? reason };
}

/// <summary>The pool's own timer: the exit's session did not report the end of SetupExit <paramref name="CommandId"/> in time.</summary>
public sealed record SetupOverdue(string AssignmentId, string CommandId);

/// <summary>
/// An allocation (ARCHITECTURE §4 Direct): pick an exit (<see cref="ExitPoolState.DecideReservation"/>), persist the
/// reservation, issue SetupExit (side exit) through the exit's session with a deadline of <see cref="ExitSettings.AckTimeout"/>,
/// and answer <see cref="ExitAllocated"/> once the exit acked with its key. An exit that refuses or does not answer is
/// rolled back (reservation cancelled, RemoveExit sent in case it applied late), picked last for the failure cooldown, and the
/// next one is tried, up to <see cref="ExitSettings.MaxExitAttempts"/>. A release asked meanwhile waits for the setup's end.
/// </summary>
public static class ExitSetup
{
    public const string TimerPrefix = "setup:";

    public static PoolDecision Allocate(PoolDecision d, AllocateExit request, DateTimeOffset now)
    {
        var state = d.State;
        var id = request.AssignmentId;
        if (request.Region != state.Region)
        {
            return d.Do(new PoolEffect.Reply(new ExitAllocationRefused(RefusalReason.WrongRegion,
                $"the exit pool of region {state.Region} got a request for region {request.Region}")));
        }

        if (state.Durable.Assignments.TryGetValue(id, out var existing))
            return d.Do(AskedAgain(state, request, existing));

        d = d.With(s => s with { Setups = s.Setups.SetItem(id, new PendingSetup(request)) })
            .Do(new PoolEffect.Await(Awaited.Allocation, id));
        // A client holds one exit: an older assignment of the same client is superseded (its session lost track of it),
        // before the reservation, so the place it frees counts.
        return Reserve(AssignmentRelease.Supersede(d, request, now), id, now);
    }

    /// <summary>A request for an assignment the pool holds: the same answer again, a wait for the setup under way, or a refusal.</summary>
    private static PoolEffect AskedAgain(PoolState state, AllocateExit request, PoolAssignment existing)
    {
        if (existing.ClientPeerId != request.ClientPeerId || existing.ClientRegion != request.ClientRegion)
            return new PoolEffect.Reply(new ExitAllocationRefused(RefusalReason.MalformedMessage, $"assignment {request.AssignmentId} belongs to another client"));
        if (existing.Active)
            return new PoolEffect.Reply(new ExitAllocated(state.Durable.Record(existing, state.Addressing)));
        if (state.Setups.ContainsKey(request.AssignmentId))
            return new PoolEffect.Await(Awaited.Allocation, request.AssignmentId);
        return new PoolEffect.Reply(new ExitAllocationRefused(RefusalReason.Unavailable, $"assignment {request.AssignmentId} is being rolled back; ask again"));
    }

    /// <summary>Reserves the best exit not tried yet and sends it SetupExit, or answers why none is left.</summary>
    public static PoolDecision Reserve(PoolDecision d, string assignmentId, DateTimeOffset now)
    {
        d = ExitAnnouncements.ForgetSilent(d, now);
        var state = d.State;
        var setup = state.Setups[assignmentId];
        var request = setup.Request;
        switch (state.Durable.DecideReservation(request, state.Exits.Online, setup.Tried, state.Exits.Failures, now, state.Settings, state.Addressing, state.Exits.Stale))
        {
            case ReservationDecision.Refuse refuse:
                var refusal = setup.Failures.IsEmpty
                    ? refuse.Refusal
                    : new ExitAllocationRefused(RefusalReason.ExitSetupFailed, $"{string.Join("; ", setup.Failures)}; then {refuse.Refusal.Detail}");
                return Finish(d.Log(LogLevel.Information, "No exit for client {ClientPeerId}@{ClientRegion}: {Detail}", request.ClientPeerId,
                    request.ClientRegion, refusal.Detail), assignmentId, refusal, now);
            case ReservationDecision.Reserve reserve:
                d = d.With(s => s with { Setups = s.Setups.SetItem(assignmentId, setup with { Tried = setup.Tried.Add(reserve.ExitPeerId) }) });
                d = reserve.Events.Aggregate(d, (x, evt) => x.Record(evt));
                foreach (var released in reserve.Events.OfType<ExitSubnetReleased>())
                {
                    d = d.Log(LogLevel.Warning, "Every tunnel subnet of region {Region} was taken: exit {ReleasedExitPeerId}, offline and without clients, " +
                        "gave subnet {Subnet} up for exit {ExitPeerId} (it gets a new one if it comes back)",
                        state.Durable.Region, released.PeerId, state.Addressing.Subnet(released.Subnet), reserve.ExitPeerId);
                }
                return SendSetup(d, assignmentId, now);
            default:
                throw new InvalidOperationException("unknown reservation decision");
        }
    }

    private static PoolDecision SendSetup(PoolDecision d, string assignmentId, DateTimeOffset now)
    {
        var state = d.State;
        var record = state.Durable.Record(state.Durable.Assignments[assignmentId], state.Addressing);
        var command = PeerCommands.ServeClient(record, now + state.Settings.AckTimeout);
        return d.With(s => s with { Setups = s.Setups.SetItem(assignmentId, s.Setups[assignmentId] with { ExitPeerId = record.ExitPeerId, CommandId = command.CommandId }) })
            .Log(LogLevel.Information, "Exit {ExitPeerId} picked for client {ClientPeerId}@{ClientRegion} (assignment {AssignmentId}, address {ClientAddress})",
                record.ExitPeerId, record.ClientPeerId, record.ClientRegion, assignmentId, record.ClientAddress)
            // The session answers at its deadline at the latest; the timer covers a session that is gone (node crash). It
            // starts before the command goes, so whoever sees the command finds it running.
            .Do(new PoolEffect.StartTimer(TimerPrefix + assignmentId, new SetupOverdue(assignmentId, command.CommandId),
                state.Settings.AckTimeout + ExitSettings.OverdueGrace))
            .Do(new PoolEffect.Issue(record.ExitPeerId, command));
    }

    /// <summary>The exit's session reports how a command ended: the SetupExit of a setup under way activates it or fails it.</summary>
    public static PoolDecision Answered(PoolDecision d, CommandOutcome outcome, DateTimeOffset now)
    {
        var setup = d.State.Setups.Values.FirstOrDefault(p => p.CommandId == outcome.CommandId);
        if (setup is null)
        {
            // A RemoveExit, or a SetupExit answered after it was given up (its RemoveExit follows it).
            return outcome.Succeeded
                ? d
                : d.Log(LogLevel.Information, "Command {CommandId} to exit {ExitPeerId} ended: {Problem}", outcome.CommandId, outcome.PeerId,
                    outcome.FailureReason ?? outcome.Response?.Failure?.Reason);
        }

        var id = setup.AssignmentId;
        if (outcome.Response?.Result?.SetupExit is not { PublicKey.Length: 32 } result)
        {
            var why = outcome.FailureReason
                      ?? (outcome.Response?.Failure is { } failure
                          ? $"{CommandErrorName(failure.Code)}: {failure.Reason}"
                          : "it answered without its WireGuard public key");
            return SetupFailed(d, id, $"{setup.ExitPeerId} did not set up the client: {why}", now);
        }

        var choice = d.State.Exits.EndpointOf(setup.ExitPeerId!, result, d.State.Settings);
        if (choice.RefusedClaim is { } refusal)
        {
            d = d.Log(LogLevel.Warning, "Security event: exit {ExitPeerId} claimed endpoint {Claimed}, not taken: {Why}; its clients reach it at {Endpoint}",
                    setup.ExitPeerId, result.Endpoint, refusal, choice.Endpoint ?? "(nowhere known)")
                .Do(new PoolEffect.CountRefusedEndpoint());
        }
        if (choice.Endpoint is not { } endpoint)
            return SetupFailed(d, id, $"{setup.ExitPeerId} gave no endpoint the SuperNode can vouch for and its public address is unknown", now);

        d = d.Do(new PoolEffect.CancelTimer(TimerPrefix + id))
            .Record(new AssignmentActivated(id, result.PublicKey.ToByteArray(), endpoint, now));
        var record = d.State.Durable.Record(d.State.Durable.Assignments[id], d.State.Addressing);
        return Finish(d.Log(LogLevel.Information, "Assignment {AssignmentId} active: client {ClientPeerId}@{ClientRegion} → exit {ExitPeerId} at {Endpoint}",
            id, record.ClientPeerId, record.ClientRegion, record.ExitPeerId, endpoint), id, new ExitAllocated(record), now);
    }

    /// <summary>The pool's timer: the exit's session said nothing about the SetupExit in time.</summary>
    public static PoolDecision Overdue(PoolDecision d, SetupOverdue overdue, DateTimeOffset now) =>
        d.State.Setups.TryGetValue(overdue.AssignmentId, out var setup) && setup.CommandId == overdue.CommandId
            ? SetupFailed(d, setup.AssignmentId,
                $"{setup.ExitPeerId} did not answer SetupExit within {d.State.Settings.AckTimeout.TotalSeconds:0.#} s", now)
            : d;

    /// <summary>Rolls the exit's half back and tries the next exit (or answers why not).</summary>
    private static PoolDecision SetupFailed(PoolDecision d, string assignmentId, string why, DateTimeOffset now)
    {
        var state = d.State;
        var setup = state.Setups[assignmentId];
        var exit = setup.ExitPeerId!;
        setup = setup with { CommandId = null, Failures = setup.Failures.Add(why) };
        d = d.Do(new PoolEffect.CancelTimer(TimerPrefix + assignmentId))
            .With(s => s with { Setups = s.Setups.SetItem(assignmentId, setup), Exits = s.Exits.Failed(exit, now) })
            .Log(LogLevel.Warning, "Setup of assignment {AssignmentId} on exit {ExitPeerId} failed, rolling it back: {Why}", assignmentId, exit, why)
            .Record(new AssignmentCancelled(assignmentId, why, now));
        if (state.Durable.Assignments.GetValueOrDefault(assignmentId) is { } reserved)
            d = AssignmentRelease.RemoveFromExit(d, reserved, "setup rolled back: " + why, now);

        if (setup.ReleaseRequested || setup.Tried.Count >= state.Settings.MaxExitAttempts)
        {
            return Finish(d, assignmentId, new ExitAllocationRefused(RefusalReason.ExitSetupFailed,
                setup.ReleaseRequested ? $"released during the setup; {why}" : string.Join("; ", setup.Failures)), now);
        }
        return Reserve(d, assignmentId, now);
    }

    /// <summary>Answers everyone waiting on the setup, then carries out a release asked for meanwhile.</summary>
    private static PoolDecision Finish(PoolDecision d, string assignmentId, object answer, DateTimeOffset now)
    {
        var setup = d.State.Setups[assignmentId];
        d = d.With(s => s with { Setups = s.Setups.Remove(assignmentId) })
            .Do(new PoolEffect.Answer(Awaited.Allocation, assignmentId, answer));
        if (setup.ReleaseReason is not { } reason)
            return d;
        if (answer is ExitAllocated)
            d = AssignmentRelease.ReleaseNow(d, assignmentId, reason, now);
        return d.Do(new PoolEffect.Answer(Awaited.Release, assignmentId, new ExitReleased(assignmentId, true)));
    }

    private static string CommandErrorName(CommandError code) =>
        ControlReflection.Descriptor.EnumTypes.Single(e => e.ClrType == typeof(CommandError)).FindValueByNumber((int)code)?.Name ?? code.ToString();
}
