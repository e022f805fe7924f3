using System.Net;
using System.Net.Sockets;

namespace MyDvpn.DataPlane.Os;

/// <summary>An address with a prefix length: an interface address (host bits kept) or a network (host bits zero).</summary>
internal readonly record struct Cidr(IPAddress Address, int PrefixLength)
{
    public bool IsIPv4 => Address.AddressFamily == AddressFamily.InterNetwork;

    public int MaxPrefix => IsIPv4 ? 32 : 128;

    /// <summary>0.0.0.0/0 or ::/0.</summary>
    public bool IsDefault => PrefixLength == 0;

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
        if (slash >= 0 && (!int.TryParse(text.AsSpan(slash + 1), System.Globalization.NumberStyles.None, null, out prefix) || prefix > max))
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
