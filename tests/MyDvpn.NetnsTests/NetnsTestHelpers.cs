using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using MyDvpn.HostOs;
using MyDvpn.Testbed;

namespace MyDvpn.NetnsTests;

/// <summary>Bounds and helpers the netns tests share. Every wait is bounded; nothing sleeps a fixed time.</summary>
internal static class NetnsTestHelpers
{
    /// <summary>For one network round trip or one condition to come true.</summary>
    public static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    /// <summary>For a whole test, creation and teardown of its testbeds included.</summary>
    public static CancellationTokenSource TestBound() => new(TimeSpan.FromSeconds(120));

    public static async Task<NetnsTestbed> CreateTestbedAsync()
    {
        using var bound = TestBound();
        return await NetnsTestbed.CreateAsync(bound.Token);
    }

    /// <summary>The names <c>ip netns list</c> prints.</summary>
    public static async Task<IReadOnlyList<string>> ListNamespacesAsync()
    {
        var output = await HostCommand.Host.RunCheckedAsync("ip", ["netns", "list"]);
        return [.. output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(line => line.Split(' ')[0])];
    }

    /// <summary>The pids <c>ip netns pids</c> prints for a namespace.</summary>
    public static async Task<IReadOnlyList<int>> PidsInAsync(string networkNamespace)
    {
        var output = await HostCommand.Host.RunCheckedAsync("ip", ["netns", "pids", networkNamespace]);
        return [.. output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse)];
    }

    /// <summary>Polls <paramref name="condition"/> until it holds; fails the test after <see cref="Bound"/>.</summary>
    public static async Task EventuallyAsync(Func<Task<bool>> condition, string what)
    {
        var elapsed = Stopwatch.StartNew();
        while (!await condition())
        {
            if (elapsed.Elapsed > Bound)
                Assert.Fail($"{what}: not within {Bound.TotalSeconds:0} s");
            await Task.Delay(TimeSpan.FromMilliseconds(20));
        }
    }

    public static async Task SendAsync(Socket socket, string payload, IPEndPoint to) =>
        await socket.SendToAsync(Encoding.UTF8.GetBytes(payload), SocketFlags.None, to);

    /// <summary>The next datagram on <paramref name="socket"/>; fails the test when none comes within <see cref="Bound"/>.</summary>
    public static async Task<(string Payload, IPEndPoint From)> ReceiveAsync(Socket socket, string what)
    {
        var buffer = new byte[2048];
        using var bound = new CancellationTokenSource(Bound);
        try
        {
            var received = await socket.ReceiveFromAsync(buffer, SocketFlags.None, new IPEndPoint(IPAddress.Any, 0), bound.Token);
            return (Encoding.UTF8.GetString(buffer, 0, received.ReceivedBytes), (IPEndPoint)received.RemoteEndPoint);
        }
        catch (OperationCanceledException)
        {
            Assert.Fail($"{what}: no datagram within {Bound.TotalSeconds:0} s");
            throw;
        }
    }
}
