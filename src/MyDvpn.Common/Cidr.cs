using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace MyDvpn.Common;

/// <summary>
/// An address with a prefix length: an interface address (host bits kept) or a network (host bits zero).
/// <para>
/// Two ways to read one. <see cref="IsValid"/> and <see cref="ProblemIn"/> check <c>ADDRESS/PREFIX</c> as WireGuard's
/// allowed IPs and an interface's addresses take it from a command, strictly, and say what is wrong: an IPv4 address in
/// four dotted parts or an IPv6 address (no scope), and a prefix length that fits it; host bits may be set
/// (<c>100.96.0.1/24</c> is an interface address in its subnet). <see cref="TryParse"/> and <see cref="Parse"/> read what
/// the host prints and what the data plane was given: a bare address is a host (/32 or /128), <c>default</c> as ip
/// prints it.
/// </para>
/// </summary>
public readonly record struct Cidr(IPAddress Address, int PrefixLength)
{
    public bool IsIPv4 => Address.AddressFamily == AddressFamily.InterNetwork;

    public int MaxPrefix => IsIPv4 ? 32 : 128;

    /// <summary>0.0.0.0/0 or ::/0.</summary>
    public bool IsDefault => PrefixLength == 0;

    /// <summary>Whether <paramref name="value"/> is <c>ADDRESS/PREFIX</c> as a command must carry it; if not, why.</summary>
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

    /// <summary>Parses <c>ADDR/LEN</c> or a bare address (a host: /32 or /128); also <c>default</c> as ip prints it.</summary>
    public static bool TryParse(string? text, out Cidr cidr, bool defaultIsIPv6 = false)
    {
        cidr = default;
        if (string.IsNullOrWhiteSpace(text))
            return false;
        text = text.Trim();
        if (text == "default")
        {
            cidr = defaultIsIPv6 ? new Cidr(IPAddress.IPv6Any, 0) : new Cidr(IPAddress.Any, 0);
            return true;
        }
        var slash = text.IndexOf('/');
        var addressText = slash < 0 ? text : text[..slash];
        if (!IPAddress.TryParse(addressText, out var address))
            return false;
        if (address.AddressFamily is not (AddressFamily.InterNetwork or AddressFamily.InterNetworkV6))
            return false;
        var max = address.AddressFamily == AddressFamily.InterNetwork ? 32 : 128;
        var prefix = max;
        if (slash >= 0 && (!int.TryParse(text.AsSpan(slash + 1), NumberStyles.None, null, out prefix) || prefix > max))
            return false;
        cidr = new Cidr(address, prefix);
        return true;
    }

    public static Cidr Parse(string text) =>
        TryParse(text, out var cidr) ? cidr : throw new FormatException($"'{text}' is not an IP address or CIDR");

    /// <summary>The network this address lies in (host bits cleared).</summary>
    public Cidr Network()
    {
        var bytes = Address.GetAddressBytes();
        for (var bit = PrefixLength; bit < bytes.Length * 8; bit++)
            bytes[bit / 8] &= (byte)~(0x80 >> (bit % 8));
        return new Cidr(new IPAddress(bytes), PrefixLength);
    }

    /// <summary>Whether <paramref name="other"/> lies entirely inside this network.</summary>
    public bool Contains(Cidr other)
    {
        if (other.Address.AddressFamily != Address.AddressFamily || other.PrefixLength < PrefixLength)
            return false;
        return new Cidr(other.Address, PrefixLength).Network().Address.Equals(Network().Address);
    }

    public override string ToString() => $"{Address}/{PrefixLength}";

    /// <summary>The canonical text of a network (<c>10.0.0.0/24</c> for <c>10.0.0.7/24</c>), for allowed IPs and routes.</summary>
    public static string NormalizeNetwork(string text) => Parse(text).Network().ToString();

    /// <summary>The canonical text of an interface address (host bits kept, prefix always written).</summary>
    public static string NormalizeAddress(string text) => Parse(text).ToString();
}
