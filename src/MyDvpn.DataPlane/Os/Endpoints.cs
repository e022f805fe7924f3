using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace MyDvpn.DataPlane.Os;

/// <summary>WireGuard endpoints: <c>host:port</c>, <c>1.2.3.4:port</c> or <c>[v6]:port</c>.</summary>
internal static class Endpoints
{
    public static bool TryParse(string? text, out string host, out int port)
    {
        host = "";
        port = 0;
        if (string.IsNullOrWhiteSpace(text))
            return false;
        text = text.Trim();
        var colon = text.LastIndexOf(':');
        if (colon <= 0 || colon == text.Length - 1)
            return false;
        if (!int.TryParse(text.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out port) || port is < 1 or > 65535)
            return false;
        host = text[..colon];
        if (host.StartsWith('['))
        {
            if (!host.EndsWith(']'))
                return false;
            host = host[1..^1];
            return IPAddress.TryParse(host, out var v6) && v6.AddressFamily == AddressFamily.InterNetworkV6;
        }
        // An unbracketed host with a colon is an IPv6 address without brackets: ambiguous, refused.
        return host.Length > 0 && !host.Contains(':');
    }

    /// <summary>The endpoint as WireGuard writes it (<c>1.2.3.4:51820</c>, <c>[fd00::1]:51820</c>).</summary>
    public static string Format(IPEndPoint endpoint) => endpoint.ToString();

    /// <summary>Resolves a host name (an IPv4 address preferred); an IP literal is returned as is.</summary>
    /// <exception cref="FormatException">Not <c>host:port</c>.</exception>
    /// <exception cref="SocketException">The name does not resolve.</exception>
    public static async Task<IPEndPoint> ResolveAsync(string text, CancellationToken cancellationToken)
    {
        if (!TryParse(text, out var host, out var port))
            throw new FormatException($"endpoint '{text}' is not host:port or [v6]:port");
        if (IPAddress.TryParse(host, out var literal))
            return new IPEndPoint(literal, port);
        var addresses = await Dns.GetHostAddressesAsync(host, cancellationToken);
        var chosen = addresses.FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork)
            ?? addresses.FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetworkV6)
            ?? throw new SocketException((int)SocketError.HostNotFound);
        return new IPEndPoint(chosen, port);
    }
}
