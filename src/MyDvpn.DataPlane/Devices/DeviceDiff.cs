using System.Collections.Immutable;

namespace MyDvpn.DataPlane.Devices;

/// <summary>The peer-by-peer difference between what a device holds and what it must hold.</summary>
internal static class DeviceDiff
{
    public static DeviceChange Compute(DeviceConfig desired, DeviceState actual)
    {
        var privateKey = actual.PrivateKey is { } current && current.AsSpan().SequenceEqual(desired.PrivateKey) ? null : desired.PrivateKey;
        int? listenPort = desired.ListenPort != 0 && desired.ListenPort != actual.ListenPort ? desired.ListenPort : null;
        int? mark = desired.FirewallMark != actual.FirewallMark ? desired.FirewallMark : null;

        var actualPeers = actual.Peers.ToDictionary(p => p.Key);
        var desiredKeys = desired.Peers.Select(p => p.Key).ToHashSet();

        var removed = actual.Peers.Where(p => !desiredKeys.Contains(p.Key)).Select(p => p.PublicKey).ToImmutableList();
        var added = ImmutableList.CreateBuilder<DevicePeerConfig>();
        var changed = ImmutableList.CreateBuilder<PeerUpdate>();
        foreach (var want in desired.Peers)
        {
            if (!actualPeers.TryGetValue(want.Key, out var have))
            {
                added.Add(want);
                continue;
            }
            var endpoint = want.Endpoint is not null && want.Endpoint.ToString() != have.Endpoint ? want.Endpoint : null;
            int? keepalive = want.PersistentKeepalive != have.PersistentKeepalive ? want.PersistentKeepalive : null;
            ImmutableArray<string>? allowed = SameSet(want.AllowedIps, have.AllowedIps) ? null : want.AllowedIps;
            if (endpoint is not null || keepalive is not null || allowed is not null)
                changed.Add(new PeerUpdate(want.PublicKey, endpoint, keepalive, allowed));
        }
        return new DeviceChange(privateKey, listenPort, mark, removed, added.ToImmutable(), changed.ToImmutable());
    }

    private static bool SameSet(ImmutableArray<string> a, ImmutableArray<string> b) =>
        a.ToHashSet(StringComparer.OrdinalIgnoreCase).SetEquals(b);
}
