using System.Net.Sockets;
using System.Text;

namespace MyDvpn.DataPlane.Devices;

/// <summary>
/// A client of one device's UAPI socket (<c>/var/run/wireguard/NAME.sock</c>, a stream-mode Unix socket): one
/// connection per request, the answer read up to its terminating blank line. The socket lives in the file system, so
/// it is reachable whatever network namespace the device runs in.
/// </summary>
internal sealed class UapiClient(string socketPath, string device)
{
    private const int MaxAnswer = 1 << 22;

    public string SocketPath { get; } = socketPath;

    public async Task<DeviceState> GetAsync(CancellationToken cancellationToken) =>
        UapiText.ParseGet(await ExchangeAsync(UapiText.GetRequest, cancellationToken), device);

    /// <exception cref="UapiException">The device refused the change (wireguard-go may have applied the keys before the
    /// one it refused: the caller re-reads).</exception>
    public async Task SetAsync(DeviceChange change, CancellationToken cancellationToken)
    {
        if (change.IsEmpty)
            return;
        var errno = UapiText.ParseErrno(await ExchangeAsync(UapiText.FormatSet(change), cancellationToken));
        if (errno != 0)
            throw new UapiException("set", errno, device);
    }

    /// <summary>Whether something accepts connections on the socket.</summary>
    public async Task<bool> IsListeningAsync(CancellationToken cancellationToken)
    {
        if (!File.Exists(SocketPath))
            return false;
        try
        {
            using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(SocketPath), cancellationToken);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    private async Task<string> ExchangeAsync(string request, CancellationToken cancellationToken)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(SocketPath), cancellationToken);
        }
        catch (SocketException e)
        {
            throw new IOException($"cannot connect to the UAPI socket {SocketPath} of {device}: {e.Message}", e);
        }
        await socket.SendAsync(Encoding.ASCII.GetBytes(request), SocketFlags.None, cancellationToken);

        var answer = new StringBuilder();
        var buffer = new byte[8192];
        while (true)
        {
            var read = await socket.ReceiveAsync(buffer, SocketFlags.None, cancellationToken);
            if (read == 0)
                break;
            answer.Append(Encoding.ASCII.GetString(buffer, 0, read));
            if (answer.Length > MaxAnswer)
                throw new IOException($"UAPI answer of {device} exceeds {MaxAnswer} bytes");
            // Every answer ends with "errno=N\n\n"; a get answer has no blank line before that.
            if (answer.Length >= 2 && answer[^1] == '\n' && answer[^2] == '\n')
                break;
        }
        var text = answer.ToString();
        if (!text.Contains("errno=", StringComparison.Ordinal))
            throw new IOException($"UAPI socket of {device} closed without an answer");
        return text;
    }
}
