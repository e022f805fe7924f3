using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace MyDvpn.Peer.Tunnel;

/// <summary>
/// <c>ADDRESS/PREFIX</c> as WireGuard's allowed IPs and an interface's addresses take it: an IPv4 address in four
/// dotted parts or an IPv6 address, and a prefix length that fits it. Host bits may be set (<c>100.96.0.1/24</c> is an
/// interface address in its subnet).
/// </summary>
public static class Cidr
{
    public static bool IsValid(string? value, out string reason)
    {
        reason = "";
        var slash = value?.IndexOf('/') ?? -1;
        if (value is null || slash <= 0 || slash == value.Length - 1)
        {
            reason = $"'{value}' is not ADDRESS/PREFIX (e.g. 100.96.0.2/32)";
            return false;
        }
        var address = value[..slash];
        var isV6 = address.Contains(':');
        if (!isV6 && address.Count(c => c == '.') != 3)
        {
            reason = $"'{value}' has no IPv4 address in four dotted parts or IPv6 address";
            return false;
        }
        if (!IPAddress.TryParse(address, out var ip) || ip.AddressFamily != (isV6 ? AddressFamily.InterNetworkV6 : AddressFamily.InterNetwork) || (isV6 && ip.ScopeId != 0))
        {
            reason = $"'{value}' has no valid IP address";
            return false;
        }
        var bits = isV6 ? 128 : 32;
        if (!int.TryParse(value[(slash + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var prefix) || prefix > bits)
        {
            reason = $"'{value}' has no valid prefix length (0-{bits})";
            return false;
        }
        return true;
    }

    /// <summary>The first problem in <paramref name="values"/>, named as <paramref name="field"/>; null if all are valid and there is at least one.</summary>
    public static string? ProblemIn(IReadOnlyCollection<string> values, string field)
    {
        if (values.Count == 0)
            return $"{field} is empty";
        foreach (var value in values)
        {
            if (!IsValid(value, out var reason))
                return $"{field}: {reason}";
        }
        return null;
    }
}
