using System.Text.Json;
using MyDvpn.Security;
using Xunit.Abstractions;

namespace MyDvpn.IntegrationTests;

/// <summary>
/// OpenTelemetry traces across the nodes (issue 16 item 2), with real processes on loopback exporting to an OTLP
/// collector the test hosts (<see cref="OtlpReceiver"/>): a client of region a takes an exit of region b, and one trace
/// shows it from the client's SuperNode through the exit region's SuperNode and pool to both agents.
/// </summary>
public sealed class TracingTests(ITestOutputHelper output)
{
    private const string ClientRegion = "a", ExitRegion = "b";

    [Fact]
    public async Task A_cross_region_exit_setup_is_one_trace_from_the_clients_supernode_to_both_agents()
    {
        await using var receiver = await OtlpReceiver.StartAsync();
        await using var network = new TestNetwork(output);
        var baseNode = Traced(network.BaseNode(), receiver);
        await network.StartAsync(baseNode);
        var superA = Traced(network.SuperNode("sn-a", ClientRegion, baseNode), receiver);
        var superB = Traced(network.SuperNode("sn-b", ExitRegion, baseNode), receiver);
        superB.Environment["MYDVPN__SUPER__EXITS__TRUSTEDENDPOINTNETWORKS__0"] = "192.0.2.0/24";
        await Task.WhenAll(network.StartAsync(superA), network.StartAsync(superB));

        var exit = await StartAgentAsync(network, receiver, baseNode, superB, "exit-1", "exit", ExitRegion, "--public-endpoint", "192.0.2.10:51820");
        await Eventually.Async(async () =>
        {
            var (code, text) = await network.RunAsync("admin", "--base", baseNode.Listen.ToString(), "--tls", network.AdminTls,
                "exits", "--region", ExitRegion, "--json");
            return code == 0 && JsonDocument.Parse(text).RootElement.GetProperty("exits").EnumerateArray().Any(e => e.GetProperty("online").GetBoolean());
        }, "exit-1 is online in region b's pool", TimeSpan.FromSeconds(60));
        var client = await StartAgentAsync(network, receiver, baseNode, superA, "client-1", "client", ClientRegion, "--exit-region", ExitRegion);

        // The trace of the setup that worked: the exit applied its SetupExit in it (an earlier request may have been refused).
        List<ReceivedSpan> trace = [];
        await Eventually.Async(() =>
        {
            var spans = receiver.Spans;
            var applied = spans.Where(s => s is { Service: "mydvpn-peer", Name: "apply SetupExit" }).Select(s => s.TraceId).ToHashSet();
            trace = [.. spans.Where(s => applied.Contains(s.TraceId))];
            return Task.FromResult(trace.Any(s => s is { Instance: "exit-1", Name: "apply SetupExit" })
                                   && trace.Any(s => s is { Instance: "client-1", Name: "apply SetupExit" }));
        }, "the collector holds a trace in which both agents applied their SetupExit", TimeSpan.FromSeconds(90));

        Assert.Empty(receiver.Problems);
        var traceId = Assert.Single(trace.Select(s => s.TraceId).Distinct());
        output.WriteLine($"trace {traceId}:");
        foreach (var span in trace.OrderBy(s => s.StartNanos))
            output.WriteLine($"  {span}");

        var root = One(trace, "mydvpn-super", "sn-a", "ExitRequest");
        Assert.Equal("", root.ParentSpanId);
        var allocate = One(trace, "mydvpn-super", "sn-a", "allocate exit");
        Assert.Equal(root.SpanId, allocate.ParentSpanId);
        // The call to region b: sn-a's client span, child of the allocation, carries the context in the call's metadata,
        // and sn-b's server span continues it.
        var call = Assert.Single(trace, s => s.Instance == "sn-b" && s.Name.Contains("ExitAllocation/AllocateExit", StringComparison.Ordinal));
        var callers = Ancestors(trace, call).TakeWhile(s => s.SpanId != allocate.SpanId).ToList();
        Assert.NotEmpty(callers);
        Assert.All(callers, s => Assert.Equal(("mydvpn-super", "sn-a"), (s.Service, s.Instance)));
        Assert.Equal(allocate.SpanId, callers[^1].ParentSpanId);
        var pool = One(trace, "mydvpn-super", "sn-b", "exit pool allocate");
        Assert.Equal(call.SpanId, pool.ParentSpanId);
        // The exit's SetupExit was issued by the pool, the client's by its session's allocation.
        Assert.Equal(pool.SpanId, One(trace, "mydvpn-peer", "exit-1", "apply SetupExit").ParentSpanId);
        Assert.Equal(allocate.SpanId, One(trace, "mydvpn-peer", "client-1", "apply SetupExit").ParentSpanId);
        Assert.All(trace, s => Assert.True(s.EndNanos >= s.StartNanos, $"{s} ends before it starts"));
        // No span's parent is missing: every process exported its part.
        Assert.All(trace.Where(s => s != root), s => Assert.Contains(trace, p => p.SpanId == s.ParentSpanId));

        // Calls made outside any flow (the SuperNodes' directory reports, every few seconds) start no trace of their own.
        Assert.DoesNotContain(receiver.Spans, s => s.ParentSpanId.Length == 0 && s.Name is "Grpc.Net.Client.GrpcOut" or "POST");
        Assert.DoesNotContain(receiver.Spans, s => s.Name.EndsWith("SuperNodeDirectory/Report", StringComparison.Ordinal));

        // The agents' JSON log lines written while applying carry the trace and their span.
        var exitApply = One(trace, "mydvpn-peer", "exit-1", "apply SetupExit");
        await Eventually.Async(() => Task.FromResult(exit.Process!.ReadLog().Split('\n').Any(line =>
                line.Contains("Applying command", StringComparison.Ordinal)
                && line.Contains($"\"TraceId\":\"{traceId}\"", StringComparison.Ordinal)
                && line.Contains($"\"SpanId\":\"{exitApply.SpanId}\"", StringComparison.Ordinal))),
            "exit-1's log line 'Applying command' names the trace and its span", TimeSpan.FromSeconds(10));
        Assert.NotNull(client.Process);
    }

    /// <summary>The span's parent, its parent's parent… as far as the trace holds them.</summary>
    private static IEnumerable<ReceivedSpan> Ancestors(IReadOnlyList<ReceivedSpan> trace, ReceivedSpan span)
    {
        for (var parent = trace.FirstOrDefault(s => s.SpanId == span.ParentSpanId); parent is not null;
             parent = trace.FirstOrDefault(s => s.SpanId == parent.ParentSpanId))
            yield return parent;
    }

    private static ReceivedSpan One(IEnumerable<ReceivedSpan> trace, string service, string instance, string name) =>
        Assert.Single(trace, s => s.Service == service && s.Instance == instance && s.Name == name);

    /// <summary>The node with <c>--otlp</c> at <paramref name="receiver"/>, exporting its batches every 200 ms.</summary>
    private static TestNetwork.Node Traced(TestNetwork.Node node, OtlpReceiver receiver)
    {
        var traced = new TestNetwork.Node(node.Name, node.Listen, node.Metrics, [.. node.Arguments, "--otlp", receiver.Endpoint]);
        traced.Environment["OTEL_BSP_SCHEDULE_DELAY"] = "200";
        return traced;
    }

    private static async Task<TestNetwork.Node> StartAgentAsync(TestNetwork network, OtlpReceiver receiver, TestNetwork.Node baseNode,
        TestNetwork.Node super, string peerId, string role, string region, params string[] extra)
    {
        var keyFile = Path.Combine(network.Root, $"{peerId}.key");
        IdentityKey.Generate().Save(keyFile);
        var token = await network.CreateTokenAsync(baseNode, role, region);
        var stateDir = Path.Combine(network.Root, "peers", peerId);
        Directory.CreateDirectory(stateDir);
        var agent = Traced(new TestNetwork.Node(peerId, super.Listen, super.Metrics,
        [
            "peer", "--data-plane", "none", "--log-format", "json", "--role", role, "--id", peerId, "--region", region, "--key", keyFile,
            "--ca", network.CaFile, "--supernode", super.Listen.ToString(), "--token", token, "--state-dir", stateDir, .. extra,
        ]), receiver);
        await network.StartAsync(agent, waitUntilReady: false);
        return agent;
    }
}
