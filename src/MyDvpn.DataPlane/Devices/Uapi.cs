using System.Collections.Immutable;
using System.Globalization;
using System.Text;
using MyDvpn.Common;
using MyDvpn.Security;

namespace MyDvpn.DataPlane.Devices;

/// <summary>The device answered a UAPI request with a non-zero <c>errno</c>.</summary>
internal sealed class UapiException(string operation, long errno, string device)
    : Exception($"WireGuard device {device} refused the UAPI {operation} request: errno={errno} ({Describe(errno)})")
{
    /// <summary>The errno the device answered (wireguard-go writes it negated, e.g. -22).</summary>
    public long Errno { get; } = errno;

    private static string Describe(long errno) => Math.Abs(errno) switch
    {
        1 => "EPERM",
        2 => "ENOENT: no such peer or device",
        5 => "EIO: the device could not apply it",
        22 => "EINVAL: invalid key or value",
        71 => "EPROTO: malformed request",
        95 => "EOPNOTSUPP",
        98 => "EADDRINUSE: the listen port is taken",
        99 => "EADDRNOTAVAIL",
        _ => "unknown error",
    };
}

/// <summary>
/// The text of WireGuard's cross-platform configuration protocol (wireguard.com/xplatform): <c>set=1</c> followed by
/// <c>key=value</c> lines (keys in hex) and a blank line, answered by <c>errno=N</c>; <c>get=1</c> answered by the same
/// keys, then <c>errno=N</c> and a blank line.
/// </summary>
internal static class UapiText
{
    public const string GetRequest = "get=1\n\n";

    /// <summary>The <c>set=1</c> request for a change: unchanged peers are not mentioned; changed ones carry
    /// <c>update_only=true</c> and only the keys that differ; removed ones <c>remove=true</c>, last. wireguard-go applies
    /// the lines in order and an allowed IP goes to the peer that is given it last, so a new peer takes over the allowed
    /// IPs of one it replaces (a client moving to another exit: 0.0.0.0/0) before that one is removed: no moment without
    /// a peer for them (make-before-break).</summary>
    public static string FormatSet(DeviceChange change)
    {
        var text = new StringBuilder("set=1\n");
        if (change.PrivateKey is { } privateKey)
            text.Append("private_key=").Append(Hex(privateKey)).Append('\n');
        if (change.ListenPort is { } port)
            text.Append("listen_port=").Append(port.ToString(CultureInfo.InvariantCulture)).Append('\n');
        if (change.FirewallMark is { } mark)
            text.Append("fwmark=").Append(mark.ToString(CultureInfo.InvariantCulture)).Append('\n');
        // A restarted peer is removed first, then added anew below like a new one.
        foreach (var peer in change.RestartedPeers)
            text.Append("public_key=").Append(Hex(peer.PublicKey)).Append("\nremove=true\n");
        foreach (var peer in change.RestartedPeers.Concat(change.AddedPeers))
        {
            text.Append("public_key=").Append(Hex(peer.PublicKey)).Append('\n');
            text.Append("protocol_version=1\n");
            if (peer.Endpoint is not null)
                text.Append("endpoint=").Append(peer.Endpoint).Append('\n');
            text.Append("persistent_keepalive_interval=").Append(peer.PersistentKeepalive.ToString(CultureInfo.InvariantCulture)).Append('\n');
            text.Append("replace_allowed_ips=true\n");
            foreach (var ip in peer.AllowedIps)
                text.Append("allowed_ip=").Append(ip).Append('\n');
        }
        foreach (var peer in change.ChangedPeers)
        {
            text.Append("public_key=").Append(Hex(peer.PublicKey)).Append("\nupdate_only=true\n");
            if (peer.Endpoint is not null)
                text.Append("endpoint=").Append(peer.Endpoint).Append('\n');
            if (peer.PersistentKeepalive is { } keepalive)
                text.Append("persistent_keepalive_interval=").Append(keepalive.ToString(CultureInfo.InvariantCulture)).Append('\n');
            if (peer.AllowedIps is { } ips)
            {
                text.Append("replace_allowed_ips=true\n");
                foreach (var ip in ips)
                    text.Append("allowed_ip=").Append(ip).Append('\n');
            }
        }
        foreach (var removed in change.RemovedPeers)
            text.Append("public_key=").Append(Hex(removed)).Append("\nremove=true\n");
        return text.Append('\n').ToString();
    }

    /// <summary>The errno of an answer (<c>errno=N</c> line); throws <see cref="FormatException"/> when there is none.</summary>
    public static long ParseErrno(string response)
    {
        foreach (var (key, value) in Lines(response))
        {
            if (key == "errno")
                return long.TryParse(value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var errno)
                    ? errno
                    : throw new FormatException($"UAPI answer has a malformed errno line: errno={value}");
        }
        throw new FormatException("UAPI answer has no errno line");
    }

    /// <summary>Parses a <c>get=1</c> answer.</summary>
    /// <exception cref="UapiException">The answer ends with a non-zero errno.</exception>
    public static DeviceState ParseGet(string response, string device)
    {
        var errno = ParseErrno(response);
        if (errno != 0)
            throw new UapiException("get", errno, device);

        byte[]? privateKey = null;
        var listenPort = 0;
        var mark = 0;
        var peers = ImmutableList.CreateBuilder<DevicePeerState>();
        PeerBuilder? peer = null;
        foreach (var (key, value) in Lines(response))
        {
            switch (key)
            {
                case "private_key" when peer is null:
                    privateKey = FromHex(value, key);
                    break;
                case "listen_port" when peer is null:
                    listenPort = int.Parse(value, CultureInfo.InvariantCulture);
                    break;
                case "fwmark" when peer is null:
                    mark = (int)uint.Parse(value, CultureInfo.InvariantCulture);
                    break;
                case "public_key":
                    if (peer is not null)
                        peers.Add(peer.Build());
                    peer = new PeerBuilder(FromHex(value, key));
                    break;
                case "endpoint" when peer is not null:
                    peer.Endpoint = value;
                    break;
                case "last_handshake_time_sec" when peer is not null:
                    peer.HandshakeSeconds = long.Parse(value, CultureInfo.InvariantCulture);
                    break;
                case "last_handshake_time_nsec" when peer is not null:
                    peer.HandshakeNanoseconds = long.Parse(value, CultureInfo.InvariantCulture);
                    break;
                case "rx_bytes" when peer is not null:
                    peer.Rx = ulong.Parse(value, CultureInfo.InvariantCulture);
                    break;
                case "tx_bytes" when peer is not null:
                    peer.Tx = ulong.Parse(value, CultureInfo.InvariantCulture);
                    break;
                case "persistent_keepalive_interval" when peer is not null:
                    peer.Keepalive = int.Parse(value, CultureInfo.InvariantCulture);
                    break;
                case "allowed_ip" when peer is not null:
                    peer.AllowedIps.Add(Cidr.NormalizeNetwork(value));
                    break;
                default:
                    // preshared_key, protocol_version, errno and keys of later versions: not needed.
                    break;
            }
        }
        if (peer is not null)
            peers.Add(peer.Build());
        var publicKey = privateKey is null ? null : WireGuardKey.FromPrivateKey(privateKey).PublicKey;
        return new DeviceState(privateKey, publicKey, listenPort, mark, peers.ToImmutable());
    }

    public static string Hex(byte[] key) => Convert.ToHexStringLower(key);

    private static byte[] FromHex(string value, string key)
    {
        if (value.Length != 64)
            throw new FormatException($"UAPI {key} is not 32 bytes of hex");
        return Convert.FromHexString(value);
    }

    private static IEnumerable<(string Key, string Value)> Lines(string response)
    {
        foreach (var raw in response.Split('\n'))
        {
            var line = raw.TrimEnd('\r');
            if (line.Length == 0)
                continue;
            var equals = line.IndexOf('=');
            if (equals <= 0)
                throw new FormatException($"UAPI line is not key=value: '{line}'");
            yield return (line[..equals], line[(equals + 1)..]);
        }
    }

    private sealed class PeerBuilder(byte[] publicKey)
    {
        public string? Endpoint;
        public long HandshakeSeconds;
        public long HandshakeNanoseconds;
        public ulong Rx;
        public ulong Tx;
        public int Keepalive;
        public readonly List<string> AllowedIps = [];

        public DevicePeerState Build() => new(
            publicKey,
            Endpoint,
            HandshakeSeconds == 0 && HandshakeNanoseconds == 0
                ? null
                : DateTimeOffset.FromUnixTimeSeconds(HandshakeSeconds).AddTicks(HandshakeNanoseconds / 100),
            Rx,
            Tx,
            Keepalive,
            [.. AllowedIps]);
    }
}
