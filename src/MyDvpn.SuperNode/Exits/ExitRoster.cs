using System.Collections.Immutable;
using System.Net;
using Microsoft.Extensions.Logging;
using MyDvpn.Protocol.Control;

namespace MyDvpn.SuperNode.Exits;

/// <summary>
/// What the pool knows of the region's exits besides its journal (in memory only: their sessions re-announce them within a
/// heartbeat): which are online, with what capacity, address and RTT (<see cref="Online"/>), and which failed a setup
/// lately (<see cref="Failures"/>).
/// </summary>
public sealed record ExitRoster(ImmutableDictionary<string, ExitPresence> Online, ImmutableDictionary<string, ExitFailures> Failures)
{
    public static readonly ExitRoster Empty = new(
        ImmutableDictionary.Create<string, ExitPresence>(StringComparer.Ordinal),
        ImmutableDictionary.Create<string, ExitFailures>(StringComparer.Ordinal));

    public ExitRoster Announced(string exitPeerId, ExitPresence presence) => this with { Online = Online.SetItem(exitPeerId, presence) };

    public ExitRoster Gone(string exitPeerId) => this with { Online = Online.Remove(exitPeerId) };

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

    /// <summary>The exit's own endpoint, else the address its stream comes from and its WireGuard port; null when neither is known.</summary>
    public string? EndpointOf(string exitPeerId, SetupExitResult result)
    {
        if (!string.IsNullOrEmpty(result.Endpoint))
            return result.Endpoint;
        if (result.ListenPort is 0 or > 65535 || !Online.TryGetValue(exitPeerId, out var presence) || presence.PublicAddress.Length == 0)
            return null;
        return IPAddress.TryParse(presence.PublicAddress, out var ip)
            ? new IPEndPoint(ip, (int)result.ListenPort).ToString()
            : $"{presence.PublicAddress}:{result.ListenPort}";
    }
}

/// <summary>
/// Exits' sessions announce them (<see cref="ExitOnline"/>, on attach and every <see cref="ExitSettings.ExitHeartbeat"/>)
/// and withdraw them (<see cref="ExitOffline"/>); an exit not announced for <see cref="ExitSettings.ExitOfflineAfter"/>
/// counts as offline (its session or its node is gone) and is forgotten the next time the pool looks.
/// </summary>
public static class ExitAnnouncements
{
    public static PoolDecision Online(PoolDecision d, ExitOnline online, DateTimeOffset now) =>
        d.With(s => s with { Exits = s.Exits.Announced(online.PeerId, new ExitPresence(online.Capacity, online.PublicAddress, online.Rtt, now)) });

    public static PoolDecision Offline(PoolDecision d, ExitOffline offline) =>
        d.State.Exits.Online.ContainsKey(offline.PeerId)
            ? d.With(s => s with { Exits = s.Exits.Gone(offline.PeerId) })
                .Log(LogLevel.Information, "Exit {ExitPeerId} went offline", offline.PeerId)
            : d;

    /// <summary>Forgets the exits whose announcements stopped (before the pool picks one or shows them).</summary>
    public static PoolDecision ForgetSilent(PoolDecision d, DateTimeOffset now)
    {
        foreach (var (peerId, silent) in d.State.Exits.Silent(now, d.State.Settings.ExitOfflineAfter).ToList())
        {
            d = d.With(s => s with { Exits = s.Exits.Gone(peerId) })
                .Log(LogLevel.Information, "Exit {ExitPeerId} not announced for {SilentSeconds:0} s, counted offline", peerId, silent.TotalSeconds);
        }
        return d;
    }
}
