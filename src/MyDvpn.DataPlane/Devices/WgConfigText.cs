using System.Collections.Immutable;
using System.Globalization;
using System.Text;
using MyDvpn.Common;
using MyDvpn.DataPlane.Os;

namespace MyDvpn.DataPlane.Devices;

/// <summary>wireguard-tools' texts: the config <c>wg setconf</c>/<c>wg syncconf</c> read, and <c>wg show NAME dump</c>.</summary>
internal static class WgConfigText
{
    /// <summary>The whole device config in wg(8)'s format. Every setting is written explicitly (FwMark and
    /// PersistentKeepalive as <c>off</c> when unset), since <c>wg syncconf</c> leaves settings it is not given alone.</summary>
    /// <param name="keeping">
    /// Peers the device holds that the config drops, listed first with their public key only, so that <c>wg syncconf</c>
    /// keeps them as they are (it removes a peer only when the config does not name it).
    /// </param>
    public static string Format(DeviceConfig config, IEnumerable<byte[]>? keeping = null)
    {
        var text = new StringBuilder("[Interface]\n");
        text.Append("PrivateKey = ").Append(Convert.ToBase64String(config.PrivateKey)).Append('\n');
        if (config.ListenPort != 0)
            text.Append("ListenPort = ").Append(config.ListenPort.ToString(CultureInfo.InvariantCulture)).Append('\n');
        text.Append("FwMark = ").Append(config.FirewallMark == 0 ? "off" : config.FirewallMark.ToString(CultureInfo.InvariantCulture)).Append('\n');
        foreach (var kept in keeping ?? [])
            text.Append("\n[Peer]\nPublicKey = ").Append(Convert.ToBase64String(kept)).Append('\n');
        foreach (var peer in config.Peers)
        {
            text.Append("\n[Peer]\n");
            text.Append("PublicKey = ").Append(Convert.ToBase64String(peer.PublicKey)).Append('\n');
            if (peer.Endpoint is not null)
                text.Append("Endpoint = ").Append(peer.Endpoint).Append('\n');
            if (peer.AllowedIps.Length > 0)
                text.Append("AllowedIPs = ").Append(string.Join(", ", peer.AllowedIps)).Append('\n');
            text.Append("PersistentKeepalive = ")
                .Append(peer.PersistentKeepalive == 0 ? "off" : peer.PersistentKeepalive.ToString(CultureInfo.InvariantCulture)).Append('\n');
        }
        return text.ToString();
    }

    /// <summary>Parses <c>wg show NAME dump</c>: the interface line (private key, public key, port, fwmark), then one
    /// line per peer (public key, preshared key, endpoint, allowed ips, latest handshake, rx, tx, keepalive), tab-separated.</summary>
    public static DeviceState ParseDump(string dump)
    {
        var lines = dump.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (lines.Length == 0)
            throw new FormatException("`wg show dump` printed nothing");
        var head = Fields(lines[0], 4);
        var privateKey = Key(head[0]);
        var publicKey = Key(head[1]);
        var port = int.Parse(head[2], CultureInfo.InvariantCulture);
        var mark = Mark(head[3]);

        var peers = ImmutableList.CreateBuilder<DevicePeerState>();
        foreach (var line in lines.Skip(1))
        {
            var f = Fields(line, 8);
            var handshake = long.Parse(f[4], CultureInfo.InvariantCulture);
            peers.Add(new DevicePeerState(
                Key(f[0]) ?? throw new FormatException($"`wg show dump` peer line without a public key: {line}"),
                f[2] == "(none)" ? null : f[2],
                handshake == 0 ? null : DateTimeOffset.FromUnixTimeSeconds(handshake),
                ulong.Parse(f[5], CultureInfo.InvariantCulture),
                ulong.Parse(f[6], CultureInfo.InvariantCulture),
                f[7] == "off" ? 0 : int.Parse(f[7], CultureInfo.InvariantCulture),
                f[3] == "(none)" ? [] : [.. f[3].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(Cidr.NormalizeNetwork)]));
        }
        return new DeviceState(privateKey, publicKey, port, mark, peers.ToImmutable());
    }

    private static string[] Fields(string line, int count)
    {
        var fields = line.Split('\t');
        return fields.Length == count ? fields : throw new FormatException($"`wg show dump` line has {fields.Length} fields, not {count}: {line}");
    }

    private static byte[]? Key(string field) => field == "(none)" ? null : Convert.FromBase64String(field);

    private static int Mark(string field) =>
        field == "off" ? 0
        : field.StartsWith("0x", StringComparison.OrdinalIgnoreCase) ? (int)uint.Parse(field[2..], NumberStyles.HexNumber, CultureInfo.InvariantCulture)
        : (int)uint.Parse(field, CultureInfo.InvariantCulture);
}
