using MyDvpn.Common;
using MyDvpn.Security;
using MyDvpn.TestSupport;
using Xunit.Abstractions;

namespace MyDvpn.IntegrationTests;

/// <summary>
/// What <c>/metrics</c> serves on a real BaseNode, SuperNode and peer agent: <c>promtool check metrics</c> passes each, and
/// the series operators alert on are there from the start, at zero where nothing happened yet.
/// </summary>
public sealed class MetricsTests(ITestOutputHelper output)
{
    private const string Region = "metrics";
    private const string AgentId = "metrics-agent";

    [Fact]
    public async Task Every_node_kind_serves_metrics_promtool_accepts_with_its_series_at_zero_before_their_first_event()
    {
        await using var network = new TestNetwork(output);
        var baseNode = network.BaseNode();
        await network.StartAsync(baseNode);
        var super = network.SuperNode("sn-metrics", Region, baseNode);
        await network.StartAsync(super);
        var agentMetrics = new HostPort("127.0.0.1", Cli.Demo.NodeProcess.FreeTcpPort());
        await network.StartAgentAsync(baseNode, super, AgentId, "client", Region, "--metrics", agentMetrics.ToString());
        await Eventually.Async(async () => Value(await MetricsScrape.TextOrEmptyAsync(agentMetrics), "mydvpn_peer_connected") == 1, "the agent is connected",
            TimeSpan.FromSeconds(60));
        // The SuperNode's next report tells the directory the agent is online.
        await Eventually.Async(async () => Value(await MetricsScrape.TextAsync(baseNode.Metrics), Labelled("mydvpn_peers", ("region", Region), ("role", "client"), ("state", "online"))) == 1,
            "the directory counts the agent online", TimeSpan.FromSeconds(60));

        var basic = await CheckAsync("the BaseNode", baseNode.Metrics);
        var superText = await CheckAsync("the SuperNode", super.Metrics);
        var agentText = await CheckAsync("the peer agent", agentMetrics);

        foreach (var text in new[] { basic, superText, agentText })
        {
            Assert.Contains("mydvpn_build_info", MetricsText.Families(text));
            Assert.Contains("process_cpu_seconds_total", MetricsText.Families(text));
            Assert.DoesNotContain(AgentId, text, StringComparison.Ordinal);
        }

        AssertValue(basic, 1, "mydvpn_tokens_created_total", ("role", "client"));
        AssertValue(basic, 0, "mydvpn_tokens_created_total", ("role", "exit"));
        AssertValue(basic, 1, "mydvpn_enrollment_redemptions_total", ("outcome", "ok"));
        AssertValue(basic, 0, "mydvpn_enrollment_redemptions_total", ("outcome", "BAD_TOKEN"));
        AssertValue(basic, 0, "mydvpn_peers", ("region", Region), ("role", "exit"), ("state", "online"));
        AssertValue(basic, 0, "grpc_server_handled_total", ("grpc_type", "unary"), ("grpc_service", "mydvpn.admin.v1.Admin"),
            ("grpc_method", "RevokePeer"), ("grpc_code", "OK"));
        Assert.True(Value(basic, Labelled("grpc_server_handled_total", ("grpc_type", "unary"), ("grpc_service", "mydvpn.directory.v1.SuperNodeDirectory"),
            ("grpc_method", "Report"), ("grpc_code", "OK"))) > 0, "the SuperNode's reports are counted");

        AssertValue(superText, 1, "mydvpn_sessions", ("region", Region), ("role", "client"));
        AssertValue(superText, 0, "mydvpn_sessions", ("region", Region), ("role", "exit"));
        AssertValue(superText, 0, "mydvpn_exits", ("region", Region), ("state", "online"));
        AssertValue(superText, 0, "mydvpn_exit_capacity", ("region", Region));
        AssertValue(superText, 0, "mydvpn_exit_assignments", ("region", Region), ("state", "active"));
        AssertValue(superText, 0, "mydvpn_commands_issued_total", ("kind", "setup_exit"));
        AssertValue(superText, 0, "mydvpn_commands_retried_total", ("kind", "rotate_peer"));
        AssertValue(superText, 0, "mydvpn_commands_failed_total", ("kind", "relay_setup"));
        AssertValue(superText, 0, "mydvpn_command_seconds_count", ("kind", "disconnect"));
        AssertValue(superText, 0, "mydvpn_relay_legs_open");
        AssertValue(superText, 0, "mydvpn_relay_packets_total", ("direction", "to_peer"));
        AssertValue(superText, 0, "mydvpn_relay_bytes_total", ("direction", "to_partner"));
        AssertValue(superText, 0, "mydvpn_relay_dropped_total", ("reason", "unknown_source"));
        AssertValue(superText, 0, "mydvpn_auth_refusals_total", ("reason", "BAD_SIGNATURE"));
        AssertValue(superText, 1, "mydvpn_streams_open");
        AssertValue(superText, 1, "grpc_server_started_total", ("grpc_type", "bidi_stream"), ("grpc_service", "mydvpn.control.v1.ControlStream"),
            ("grpc_method", "PersistentControlStream"));

        AssertValue(agentText, 1, "mydvpn_peer_connected");
        AssertValue(agentText, 1, "mydvpn_peer_tunnel", ("state", "none"));
        AssertValue(agentText, 0, "mydvpn_peer_tunnel", ("state", "relayed"));
        AssertValue(agentText, 0, "mydvpn_peer_handshake_age_seconds");
        AssertValue(agentText, 0, "mydvpn_peer_received_bytes_total");
        AssertValue(agentText, 0, "mydvpn_peer_sent_bytes_total");
        AssertValue(agentText, 0, "mydvpn_peer_reconnects_total");
        AssertValue(agentText, 0, "mydvpn_peer_commands_total", ("kind", "setup_exit"), ("outcome", "applied"));
    }

    /// <summary>Scrapes <paramref name="metrics"/>, prints what promtool says of it and fails unless it passes.</summary>
    private async Task<string> CheckAsync(string what, HostPort metrics)
    {
        var text = await MetricsScrape.TextAsync(metrics);
        var (exitCode, said) = await Promtool.CheckMetricsAsync(text);
        output.WriteLine($"promtool check metrics, {what} ({text.Split('\n').Count(l => l.Length > 0 && l[0] != '#')} samples): exit code {exitCode}{(said.Length > 0 ? "\n" + said : "")}");
        Assert.True(exitCode == 0, $"promtool check metrics refuses the metrics of {what}:\n{said}");
        return text;
    }

    private static void AssertValue(string scraped, double expected, string name, params (string Name, string Value)[] labels)
    {
        var series = Labelled(name, labels);
        Assert.True(Value(scraped, series) == expected, $"{series} is {Value(scraped, series)?.ToString() ?? "absent"}, not {expected}");
    }

    private static string Labelled(string name, params (string Name, string Value)[] labels) =>
        labels.Length == 0 ? name : $"{name}{{{string.Join(",", labels.Select(l => $"{l.Name}=\"{l.Value}\""))}}}";

    private static double? Value(string scraped, string series) => MetricsText.Value(scraped, series);
}
