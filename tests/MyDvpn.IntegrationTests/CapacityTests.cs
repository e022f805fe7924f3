using System.Globalization;
using System.Net.Sockets;
using System.Text.Json;
using Grpc.Core;
using MyDvpn.Cli.Demo;
using MyDvpn.Protocol.Control;
using MyDvpn.Security;
using Xunit.Abstractions;

namespace MyDvpn.IntegrationTests;

/// <summary>
/// A SuperNode started under a low descriptor limit (<c>prlimit --nofile</c>): it must refuse streams past what fits
/// with <c>AT_CAPACITY</c> and stay alive, and connections past the limit itself must not kill it (issue 14, item 3).
/// </summary>
public sealed class CapacityTests(ITestOutputHelper output)
{
    private const string Region = "capacity";

    /// <summary>Room for the runtime, the cluster, the journal, 256 other connections and 100 relay sockets, and a few streams.</summary>
    private const int DescriptorLimit = 1400;

    private static MydvpnExecutable UnderDescriptorLimit(MydvpnExecutable executable, int limit)
    {
        // prlimit execs the program: the process is mydvpn itself, with the limit, and gets the signals.
        var prlimit = new[] { "/usr/bin/prlimit", "/bin/prlimit" }.FirstOrDefault(File.Exists)
            ?? throw new InvalidOperationException("prlimit (util-linux) is required to start a SuperNode under a lowered descriptor limit");
        return new MydvpnExecutable(prlimit, [$"--nofile={limit}:{limit}", "--", executable.FileName, .. executable.PrefixArguments]);
    }

    private static async Task<(TestNetwork Network, TestNetwork.Node Base, TestNetwork.Node Super)> StartAsync(
        ITestOutputHelper output, params string[] superArguments)
    {
        var network = new TestNetwork(output);
        var baseNode = network.BaseNode();
        await network.StartAsync(baseNode);
        var template = network.SuperNode("sn-cap", Region, baseNode);
        var super = template with { Arguments = [.. template.Arguments, .. superArguments] };
        super.Executable = UnderDescriptorLimit(network.Executable, DescriptorLimit);
        foreach (var (key, value) in new Dictionary<string, string>
        {
            // Every peer of these tests comes from 127.0.0.1 and answers no ping.
            ["PERSOURCEBURST"] = "100000",
            ["PERSOURCEPERSECOND"] = "100000",
            ["REDEEMPERSOURCEBURST"] = "100000",
            ["REDEEMPERSOURCEPERSECOND"] = "100000",
            ["MAXCHALLENGESPERSOURCE"] = "100000",
            ["HEARTBEATTIMEOUT"] = "00:10:00",
        })
            super.Environment[$"MYDVPN__SUPER__EDGE__{key}"] = value;
        await network.StartAsync(super);
        return (network, baseNode, super);
    }

    private static async Task<bool> HealthyAsync(TestNetwork.Node node)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        try
        {
            return (await http.GetAsync($"http://{node.Metrics}/healthz")).IsSuccessStatusCode;
        }
        catch (HttpRequestException)
        {
            return false;
        }
    }

    /// <summary>The capacity the SuperNode registered with the directory; 0 before it registered.</summary>
    private static async Task<int> RegisteredCapacityAsync(TestNetwork network, TestNetwork.Node baseNode)
    {
        var (exitCode, text) = await network.RunAsync("admin", "--base", baseNode.Listen.ToString(), "--tls", network.AdminTls, "regions", "--json");
        Assert.True(exitCode == 0, $"admin regions failed ({exitCode}): {text}");
        var capacities = new List<int>();
        Collect(JsonDocument.Parse(text).RootElement, capacities);
        return capacities.Count == 0 ? 0 : Assert.Single(capacities);

        static void Collect(JsonElement element, List<int> found)
        {
            if (element.ValueKind == JsonValueKind.Object)
            {
                foreach (var property in element.EnumerateObject())
                {
                    if (property.NameEquals("capacity") && property.Value.ValueKind == JsonValueKind.Number)
                        found.Add(property.Value.GetInt32());
                    else
                        Collect(property.Value, found);
                }
            }
            else if (element.ValueKind == JsonValueKind.Array)
            {
                foreach (var item in element.EnumerateArray())
                    Collect(item, found);
            }
        }
    }

    private static async Task<RawPeer> LoginAsync(TestNetwork.Node super, string caFile, IdentityKey key, string peerId, string token)
    {
        var peer = await RawPeer.OpenAsync(super.Listen, caFile);
        await peer.SendAsync(peer.SignedRequest(key, peerId, PeerRole.Client, Region, token));
        return peer;
    }

    [Fact]
    public async Task A_SuperNode_under_a_low_descriptor_limit_refuses_streams_past_what_fits_with_AT_CAPACITY_and_stays_alive()
    {
        var (network, baseNode, super) = await StartAsync(output);
        await using var _ = network;
        var peers = new List<RawPeer>();
        try
        {
            // No --max-streams: the default is what the descriptor limit leaves.
            var capacity = 0;
            await Eventually.Async(async () => (capacity = await RegisteredCapacityAsync(network, baseNode)) > 0, "the SuperNode registered its capacity");
            output.WriteLine($"capacity under a limit of {DescriptorLimit} descriptors: {capacity}");
            Assert.InRange(capacity, 1, DescriptorLimit - 1024);

            var token = await network.CreateTokenAsync(baseNode, "client", Region, uses: capacity + 5);
            var keys = Enumerable.Range(0, capacity + 1).Select(_ => IdentityKey.Generate()).ToArray();
            for (var i = 0; i < capacity; i++)
            {
                var peer = await LoginAsync(super, network.CaFile, keys[i], $"cap-{i}", token);
                peers.Add(peer);
                Assert.Equal(ControlMessage.PayloadOneofCase.AuthResponse, (await peer.ReadAsync()).PayloadCase);
            }

            // One more is refused before its login is read: no challenge, the stream ends with the reason.
            var refused = await Assert.ThrowsAsync<RpcException>(() => RawPeer.OpenAsync(super.Listen, network.CaFile));
            output.WriteLine($"stream {capacity + 1}: {refused.StatusCode} {refused.Status.Detail}");
            Assert.Equal(StatusCode.ResourceExhausted, refused.StatusCode);
            Assert.Equal("AT_CAPACITY", refused.Trailers.GetValue("mydvpn-reason"));
            Assert.True(await HealthyAsync(super), "the SuperNode at capacity does not answer /healthz");

            // A stream that ends makes room again.
            await peers[0].DisposeAsync();
            peers.RemoveAt(0);
            await Eventually.Async(async () =>
            {
                try
                {
                    var again = await LoginAsync(super, network.CaFile, keys[capacity], $"cap-{capacity}", token);
                    peers.Add(again);
                    return (await again.ReadAsync()).PayloadCase == ControlMessage.PayloadOneofCase.AuthResponse;
                }
                catch (RpcException ex) when (ex.StatusCode == StatusCode.ResourceExhausted)
                {
                    return false;
                }
            }, "a stream was admitted after one of the full SuperNode's streams ended", TimeSpan.FromSeconds(20));
            Assert.False(super.Process!.HasExited, "the SuperNode died");
        }
        finally
        {
            foreach (var peer in peers)
                await peer.DisposeAsync();
        }
    }

    [Fact]
    public async Task Connections_past_the_descriptor_limit_leave_the_SuperNode_alive_and_serving_once_they_close()
    {
        // An explicit --max-streams far past what the limit fits. Taken as given, the connections ran the process out of
        // descriptors and the runtime died ("Out of memory."): it admits only the streams that fit, and says so.
        var (network, baseNode, super) = await StartAsync(output, "--max-streams", "5000");
        await using var _ = network;
        Assert.Contains("refuses more with AT_CAPACITY", super.Process!.ReadLog());
        // The flood comes at a SuperNode that serves: one whose sharding coordinators are still recovering when it runs out
        // of descriptors cannot open its journal, and its journal's circuit breaker keeps them down past this test's wait
        // (seen once in CI; a start-up under a flood is a case of its own, not this one).
        var token = await network.CreateTokenAsync(baseNode, "client", Region, uses: 2);
        await using (var before = await LoginAsync(super, network.CaFile, IdentityKey.Generate(), "before-flood", token))
            Assert.Equal(ControlMessage.PayloadOneofCase.AuthResponse, (await before.ReadAsync()).PayloadCase);
        var sockets = new List<Socket>();
        try
        {
            // Plain TCP connections, each a descriptor in the SuperNode until the TLS handshake times out. Bounded: past
            // the limit the SuperNode cannot take more, so connecting many more only fills the backlog.
            const int connections = DescriptorLimit + 300;
            for (var i = 0; i < connections; i++)
            {
                var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                sockets.Add(socket);
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                try
                {
                    await socket.ConnectAsync(super.Listen.Host, super.Listen.Port, timeout.Token);
                }
                catch (Exception ex) when (ex is SocketException or OperationCanceledException)
                {
                    output.WriteLine($"connection {i + 1} failed: {ex.Message}");
                    break;
                }
            }
            output.WriteLine($"{sockets.Count} connections opened");
            await Task.Delay(TimeSpan.FromSeconds(2));
            Assert.False(super.Process!.HasExited, "the SuperNode died past its descriptor limit");
            Assert.True(await HealthyAsync(super), "the SuperNode past its descriptor limit does not answer /healthz");
        }
        finally
        {
            foreach (var socket in sockets)
                socket.Dispose();
        }

        // Once they are gone, a peer logs in as usual.
        var key = IdentityKey.Generate();
        await Eventually.Async(async () =>
        {
            try
            {
                await using var peer = await LoginAsync(super, network.CaFile, key, "after-flood", token);
                return (await peer.ReadAsync()).PayloadCase == ControlMessage.PayloadOneofCase.AuthResponse;
            }
            catch (Exception ex) when (ex is RpcException or HttpRequestException or IOException)
            {
                output.WriteLine($"not yet: {ex.Message}");
                return false;
            }
        }, "the SuperNode admitted a peer after the connections past its limit closed", TimeSpan.FromSeconds(60));
        Assert.False(super.Process!.HasExited, "the SuperNode died");
    }
}
