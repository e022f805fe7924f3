using System.Text.RegularExpressions;
using MyDvpn.Common;
using MyDvpn.DataPlane.Os;

namespace MyDvpn.DataPlane.Reconciliation;

/// <summary>Checks a desired state before anything on the host is touched.</summary>
internal static partial class SpecValidation
{
    private const int KeyLength = 32;

    [GeneratedRegex("^[A-Za-z0-9_.-]{1,15}$")]
    private static partial Regex InterfaceNamePattern();

    public static bool IsInterfaceName(string? name) => name is not null && name is not ("." or "..") && InterfaceNamePattern().IsMatch(name);

    /// <summary>What is wrong with <paramref name="spec"/> (every problem, joined), or null.</summary>
    public static string? Problem(InterfaceSpec spec)
    {
        var problems = new List<string>();
        if (!IsInterfaceName(spec.Name))
            problems.Add($"interface name '{spec.Name}' must be 1-15 letters, digits, '_', '.' or '-'");
        if (spec.PrivateKey is not { Length: KeyLength })
            problems.Add($"the private key must be {KeyLength} bytes");
        if (spec.ListenPort is < 0 or > 65535)
            problems.Add($"listen port {spec.ListenPort} is outside 0-65535");
        if (spec.Mtu is < 576 or > 65535)
            problems.Add($"MTU {spec.Mtu} is outside 576-65535");
        foreach (var address in spec.Addresses.IsDefault ? [] : spec.Addresses)
        {
            if (!Cidr.TryParse(address, out _))
                problems.Add($"address '{address}' is not an IP address or CIDR");
        }

        var keys = new HashSet<string>(StringComparer.Ordinal);
        foreach (var peer in spec.Peers ?? [])
        {
            if (peer.PublicKey is not { Length: KeyLength })
            {
                problems.Add($"a peer's public key must be {KeyLength} bytes");
                continue;
            }
            var key = Convert.ToBase64String(peer.PublicKey);
            if (!keys.Add(key))
                problems.Add($"peer {key} is listed twice");
            if (peer.Endpoint is not null && !Endpoints.TryParse(peer.Endpoint, out _, out _))
                problems.Add($"peer {key}: endpoint '{peer.Endpoint}' is not host:port or [v6]:port");
            foreach (var ip in peer.AllowedIps.IsDefault ? [] : peer.AllowedIps)
            {
                if (!Cidr.TryParse(ip, out _))
                    problems.Add($"peer {key}: allowed IP '{ip}' is not a CIDR");
            }
            if (peer.PersistentKeepalive is < 0 or > 65535)
                problems.Add($"peer {key}: persistent keepalive {peer.PersistentKeepalive} is outside 0-65535");
        }

        if (spec.FullTunnel is { } tunnel)
        {
            if (tunnel.Table is <= 0 or 253 or 254 or 255)
                problems.Add($"full tunnel table {tunnel.Table} must be positive and not default (253), main (254) or local (255)");
            if (tunnel.FirewallMark <= 0)
                problems.Add($"full tunnel firewall mark {tunnel.FirewallMark} must be positive");
        }
        if (spec.ExitNat is { } nat)
        {
            if (nat.SourceSubnets.IsDefaultOrEmpty)
                problems.Add("exit NAT needs at least one source subnet");
            foreach (var subnet in nat.SourceSubnets.IsDefault ? [] : nat.SourceSubnets)
            {
                if (!Cidr.TryParse(subnet, out _))
                    problems.Add($"exit NAT source subnet '{subnet}' is not a CIDR");
            }
            if (nat.Uplink is not null && !IsInterfaceName(nat.Uplink))
                problems.Add($"exit NAT uplink '{nat.Uplink}' is not an interface name");
            if (nat.Uplink == spec.Name)
                problems.Add("exit NAT uplink cannot be the WireGuard interface itself");
        }
        return problems.Count == 0 ? null : string.Join("; ", problems);
    }
}
