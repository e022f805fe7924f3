using System.Collections.Immutable;

namespace MyDvpn.DataPlane.Devices;

/// <summary>The peer-by-peer difference between what a device holds and what it must hold.</summary>
internal static class DeviceDiff
{
    /// <summary>WireGuard drops a session's keys this long after its handshake (REJECT_AFTER_TIME).</summary>
    public static readonly TimeSpan SessionLifetime = TimeSpan.FromSeconds(180);

    /// <summary>
    /// A peer whose endpoint changes keeps its session when it has a live one (WireGuard roams sessions across
    /// endpoints). One without (a path that never handshook, or went stale: the control plane moves it to a relay) is
    /// restarted — removed and added anew — because WireGuard sends a handshake initiation at most every 5 s per peer
    /// (REKEY_TIMEOUT): the new peer's first one goes out at once on the new endpoint instead of at the next retry. A peer
    /// whose session predates <see cref="DevicePeerConfig.HandshakeNotBefore"/> is restarted too (once: the restarted peer
    /// has no session), so that a path the control plane moved back to direct shows with a handshake of its own whether it
    /// works, instead of carrying the relayed session over and hiding it.
    /// </summary>
    public static DeviceChange Compute(DeviceConfig desired, DeviceState actual, DateTimeOffset now)
    {
        var privateKey = actual.PrivateKey is { } current && current.AsSpan().SequenceEqual(desired.PrivateKey) ? null : desired.PrivateKey;
        int? listenPort = desired.ListenPort != 0 && desired.ListenPort != actual.ListenPort ? desired.ListenPort : null;
        int? mark = desired.FirewallMark != actual.FirewallMark ? desired.FirewallMark : null;

        var actualPeers = actual.Peers.ToDictionary(p => p.Key);
        var desiredKeys = desired.Peers.Select(p => p.Key).ToHashSet();

        var removed = actual.Peers.Where(p => !desiredKeys.Contains(p.Key)).Select(p => p.PublicKey).ToImmutableList();
        var added = ImmutableList.CreateBuilder<DevicePeerConfig>();
        var changed = ImmutableList.CreateBuilder<PeerUpdate>();
        var restarted = ImmutableList.CreateBuilder<DevicePeerConfig>();
        foreach (var want in desired.Peers)
        {
            if (!actualPeers.TryGetValue(want.Key, out var have))
            {
                added.Add(want);
                continue;
            }
            var endpoint = want.Endpoint is not null && want.Endpoint.ToString() != have.Endpoint ? want.Endpoint : null;
            var predates = want.HandshakeNotBefore is { } notBefore && have.LastHandshake is { } made && made < notBefore;
            if (predates || (endpoint is not null && (have.LastHandshake is not { } last || now - last >= SessionLifetime)))
            {
                restarted.Add(want);
                continue;
            }
            int? keepalive = want.PersistentKeepalive != have.PersistentKeepalive ? want.PersistentKeepalive : null;
            ImmutableArray<string>? allowed = SameSet(want.AllowedIps, have.AllowedIps) ? null : want.AllowedIps;
            if (endpoint is not null || keepalive is not null || allowed is not null)
                changed.Add(new PeerUpdate(want.PublicKey, endpoint, keepalive, allowed));
        }
        return new DeviceChange(privateKey, listenPort, mark, removed, added.ToImmutable(), changed.ToImmutable()) { RestartedPeers = restarted.ToImmutable() };
    }

    private static bool SameSet(ImmutableArray<string> a, ImmutableArray<string> b) =>
        a.ToHashSet(StringComparer.OrdinalIgnoreCase).SetEquals(b);
}
