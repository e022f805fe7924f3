using System.Net;
using MyDvpn.Common;

namespace MyDvpn.SuperNode.Exits;

/// <summary>
/// Where the region points clients (and relay legs) at an exit, from what the exit claims in its SetupExit answer
/// (<c>SetupExitResult.endpoint</c>, the agent's <c>--public-endpoint</c>) and what the SuperNode saw itself: an exit must
/// not aim its clients' WireGuard at an address of its choosing (a reflector at someone else's host). In order:
/// <list type="number">
/// <item>the endpoint the operator configured for this exit (<see cref="ExitSettings.TrustedEndpoints"/>), whatever it claims;</item>
/// <item>its claim, if the claim is an IP literal equal to the address its control stream comes from (any port: a NAT may forward another one);</item>
/// <item>its claim, if the claimed IP lies in <see cref="ExitSettings.TrustedEndpointNetworks"/> (exits whose streams reach the
/// region from another address than their WireGuard, e.g. through a load balancer);</item>
/// <item>otherwise the stream's address with the exit's WireGuard port — and a claim that was not taken is said why (a
/// host name counts as not verified: it is never resolved here).</item>
/// </list>
/// </summary>
public static class ExitEndpoints
{
    /// <param name="Endpoint">Where clients reach the exit; null: nowhere known (no claim taken and no stream address or port).</param>
    /// <param name="RefusedClaim">Why the exit's own claim was not used; null when it was, or it made none.</param>
    public sealed record Choice(string? Endpoint, string? RefusedClaim);

    /// <param name="claimed">The exit's claim, HOST:PORT; empty: none.</param>
    /// <param name="listenPort">The exit's WireGuard port (0: not given).</param>
    /// <param name="streamAddress">The address the exit's control stream comes from; empty: not known.</param>
    public static Choice Choose(string exitPeerId, string claimed, uint listenPort, string streamAddress, ExitSettings settings)
    {
        if (settings.TrustedEndpoints.TryGetValue(exitPeerId, out var configured))
            return new Choice(configured, null);

        var seen = IPAddress.TryParse(streamAddress, out var address) ? Plain(address) : null;
        var fallback = seen is not null && listenPort is > 0 and <= 65535 ? new IPEndPoint(seen, (int)listenPort).ToString() : null;
        if (string.IsNullOrEmpty(claimed))
            return new Choice(fallback, null);

        if (!IPEndPoint.TryParse(claimed, out var claim) || claim.Port == 0)
            return new Choice(fallback, $"'{claimed}' is not an IP:port the SuperNode can check (a host name is never taken unless configured)");
        var claimedIp = Plain(claim.Address);
        if (seen is not null && claimedIp.Equals(seen))
            return new Choice(new IPEndPoint(claimedIp, claim.Port).ToString(), null);
        if (settings.TrustedEndpointNetworks.Any(network => Cidr.Parse(network).Contains(new Cidr(claimedIp, claimedIp.GetAddressBytes().Length * 8))))
            return new Choice(new IPEndPoint(claimedIp, claim.Port).ToString(), null);
        return new Choice(fallback,
            seen is null
                ? $"its stream's address is not known, so '{claimed}' cannot be checked"
                : $"'{claimed}' is not on the address its control stream comes from ({seen}) nor in Super:Exits:TrustedEndpointNetworks");
    }

    /// <summary>An IPv4-mapped IPv6 address as the IPv4 address it is.</summary>
    private static IPAddress Plain(IPAddress address) => address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address;
}
