using System.Collections.Immutable;

namespace MyDvpn.SuperNode.Exits;

/// <summary>
/// Everything a region's exit pool holds, made of parts: <see cref="Durable"/>, the journal's state (subnets and
/// assignments, <see cref="ExitPoolState"/>); <see cref="Exits"/>, the exits online and their recent failures; and
/// <see cref="Setups"/>, the setups waiting for an exit's answer. Only <see cref="Durable"/> is persisted: the rest is
/// rebuilt from the exits' announcements, and a setup dies with the incarnation whose callers and timers it had.
/// Pure: <see cref="Apply"/> folds a persisted event in; <see cref="Decide"/> turns a message into a
/// <see cref="PoolDecision"/> through the flows (<see cref="ExitSetup"/>, <see cref="AssignmentRelease"/>,
/// <see cref="ExitAnnouncements"/>); neither does I/O.
/// </summary>
/// <param name="Settings">How the region hands out exits (configuration, not state: the same for every incarnation).</param>
/// <param name="Addressing">The parsed <see cref="ExitSettings.TunnelPool"/>.</param>
public sealed record PoolState(
    ExitSettings Settings,
    TunnelAddressing Addressing,
    ExitPoolState Durable,
    ExitRoster Exits,
    ImmutableDictionary<string, PendingSetup> Setups)
{
    public string Region => Durable.Region;

    public static PoolState Empty(string region, ExitSettings settings) =>
        new(settings, settings.Addressing(), ExitPoolState.Empty(region), ExitRoster.Empty,
            ImmutableDictionary.Create<string, PendingSetup>(StringComparer.Ordinal));

    public PoolState Apply(IExitPoolEvent evt) => this with { Durable = Durable.Apply(evt) };

    /// <summary>Routes a message of the pool's flows to the flow it belongs to.</summary>
    public PoolDecision Decide(object message, DateTimeOffset now)
    {
        var d = PoolDecision.From(this);
        return message switch
        {
            AllocateExit m => ExitSetup.Allocate(d, m, now),
            Sessions.CommandOutcome m => ExitSetup.Answered(d, m, now),
            SetupOverdue m => ExitSetup.Overdue(d, m, now),
            ReleaseExit m => AssignmentRelease.Release(d, m, now),
            ExitOnline m => ExitAnnouncements.Online(d, m, now),
            ExitOffline m => ExitAnnouncements.Offline(d, m, now),
            ExitGraceOver m => ExitHealth.GraceOver(d, m, now),
            HealthTick => ExitHealth.Tick(d, now),
            DrainExit m => ExitHealth.Drain(d, m, now),
            ExitPathFailed m => ExitHealth.PathFailed(d, m, now),
            UndrainExit m => ExitHealth.Undrain(d, m, now),
            GetExitPool => ExitAnnouncements.ForgetSilent(d, now).Then(x => x.Do(new PoolEffect.Reply(x.State.View(now)))),
            GetAssignment m => d.Do(new PoolEffect.Reply(Details(m.AssignmentId))),
            _ => throw new ArgumentException($"The exit pool decides nothing about {message.GetType().Name}", nameof(message)),
        };
    }

    /// <summary>What a new incarnation does first: the setups its journal shows under way are rolled back; it starts looking at its exits.</summary>
    public PoolDecision DecideRecovered(DateTimeOffset now) => ExitHealth.Start(AssignmentRelease.CancelCutShort(PoolDecision.From(this), now));

    /// <summary>The exit of an active assignment and the address its stream comes from ("" when offline).</summary>
    public AssignmentDetails Details(string assignmentId)
    {
        var held = Durable.Assignments.GetValueOrDefault(assignmentId);
        return new AssignmentDetails(held is { Active: true } ? Durable.Record(held, Addressing) : null,
            held is not null && Exits.Online.TryGetValue(held.ExitPeerId, out var presence) ? presence.PublicAddress : "");
    }

    /// <summary>
    /// How many exits the pool sees in each state (<see cref="ExitStates"/>, every state present): those with a subnet, online,
    /// drained, disconnected or lost — wider than <see cref="View"/>, which leaves out an exit that never held a subnet once it is
    /// gone. For the <c>mydvpn_exits</c> gauge.
    /// </summary>
    public ImmutableSortedDictionary<string, int> ExitCounts()
    {
        var counts = ExitStates.All.ToImmutableSortedDictionary(state => state, _ => 0, StringComparer.Ordinal);
        return Durable.Subnets.Keys.Union(Exits.Online.Keys).Union(Durable.Drained).Union(Exits.Disconnected.Keys).Union(Exits.Lost.Keys)
            .Select(peerId => Exits.StateOf(peerId, Durable.Drained.Contains(peerId)))
            .Aggregate(counts, (c, state) => c.SetItem(state, c[state] + 1));
    }

    /// <summary>
    /// The pool's gauges: its exits by state (<see cref="ExitCounts"/>), the client places its online exits offer (each its
    /// declared capacity, at most its subnet's) and its assignments, active or setting up.
    /// </summary>
    public PoolFigures Figures()
    {
        var capacity = Exits.Online
            .Where(e => Exits.StateOf(e.Key, Durable.Drained.Contains(e.Key)) == ExitStates.Online)
            .Sum(e => Math.Min(e.Value.Capacity, Addressing.ClientsPerSubnet));
        var active = Durable.Assignments.Values.Count(a => a.Active);
        return new PoolFigures(ExitCounts(), capacity, active, Durable.Assignments.Count - active);
    }

    /// <summary>Every exit with a subnet or online, and every assignment (oldest first), as the admin sees them.</summary>
    public ExitPoolSnapshotView View(DateTimeOffset now)
    {
        var exits = Durable.Subnets.Keys.Union(Exits.Online.Keys).Union(Durable.Drained)
            .Order(StringComparer.Ordinal)
            .Select(peerId =>
            {
                var presence = Exits.Online.GetValueOrDefault(peerId);
                return new ExitView(peerId, presence is not null, presence?.Capacity ?? 0, Durable.ClientsOf(peerId),
                    Durable.Subnets.TryGetValue(peerId, out var subnet) ? Addressing.Subnet(subnet) : "",
                    presence?.Rtt, Exits.RecentFailures(peerId, now, Settings.FailureCooldown), presence?.PublicAddress ?? "")
                {
                    State = Exits.StateOf(peerId, Durable.Drained.Contains(peerId)),
                };
            })
            .ToImmutableList();
        var assignments = Durable.Assignments.Values
            .OrderBy(a => a.At).ThenBy(a => a.AssignmentId, StringComparer.Ordinal)
            .Select(a => Durable.Record(a, Addressing))
            .ToImmutableList();
        return new ExitPoolSnapshotView(Region, exits, assignments);
    }
}
