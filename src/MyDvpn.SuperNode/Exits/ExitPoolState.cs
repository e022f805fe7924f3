using System.Collections.Immutable;
using MyDvpn.Protocol.Control;

namespace MyDvpn.SuperNode.Exits;

/// <summary>An assignment as the pool holds it: host <paramref name="Host"/> of the exit's subnet, reserved or active.</summary>
public sealed record PoolAssignment(
    string AssignmentId,
    string ExitPeerId,
    int Host,
    string ClientPeerId,
    string ClientRegion,
    byte[] ClientPublicKey,
    bool Active,
    byte[] ExitPublicKey,
    string ExitEndpoint,
    DateTimeOffset At);

/// <summary>What the pool knows of an online exit (in memory only: its session re-announces it).</summary>
public sealed record ExitPresence(int Capacity, string PublicAddress, TimeSpan? Rtt, DateTimeOffset LastHeard);

/// <summary>
/// The durable state of a region's exit pool (the journal's part of <see cref="PoolState"/>): which subnet each exit owns
/// and the assignments reserved or active. Pure: <see cref="Apply"/> folds an event in, <see cref="DecideReservation"/>
/// picks an exit; neither does I/O.
/// </summary>
public sealed record ExitPoolState(
    string Region,
    ImmutableDictionary<string, int> Subnets,
    ImmutableDictionary<string, PoolAssignment> Assignments)
{
    public static ExitPoolState Empty(string region) =>
        new(region, ImmutableDictionary.Create<string, int>(StringComparer.Ordinal), ImmutableDictionary.Create<string, PoolAssignment>(StringComparer.Ordinal));

    /// <summary>The exits the operator drained: they take no new clients.</summary>
    public ImmutableSortedSet<string> Drained { get; init; } = ImmutableSortedSet.Create<string>(StringComparer.Ordinal);

    public ExitPoolState Apply(IExitPoolEvent evt) => evt switch
    {
        ExitDrained e => this with { Drained = Drained.Add(e.PeerId) },
        ExitUndrained e => this with { Drained = Drained.Remove(e.PeerId) },
        ExitSubnetAssigned e => this with { Subnets = Subnets.SetItem(e.PeerId, e.Subnet) },
        ExitSubnetReleased e => this with { Subnets = Subnets.Remove(e.PeerId) },
        AssignmentReserved e => this with
        {
            Assignments = Assignments.SetItem(e.AssignmentId,
                new PoolAssignment(e.AssignmentId, e.ExitPeerId, e.Host, e.ClientPeerId, e.ClientRegion, e.ClientPublicKey, false, [], "", e.At)),
        },
        AssignmentActivated e when Assignments.TryGetValue(e.AssignmentId, out var a) => this with
        {
            Assignments = Assignments.SetItem(e.AssignmentId, a with { Active = true, ExitPublicKey = e.ExitPublicKey, ExitEndpoint = e.ExitEndpoint, At = e.At }),
        },
        AssignmentCancelled e => this with { Assignments = Assignments.Remove(e.AssignmentId) },
        AssignmentReleased e => this with { Assignments = Assignments.Remove(e.AssignmentId) },
        AssignmentActivated => this,
        _ => throw new ArgumentException($"Unknown exit pool event {evt.GetType().Name}", nameof(evt)),
    };

    public int ClientsOf(string exitPeerId) => Assignments.Values.Count(a => a.ExitPeerId == exitPeerId);

    /// <summary>The assignment with both halves' details, as the client and the admin see it.</summary>
    public ExitAssignmentRecord Record(PoolAssignment a, TunnelAddressing addressing)
    {
        var subnet = Subnets[a.ExitPeerId];
        return new ExitAssignmentRecord(a.AssignmentId, Region, a.ExitPeerId, a.ExitPublicKey, a.ExitEndpoint,
            addressing.ClientAddress(subnet, a.Host), addressing.ExitAddress(subnet), a.ClientPeerId, a.ClientRegion, a.ClientPublicKey,
            a.Active ? ExitAssignmentRecord.Active : ExitAssignmentRecord.SettingUp);
    }

    /// <summary>
    /// Picks an exit for <paramref name="request"/>: online, with a free place (its declared capacity and its subnet's),
    /// not in <paramref name="tried"/>, not drained, not one the request avoids; the least loaded first (clients ÷ capacity),
    /// then the lowest RTT, then the fewest recent failures. An exit that failed a setup within the cooldown is a last
    /// resort, picked only when no other fits: it steers clients away while another exit can take them, but never refuses
    /// a client on its own — a setup that failed because a loaded exit answered late would otherwise shut the region for
    /// the whole cooldown, and one that fails again costs the client one more quick refusal. Returns the events that
    /// reserve it, or why none fits.
    /// </summary>
    public ReservationDecision DecideReservation(
        AllocateExit request,
        IReadOnlyDictionary<string, ExitPresence> online,
        IReadOnlyCollection<string> tried,
        IReadOnlyDictionary<string, ExitFailures> failures,
        DateTimeOffset now,
        ExitSettings settings,
        TunnelAddressing addressing,
        IReadOnlyDictionary<string, LostExit>? stale = null)
    {
        if (online.Count == 0)
            return Refuse($"region {Region} has no exit online");

        var full = new List<string>();
        var drained = new List<string>();
        var avoided = new List<string>();
        var candidates = new List<(string PeerId, double Load, TimeSpan Rtt, int Failures)>();
        var lastResort = new List<(string PeerId, double Load, TimeSpan Rtt, int Failures)>();
        foreach (var (peerId, presence) in online)
        {
            if (tried.Contains(peerId))
                continue;
            if (Drained.Contains(peerId))
            {
                drained.Add(peerId);
                continue;
            }
            if (request.Avoid.Contains(peerId))
            {
                avoided.Add(peerId);
                continue;
            }
            var capacity = Math.Min(presence.Capacity, addressing.ClientsPerSubnet);
            var clients = ClientsOf(peerId);
            if (clients >= capacity)
            {
                full.Add($"{peerId} {clients}/{capacity}");
                continue;
            }
            var failed = failures.GetValueOrDefault(peerId);
            var candidate = (peerId, (double)clients / capacity, presence.Rtt ?? TimeSpan.MaxValue, failed?.Count ?? 0);
            // An exit that failed a setup lately, or that its clients found stale, is picked only when no other fits.
            (failed is not null && now - failed.Last < settings.FailureCooldown || stale?.ContainsKey(peerId) == true ? lastResort : candidates).Add(candidate);
        }
        if (candidates.Count == 0)
            candidates = lastResort;

        if (candidates.Count == 0)
        {
            var why = new List<string>();
            if (full.Count > 0)
                why.Add($"at capacity: {string.Join(", ", full.Order(StringComparer.Ordinal))}");
            if (drained.Count > 0)
                why.Add($"drained: {string.Join(", ", drained.Order(StringComparer.Ordinal))}");
            if (avoided.Count > 0)
                why.Add($"the one the client leaves: {string.Join(", ", avoided.Order(StringComparer.Ordinal))}");
            if (tried.Count > 0)
                why.Add($"already tried for this request: {string.Join(", ", tried.Order(StringComparer.Ordinal))}");
            return Refuse($"no free exit in region {Region} ({online.Count} online; {string.Join("; ", why)})");
        }

        var pick = candidates
            .OrderBy(c => c.Load).ThenBy(c => c.Rtt).ThenBy(c => c.Failures).ThenBy(c => c.PeerId, StringComparer.Ordinal)
            .First();
        var events = ImmutableList.CreateBuilder<IExitPoolEvent>();
        if (!Subnets.ContainsKey(pick.PeerId))
        {
            var subnet = FreeSubnet(addressing);
            if (subnet is null && ReclaimableSubnet(online) is { } reclaimed)
            {
                events.Add(reclaimed);
                subnet = reclaimed.Subnet;
            }
            if (subnet is null)
            {
                return new ReservationDecision.Refuse(new ExitAllocationRefused(RefusalReason.NoExitAvailable,
                    $"the tunnel pool of region {Region} has no free /{addressing.SubnetPrefixLength} left for exit {pick.PeerId} " +
                    $"({addressing.SubnetCount} subnets in use, each by an exit online or with clients)"));
            }
            events.Add(new ExitSubnetAssigned(pick.PeerId, subnet.Value));
        }
        var host = FreeHost(pick.PeerId, addressing);
        events.Add(new AssignmentReserved(request.AssignmentId, pick.PeerId, host, request.ClientPeerId, request.ClientRegion,
            request.ClientPublicKey, now));
        return new ReservationDecision.Reserve(pick.PeerId, events.ToImmutable());

        ReservationDecision Refuse(string detail) =>
            new ReservationDecision.Refuse(new ExitAllocationRefused(RefusalReason.NoExitAvailable, detail));
    }

    /// <summary>
    /// A subnet to take back once every one is owned: that of an exit that is offline and holds no assignment (the
    /// lowest-numbered such). An exit keeps its subnet across absences while others are free, so that its address stays
    /// the same; exits gone for good would otherwise hold the pool's addresses forever.
    /// </summary>
    private ExitSubnetReleased? ReclaimableSubnet(IReadOnlyDictionary<string, ExitPresence> online)
    {
        var withClients = Assignments.Values.Select(a => a.ExitPeerId).ToHashSet(StringComparer.Ordinal);
        return Subnets
            .Where(owned => !online.ContainsKey(owned.Key) && !withClients.Contains(owned.Key))
            .OrderBy(owned => owned.Value)
            .Select(owned => new ExitSubnetReleased(owned.Key, owned.Value))
            .FirstOrDefault();
    }

    private int? FreeSubnet(TunnelAddressing addressing)
    {
        var used = Subnets.Values.ToHashSet();
        for (var subnet = 0; subnet < addressing.SubnetCount; subnet++)
        {
            if (!used.Contains(subnet))
                return subnet;
        }
        return null;
    }

    /// <summary>The lowest client host of the exit's subnet no assignment holds (capacity was checked before).</summary>
    private int FreeHost(string exitPeerId, TunnelAddressing addressing)
    {
        var used = Assignments.Values.Where(a => a.ExitPeerId == exitPeerId).Select(a => a.Host).ToHashSet();
        for (var host = TunnelAddressing.FirstClientHost; host <= addressing.LastClientHost; host++)
        {
            if (!used.Contains(host))
                return host;
        }
        throw new InvalidOperationException($"exit {exitPeerId}'s subnet is full although its capacity was checked");
    }

    public ExitPoolSnapshot ToSnapshot() =>
        new(Region, Subnets.Select(kv => new ExitSubnetAssigned(kv.Key, kv.Value)).ToImmutableList(), Assignments.Values.ToImmutableList())
        {
            Drained = [.. Drained],
        };

    public static ExitPoolState FromSnapshot(ExitPoolSnapshot snapshot) =>
        Empty(snapshot.Region) with
        {
            Subnets = snapshot.Subnets.ToImmutableDictionary(s => s.PeerId, s => s.Subnet, StringComparer.Ordinal),
            Assignments = snapshot.Assignments.ToImmutableDictionary(a => a.AssignmentId, StringComparer.Ordinal),
            Drained = ImmutableSortedSet.CreateRange(StringComparer.Ordinal, snapshot.Drained ?? []),
        };
}

/// <summary>Setups an exit failed lately: how many, and the last one's time.</summary>
public sealed record ExitFailures(int Count, DateTimeOffset Last);

/// <summary>The pool as stored in the snapshot store: lists only (the default serializer cannot read dictionaries back).</summary>
public sealed record ExitPoolSnapshot(string Region, ImmutableList<ExitSubnetAssigned> Subnets, ImmutableList<PoolAssignment> Assignments)
{
    /// <summary>Null in snapshots written before drains existed.</summary>
    public ImmutableList<string>? Drained { get; init; }
}

/// <summary>The outcome of <see cref="ExitPoolState.DecideReservation"/>.</summary>
public abstract record ReservationDecision
{
    private ReservationDecision()
    {
    }

    public sealed record Reserve(string ExitPeerId, ImmutableList<IExitPoolEvent> Events) : ReservationDecision;

    public sealed record Refuse(ExitAllocationRefused Refusal) : ReservationDecision;
}
