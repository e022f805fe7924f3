using System.Collections.Immutable;
using Microsoft.Extensions.Logging;
using MyDvpn.Protocol.Control;

namespace MyDvpn.SuperNode.Exits;

/// <summary>
/// What the pool knows of the region's exits besides its journal (in memory only: their sessions re-announce them within a
/// heartbeat): which are online, with what capacity, address and RTT (<see cref="Online"/>), which failed a setup
/// lately (<see cref="Failures"/>), whose stream just ended (<see cref="Disconnected"/>, since when), which are lost
/// (<see cref="Lost"/>, since when and why), and which assignments' clients were asked to move, and when last
/// (<see cref="Moving"/>).
/// </summary>
public sealed record ExitRoster(ImmutableDictionary<string, ExitPresence> Online, ImmutableDictionary<string, ExitFailures> Failures)
{
    public static readonly ExitRoster Empty = new(
        ImmutableDictionary.Create<string, ExitPresence>(StringComparer.Ordinal),
        ImmutableDictionary.Create<string, ExitFailures>(StringComparer.Ordinal));

    public ImmutableDictionary<string, DateTimeOffset> Disconnected { get; init; } = ImmutableDictionary.Create<string, DateTimeOffset>(StringComparer.Ordinal);

    public ImmutableDictionary<string, LostExit> Lost { get; init; } = ImmutableDictionary.Create<string, LostExit>(StringComparer.Ordinal);

    public ImmutableDictionary<string, DateTimeOffset> Moving { get; init; } = ImmutableDictionary.Create<string, DateTimeOffset>(StringComparer.Ordinal);

    /// <summary>Per exit, per client, the last report of the client's path to it breaking (<see cref="ExitHealth.PathFailed"/>).</summary>
    public ImmutableDictionary<string, ImmutableDictionary<string, PathComplaint>> Complaints { get; init; } =
        ImmutableDictionary.Create<string, ImmutableDictionary<string, PathComplaint>>(StringComparer.Ordinal);

    /// <summary>Exits announced but found stale by their clients: since when and why (until <see cref="ExitSettings.StaleFor"/> passed).</summary>
    public ImmutableDictionary<string, LostExit> Stale { get; init; } = ImmutableDictionary.Create<string, LostExit>(StringComparer.Ordinal);

    /// <summary>The exit announced itself: online, neither disconnected nor lost any more.</summary>
    public ExitRoster Announced(string exitPeerId, ExitPresence presence) =>
        this with { Online = Online.SetItem(exitPeerId, presence), Disconnected = Disconnected.Remove(exitPeerId), Lost = Lost.Remove(exitPeerId) };

    public ExitRoster Gone(string exitPeerId) => this with { Online = Online.Remove(exitPeerId) };

    /// <summary>The exit's stream ended at <paramref name="at"/>: it takes no clients while it is away.</summary>
    public ExitRoster Disconnect(string exitPeerId, DateTimeOffset at) =>
        this with { Online = Online.Remove(exitPeerId), Disconnected = Disconnected.SetItem(exitPeerId, at) };

    public ExitRoster LostSince(string exitPeerId, DateTimeOffset at, string why) =>
        this with { Online = Online.Remove(exitPeerId), Disconnected = Disconnected.Remove(exitPeerId), Lost = Lost.SetItem(exitPeerId, new LostExit(at, why)) };

    /// <summary>How the pool sees the exit (one of <see cref="ExitStates"/>), given whether the operator drained it.</summary>
    public string StateOf(string exitPeerId, bool drained) =>
        drained ? ExitStates.Drained
        : Stale.ContainsKey(exitPeerId) && Online.ContainsKey(exitPeerId) ? ExitStates.Stale
        : Online.ContainsKey(exitPeerId) ? ExitStates.Online
        : Lost.ContainsKey(exitPeerId) ? ExitStates.Lost
        : Disconnected.ContainsKey(exitPeerId) ? ExitStates.Disconnected
        : ExitStates.Offline;

    /// <summary>One more setup <paramref name="exitPeerId"/> failed, at <paramref name="now"/>.</summary>
    public ExitRoster Failed(string exitPeerId, DateTimeOffset now) =>
        this with { Failures = Failures.SetItem(exitPeerId, new ExitFailures((Failures.GetValueOrDefault(exitPeerId)?.Count ?? 0) + 1, now)) };

    /// <summary>The setups <paramref name="exitPeerId"/> failed within <paramref name="cooldown"/> of <paramref name="now"/> (0 when it is past).</summary>
    public int RecentFailures(string exitPeerId, DateTimeOffset now, TimeSpan cooldown) =>
        Failures.GetValueOrDefault(exitPeerId) is { } failures && now - failures.Last < cooldown ? failures.Count : 0;

    /// <summary>The exits online not announced for longer than <paramref name="offlineAfter"/>.</summary>
    public IEnumerable<(string PeerId, TimeSpan Silent)> Silent(DateTimeOffset now, TimeSpan offlineAfter) =>
        Online.Where(e => now - e.Value.LastHeard > offlineAfter)
            .Select(e => (e.Key, now - e.Value.LastHeard))
            .OrderBy(e => e.Key, StringComparer.Ordinal);

    /// <summary>
    /// Where clients reach the exit after its SetupExit answer: its claim only where the SuperNode can vouch for it, else the
    /// address its stream comes from and its WireGuard port (<see cref="ExitEndpoints"/>).
    /// </summary>
    public ExitEndpoints.Choice EndpointOf(string exitPeerId, SetupExitResult result, ExitSettings settings) =>
        ExitEndpoints.Choose(exitPeerId, result.Endpoint, result.ListenPort,
            Online.TryGetValue(exitPeerId, out var presence) ? presence.PublicAddress : "", settings);
}

/// <summary>An exit that is lost (or stale): since when, and why.</summary>
public sealed record LostExit(DateTimeOffset At, string Why);

/// <summary>A client's report of its path to an exit breaking; <paramref name="Relayed"/>: one through a relay chain broke within the window.</summary>
public sealed record PathComplaint(DateTimeOffset At, bool Relayed);

/// <summary>
/// Exits' sessions announce them (<see cref="ExitOnline"/>, on attach and every <see cref="ExitSettings.ExitHeartbeat"/>)
/// and withdraw them when their stream ends (<see cref="ExitOffline"/>): a withdrawn exit takes no clients, and one that
/// does not come back within <see cref="ExitSettings.LostAfter"/> is lost (<see cref="ExitHealth"/>). An exit not announced
/// for <see cref="ExitSettings.ExitOfflineAfter"/> (its session or its SuperNode is gone, and no withdrawal came) is lost
/// the next time the pool looks.
/// </summary>
public static class ExitAnnouncements
{
    public const string GraceTimerPrefix = "lost:";

    public static PoolDecision Online(PoolDecision d, ExitOnline online, DateTimeOffset now)
    {
        var wasDisconnected = d.State.Exits.Disconnected.ContainsKey(online.PeerId);
        var wasLost = d.State.Exits.Lost.ContainsKey(online.PeerId);
        d = d.With(s => s with { Exits = s.Exits.Announced(online.PeerId, new ExitPresence(online.Capacity, online.PublicAddress, online.Rtt, now)) });
        if (wasDisconnected)
            d = d.Do(new PoolEffect.CancelTimer(GraceTimerPrefix + online.PeerId));
        return wasDisconnected || wasLost ? d.Log(LogLevel.Information, "Exit {ExitPeerId} is back", online.PeerId) : d;
    }

    /// <summary>The exit's stream ended: it takes no clients now, and is lost unless it comes back within the grace.</summary>
    public static PoolDecision Offline(PoolDecision d, ExitOffline offline, DateTimeOffset now)
    {
        if (!d.State.Exits.Online.ContainsKey(offline.PeerId))
            return d;
        var grace = d.State.Settings.LostAfter;
        return d.With(s => s with { Exits = s.Exits.Disconnect(offline.PeerId, now) })
            .Log(LogLevel.Information, "Exit {ExitPeerId} went offline; lost unless it is back within {GraceSeconds:0.#} s", offline.PeerId, grace.TotalSeconds)
            .Do(new PoolEffect.StartTimer(GraceTimerPrefix + offline.PeerId, new ExitGraceOver(offline.PeerId, now), grace));
    }

    /// <summary>Exits whose announcements stopped (no withdrawal came: their session or SuperNode is gone) are lost.</summary>
    public static PoolDecision ForgetSilent(PoolDecision d, DateTimeOffset now)
    {
        foreach (var (peerId, silent) in d.State.Exits.Silent(now, d.State.Settings.ExitOfflineAfter).ToList())
            d = ExitHealth.Lose(d, peerId, $"not announced for {silent.TotalSeconds:0} s", now);
        return d;
    }
}

/// <summary>The grace after exit <paramref name="PeerId"/>'s stream ended at <paramref name="DisconnectedAt"/> is over.</summary>
public sealed record ExitGraceOver(string PeerId, DateTimeOffset DisconnectedAt);
