using System.Net;
using System.Net.Sockets;
using System.Text;

namespace MyDvpn.SuperNode.Tests.Relay;

/// <summary>A peer's WireGuard, as far as a relay sees it: a UDP socket on loopback.</summary>
internal sealed class UdpPeer : IDisposable
{
    public static readonly TimeSpan Patience = TimeSpan.FromSeconds(5);

    private readonly Socket socket;

    public UdpPeer(IPAddress? address = null)
    {
        socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        socket.Bind(new IPEndPoint(address ?? IPAddress.Loopback, 0));
        Endpoint = (IPEndPoint)socket.LocalEndPoint!;
    }

    public IPEndPoint Endpoint { get; }

    /// <summary>Bytes received and not read yet (loopback delivers a datagram within the sender's call).</summary>
    public int Pending => socket.Available;

    /// <summary>Datagrams sent so far.</summary>
    public int Sent { get; private set; }

    public async Task SendAsync(byte[] datagram, IPEndPoint to)
    {
        await socket.SendToAsync(datagram, SocketFlags.None, to);
        Sent++;
    }

    public Task SendAsync(string text, IPEndPoint to) => SendAsync(Encoding.UTF8.GetBytes(text), to);

    /// <summary>The next datagram and its source; fails the test if none comes within <see cref="Patience"/>.</summary>
    public async Task<(byte[] Datagram, IPEndPoint From)> ReceiveAsync()
    {
        var buffer = new byte[65536];
        using var timeout = new CancellationTokenSource(Patience);
        try
        {
            var result = await socket.ReceiveFromAsync(buffer, SocketFlags.None, new IPEndPoint(IPAddress.Any, 0), timeout.Token);
            return (buffer[..result.ReceivedBytes], (IPEndPoint)result.RemoteEndPoint);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"{Endpoint} received nothing within {Patience}");
        }
    }

    public async Task<string> ReceiveTextAsync(IPEndPoint expectedFrom)
    {
        var (datagram, from) = await ReceiveAsync();
        Assert.Equal(expectedFrom, from);
        return Encoding.UTF8.GetString(datagram);
    }

    public void Dispose() => socket.Dispose();
}

internal static class RelayTestPorts
{
    private const int First = 20000, Last = 32000;
    private static readonly Lock Gate = new();
    // Below Linux's ephemeral range (32768-60999), so no port-0 socket takes them; spread by process in case two
    // test runs share the host.
    private static int next = First + Environment.ProcessId % 400 * 25;

    /// <summary><paramref name="count"/> consecutive ports that nothing on loopback holds right now.</summary>
    public static (int Low, int High) Range(int count)
    {
        lock (Gate)
        {
            while (true)
            {
                if (next + count > Last)
                    next = First;
                var low = next;
                next += count;
                if (Enumerable.Range(low, count).All(IsFree))
                    return (low, low + count - 1);
            }
        }
    }

    public static bool IsFree(int port)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        try
        {
            socket.Bind(new IPEndPoint(IPAddress.Loopback, port));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    /// <summary>Polls <paramref name="condition"/> until it holds, for at most <see cref="UdpPeer.Patience"/>.</summary>
    public static async Task EventuallyAsync(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + UdpPeer.Patience;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
                Assert.Fail($"Not within {UdpPeer.Patience}: {what}");
            await Task.Delay(10);
        }
    }
}
