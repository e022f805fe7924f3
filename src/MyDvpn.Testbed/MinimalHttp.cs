using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace MyDvpn.Testbed;

/// <summary>One HTTP/1.1 GET over a given socket (made in a namespace): <c>Connection: close</c>, read to the end.</summary>
internal static class MinimalHttp
{
    private const int MaxResponseBytes = 1024 * 1024;

    public sealed record Response(int Status, string StatusLine, string Body);

    /// <summary>The URL's host must be an IP address: there is no name resolution inside a testbed.</summary>
    public static (IPEndPoint Endpoint, Uri Uri) Target(string url)
    {
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || uri.Scheme != Uri.UriSchemeHttp)
            throw new ArgumentException($"'{url}' is not an http:// URL", nameof(url));
        if (!IPAddress.TryParse(uri.Host, out var address))
            throw new ArgumentException($"'{url}' must name an IP address: there is no name resolution in a testbed", nameof(url));
        return (new IPEndPoint(address, uri.Port), uri);
    }

    public static async Task<Response> GetAsync(Socket socket, IPEndPoint endpoint, Uri uri, CancellationToken cancellationToken)
    {
        await socket.ConnectAsync(endpoint, cancellationToken);
        var request = $"GET {uri.PathAndQuery} HTTP/1.1\r\nHost: {uri.Authority}\r\nUser-Agent: mydvpn-testbed\r\nAccept: */*\r\nConnection: close\r\n\r\n";
        await socket.SendAsync(Encoding.ASCII.GetBytes(request), SocketFlags.None, cancellationToken);

        using var received = new MemoryStream();
        var buffer = new byte[8192];
        while (true)
        {
            var read = await socket.ReceiveAsync(buffer, SocketFlags.None, cancellationToken);
            if (read == 0)
                break;
            received.Write(buffer, 0, read);
            if (received.Length > MaxResponseBytes)
                throw new InvalidDataException($"the response is larger than {MaxResponseBytes} bytes");
        }
        return Parse(received.ToArray());
    }

    public static Response Parse(byte[] raw)
    {
        var headEnd = raw.AsSpan().IndexOf("\r\n\r\n"u8);
        if (headEnd < 0)
            throw new InvalidDataException($"no complete HTTP response head in {raw.Length} bytes");
        var head = Encoding.ASCII.GetString(raw, 0, headEnd).Split("\r\n");
        var statusParts = head[0].Split(' ', 3);
        if (statusParts.Length < 2 || !statusParts[0].StartsWith("HTTP/", StringComparison.Ordinal)
            || !int.TryParse(statusParts[1], CultureInfo.InvariantCulture, out var status))
            throw new InvalidDataException($"not an HTTP status line: {head[0]}");

        var headers = head.Skip(1)
            .Select(line => line.Split(':', 2))
            .Where(parts => parts.Length == 2)
            .ToLookup(parts => parts[0].Trim(), parts => parts[1].Trim(), StringComparer.OrdinalIgnoreCase);
        var body = raw.AsSpan(headEnd + 4);
        if (headers["Transfer-Encoding"].Any(value => value.Contains("chunked", StringComparison.OrdinalIgnoreCase)))
            body = Unchunk(body);
        else if (headers["Content-Length"].FirstOrDefault() is { } lengthText
                 && int.TryParse(lengthText, CultureInfo.InvariantCulture, out var length) && length <= body.Length)
            body = body[..length];
        return new Response(status, head[0], Encoding.UTF8.GetString(body));
    }

    private static byte[] Unchunk(ReadOnlySpan<byte> chunked)
    {
        var output = new MemoryStream();
        while (true)
        {
            var lineEnd = chunked.IndexOf("\r\n"u8);
            if (lineEnd < 0)
                throw new InvalidDataException("truncated chunked body");
            var sizeText = Encoding.ASCII.GetString(chunked[..lineEnd]).Split(';')[0].Trim();
            if (!int.TryParse(sizeText, NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var size) || size < 0)
                throw new InvalidDataException($"bad chunk size '{sizeText}'");
            if (size == 0)
                return output.ToArray();
            chunked = chunked[(lineEnd + 2)..];
            if (chunked.Length < size + 2)
                throw new InvalidDataException("truncated chunk");
            output.Write(chunked[..size]);
            chunked = chunked[(size + 2)..];
        }
    }
}
