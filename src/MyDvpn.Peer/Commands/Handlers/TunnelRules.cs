using System.Net;
using System.Net.Sockets;
using MyDvpn.Common;

namespace MyDvpn.Peer.Commands.Handlers;

/// <summary>
/// What a command may ask of this host's routing, beyond its syntax: the rules a SetupExit, RotatePeer or RelaySetup
/// must meet before the tunnel changes, each a pure function that answers null or the problem in words (for a
/// <c>COMMAND_ERROR_INVALID</c>). They follow what the SuperNode's <c>TunnelAddressing</c> hands out: an IPv4 exit subnet
/// of at most /30 cut from the region's pool, the exit as a host of it with the subnet's prefix, clients as host routes
/// (/32) in it, and the full tunnel (IPv4 only: the data plane routes no IPv6 default) through the exit.
/// </summary>
internal static class TunnelRules
{
    /// <summary>What a client sends through its exit: everything, and nothing else is accepted.</summary>
    public const string FullTunnel = "0.0.0.0/0";

    /// <summary>The longest exit subnet prefix: an exit and at least one client (TunnelAddressing's limit).</summary>
    public const int MaxSubnetPrefix = 30;

    /// <summary>
    /// The assignment's exit subnet (<paramref name="field"/>): an IPv4 network with its host bits clear, of prefix
    /// /1 … /30, clear of the reserved blocks (<see cref="ReservedAddresses"/>). Null and the subnet if all is well.
    /// </summary>
    public static string? SubnetProblem(string? value, string field, out Cidr subnet)
    {
        subnet = default;
        if (string.IsNullOrEmpty(value))
            return $"{field} is empty: the SuperNode must say which exit subnet the tunnel addresses lie in";
        if (!Cidr.IsValid(value, out var reason))
            return $"{field}: {reason}";
        var parsed = Cidr.Parse(value);
        if (!parsed.IsIPv4)
            return $"{field} '{value}' is not IPv4: tunnel subnets are cut from an IPv4 pool";
        if (parsed.IsDefault)
            return $"{field} '{value}' is the whole IPv4 address space, not an exit subnet";
        if (!parsed.Network().Equals(parsed))
            return $"{field} '{value}' has host bits set (the network is {parsed.Network()})";
        if (parsed.PrefixLength > MaxSubnetPrefix)
            return $"{field} '{value}' holds no exit and client: an exit subnet is at most /{MaxSubnetPrefix}";
        if (ReservedAddresses.Overlapped(parsed) is { } name)
            return $"{field} '{value}' overlaps {name}";
        subnet = parsed;
        return null;
    }

    /// <summary>A client's allowed IPs for its exit (<paramref name="field"/>): exactly the full tunnel, <see cref="FullTunnel"/>.</summary>
    public static string? ClientAllowedIpsProblem(IReadOnlyCollection<string> values, string field)
    {
        if (Cidr.ProblemIn(values, field) is { } problem)
            return problem;
        if (values.Count == 1 && values.First() == FullTunnel)
            return null;
        return $"{field} is [{string.Join(", ", values)}]; a client routes exactly the full tunnel through its exit: [{FullTunnel}]";
    }

    /// <summary>
    /// Host routes in <paramref name="subnet"/> (<paramref name="field"/>): a client's tunnel address as the client holds
    /// it, or as the exit routes it (its allowed IPs): at least one, each a /32 (a /128 is never inside an IPv4 subnet)
    /// and neither the subnet's network nor its broadcast address.
    /// </summary>
    public static string? HostRoutesProblem(IReadOnlyCollection<string> values, Cidr subnet, string field)
    {
        if (Cidr.ProblemIn(values, field) is { } problem)
            return problem;
        foreach (var value in values)
        {
            var cidr = Cidr.Parse(value);
            if (cidr.PrefixLength != cidr.MaxPrefix)
                return $"{field}: '{value}' is not a host route (/32 or /128)";
            if (!subnet.Contains(cidr))
                return $"{field}: '{value}' is outside the tunnel subnet {subnet}";
            if (IsNetworkOrBroadcast(cidr.Address, subnet))
                return $"{field}: '{value}' is the network or broadcast address of the tunnel subnet {subnet}";
        }
        return null;
    }

    /// <summary>
    /// An exit's own tunnel addresses (<paramref name="field"/>): each a host of <paramref name="subnet"/> with the
    /// subnet's prefix, which is the source network the exit masquerades — never <c>0.0.0.0/0</c> nor wider than the subnet.
    /// </summary>
    public static string? ExitAddressesProblem(IReadOnlyCollection<string> values, Cidr subnet, string field)
    {
        if (Cidr.ProblemIn(values, field) is { } problem)
            return problem;
        foreach (var value in values)
        {
            var cidr = Cidr.Parse(value);
            if (cidr.IsDefault)
                return $"{field}: '{value}' would masquerade {cidr.Network()} (everything) as a source";
            if (cidr.PrefixLength != subnet.PrefixLength || !subnet.Contains(cidr))
                return $"{field}: '{value}' is not an address of the tunnel subnet {subnet} with its prefix /{subnet.PrefixLength} (it would masquerade {cidr.Network()} as a source)";
            if (IsNetworkOrBroadcast(cidr.Address, subnet))
                return $"{field}: '{value}' is the network or broadcast address of the tunnel subnet {subnet}";
        }
        return null;
    }

    /// <summary>
    /// A WireGuard endpoint (<paramref name="field"/>), <c>HOST:PORT</c>: an IP must be a unicast address — not
    /// unspecified, loopback, multicast or broadcast; a name must not be localhost (it would be loopback too). Null and
    /// the endpoint if all is well.
    /// </summary>
    public static string? EndpointProblem(string? value, string field, out HostPort? endpoint)
    {
        endpoint = null;
        HostPort parsed;
        try
        {
            parsed = HostPort.Parse(value, field);
        }
        catch (ConfigurationException ex)
        {
            return ex.Message;
        }
        if (IPAddress.TryParse(parsed.Host, out var ip))
        {
            if (NotUnicast(ip) is { } what)
                return $"{field} '{value}' is {what}, not a unicast address a peer can be reached at";
        }
        else if (parsed.Host.Equals("localhost", StringComparison.OrdinalIgnoreCase)
                 || parsed.Host.EndsWith(".localhost", StringComparison.OrdinalIgnoreCase))
        {
            return $"{field} '{value}' names localhost, a loopback address, not one a peer can be reached at";
        }
        endpoint = parsed;
        return null;
    }

    /// <summary>What <paramref name="ip"/> is if it is no unicast address (an IPv4-mapped IPv6 address as its IPv4 one); null if it is.</summary>
    internal static string? NotUnicast(IPAddress ip)
    {
        if (ip.IsIPv4MappedToIPv6)
            ip = ip.MapToIPv4();
        if (ip.Equals(IPAddress.Any) || ip.Equals(IPAddress.IPv6Any))
            return "the unspecified address";
        if (IPAddress.IsLoopback(ip))
            return "a loopback address";
        if (ip.Equals(IPAddress.Broadcast))
            return "the broadcast address";
        if (ip.AddressFamily == AddressFamily.InterNetworkV6 ? ip.IsIPv6Multicast : (ip.GetAddressBytes()[0] & 0xF0) == 0xE0)
            return "a multicast address";
        return null;
    }

    private static bool IsNetworkOrBroadcast(IPAddress address, Cidr subnet)
    {
        if (address.Equals(subnet.Network().Address))
            return true;
        var bytes = address.GetAddressBytes();
        for (var bit = subnet.PrefixLength; bit < bytes.Length * 8; bit++)
        {
            if ((bytes[bit / 8] & (0x80 >> (bit % 8))) == 0)
                return false;
        }
        return true;
    }
}
