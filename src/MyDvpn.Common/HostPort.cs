using System.Net;

namespace MyDvpn.Common;

/// <summary>A <c>HOST:PORT</c> pair as given on the command line (IPv6 hosts in brackets).</summary>
public sealed record HostPort(string Host, int Port)
{
    public override string ToString() => Host.Contains(':') ? $"[{Host}]:{Port}" : $"{Host}:{Port}";

    public static HostPort Parse(string? value, string setting)
    {
        if (string.IsNullOrWhiteSpace(value))
            throw new ConfigurationException(setting, "is required (HOST:PORT, e.g. 127.0.0.1:7000)");
        var text = value.Trim();
        var colon = text.LastIndexOf(':');
        if (colon <= 0 || colon == text.Length - 1)
            throw new ConfigurationException(setting, $"'{value}' is not HOST:PORT (e.g. 127.0.0.1:7000)");
        var host = text[..colon];
        if (host.StartsWith('['))
        {
            if (!host.EndsWith(']') || !IPAddress.TryParse(host[1..^1], out var bracketed) || bracketed.AddressFamily != System.Net.Sockets.AddressFamily.InterNetworkV6)
                throw new ConfigurationException(setting, $"'{value}' is not [IPv6]:PORT (e.g. [::1]:7000)");
            host = host[1..^1];
        }
        else if (host.Contains(':'))
        {
            throw new ConfigurationException(setting, $"'{value}': write an IPv6 host in brackets, e.g. [::1]:7000");
        }
        if (!int.TryParse(text[(colon + 1)..], System.Globalization.NumberStyles.None, null, out var port) || port is < 1 or > 65535)
            throw new ConfigurationException(setting, $"'{value}' has no valid port (1-65535)");
        if (Uri.CheckHostName(host) == UriHostNameType.Unknown)
            throw new ConfigurationException(setting, $"'{value}' has no valid host name or IP address");
        return new HostPort(host, port);
    }

    /// <summary>Parses a comma-separated list, as <c>--base</c> and <c>--supernode</c> take it.</summary>
    public static IReadOnlyList<HostPort> ParseList(IEnumerable<string>? values, string setting) =>
        (values ?? [])
            .SelectMany(v => v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            .Select(v => Parse(v, setting))
            .ToList();

    /// <summary>The address to bind: an IP as given, any other name resolved (localhost → loopback).</summary>
    public IPEndPoint ToBindEndPoint(string setting)
    {
        if (IPAddress.TryParse(Host, out var ip))
            return new IPEndPoint(ip, Port);
        try
        {
            var resolved = Dns.GetHostAddresses(Host);
            return new IPEndPoint(resolved.First(), Port);
        }
        catch (Exception ex) when (ex is System.Net.Sockets.SocketException or InvalidOperationException)
        {
            throw new ConfigurationException(setting, $"cannot resolve host '{Host}'", ex);
        }
    }
}
