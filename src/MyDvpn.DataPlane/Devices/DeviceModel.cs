using System.Collections.Immutable;
using System.Net;
using System.Text;

namespace MyDvpn.DataPlane.Devices;

/// <summary>What the WireGuard device itself must hold: keys, port, mark and peers (endpoints already resolved, allowed
/// IPs normalized).</summary>
/// <param name="ListenPort">0: any (not enforced).</param>
/// <param name="FirewallMark">0: off.</param>
internal sealed record DeviceConfig(byte[] PrivateKey, int ListenPort, int FirewallMark, ImmutableList<DevicePeerConfig> Peers);

/// <param name="Endpoint">null: not set (the device keeps what it learned).</param>
internal sealed record DevicePeerConfig(byte[] PublicKey, IPEndPoint? Endpoint, ImmutableArray<string> AllowedIps, int PersistentKeepalive)
{
    /// <inheritdoc cref="PeerSpec.HandshakeNotBefore"/>
    public DateTimeOffset? HandshakeNotBefore { get; init; }

    public string Key => Convert.ToBase64String(PublicKey);
}

/// <summary>What a device reported.</summary>
/// <param name="PrivateKey">null when none is set (the kernel dump and UAPI omit it then).</param>
/// <param name="PublicKey">null when no private key is set.</param>
internal sealed record DeviceState(byte[]? PrivateKey, byte[]? PublicKey, int ListenPort, int FirewallMark, ImmutableList<DevicePeerState> Peers)
{
    public static readonly DeviceState Empty = new(null, null, 0, 0, []);
}

internal sealed record DevicePeerState(
    byte[] PublicKey,
    string? Endpoint,
    DateTimeOffset? LastHandshake,
    ulong RxBytes,
    ulong TxBytes,
    int PersistentKeepalive,
    ImmutableArray<string> AllowedIps)
{
    public string Key => Convert.ToBase64String(PublicKey);

    public PeerReading ToReading() => new(PublicKey, Endpoint, LastHandshake, RxBytes, TxBytes, AllowedIps);
}

/// <summary>A change to one existing peer: only what differs is set (null: unchanged).</summary>
internal sealed record PeerUpdate(byte[] PublicKey, IPEndPoint? Endpoint, int? PersistentKeepalive, ImmutableArray<string>? AllowedIps)
{
    public string Key => Convert.ToBase64String(PublicKey);
}

/// <summary>
/// The difference between a device and its desired config, peer by peer: a peer that is unchanged is not in it at all
/// (re-setting a peer wholesale — replace_peers — would drop its session and handshake).
/// </summary>
internal sealed record DeviceChange(
    byte[]? PrivateKey,
    int? ListenPort,
    int? FirewallMark,
    ImmutableList<byte[]> RemovedPeers,
    ImmutableList<DevicePeerConfig> AddedPeers,
    ImmutableList<PeerUpdate> ChangedPeers)
{
    public static readonly DeviceChange None = new(null, null, null, [], [], []);

    /// <summary>Peers removed and added anew with their whole config (a new endpoint for a peer without a live session).</summary>
    public ImmutableList<DevicePeerConfig> RestartedPeers { get; init; } = [];

    public bool IsEmpty =>
        PrivateKey is null && ListenPort is null && FirewallMark is null && RemovedPeers.IsEmpty && AddedPeers.IsEmpty && ChangedPeers.IsEmpty
        && RestartedPeers.IsEmpty;

    /// <summary>For logs and errors: what changes, never a private key.</summary>
    public override string ToString()
    {
        if (IsEmpty)
            return "no change";
        var parts = new List<string>();
        if (PrivateKey is not null)
            parts.Add("private key");
        if (ListenPort is { } port)
            parts.Add($"listen port {port}");
        if (FirewallMark is { } mark)
            parts.Add(mark == 0 ? "fwmark off" : $"fwmark {mark}");
        parts.AddRange(RemovedPeers.Select(p => $"peer {Short(p)} removed"));
        parts.AddRange(AddedPeers.Select(p => $"peer {Short(p.PublicKey)} added"));
        parts.AddRange(RestartedPeers.Select(p => $"peer {Short(p.PublicKey)} restarted on endpoint {p.Endpoint} (no live session)"));
        foreach (var p in ChangedPeers)
        {
            var what = new StringBuilder();
            if (p.Endpoint is not null)
                what.Append(" endpoint ").Append(p.Endpoint);
            if (p.PersistentKeepalive is { } keepalive)
                what.Append(" keepalive ").Append(keepalive);
            if (p.AllowedIps is { } ips)
                what.Append(" allowed-ips ").Append(string.Join(',', ips));
            parts.Add($"peer {Short(p.PublicKey)} changed:{what}");
        }
        return string.Join("; ", parts);
    }

    internal static string Short(byte[] key) => Convert.ToBase64String(key)[..8] + "…";
}
