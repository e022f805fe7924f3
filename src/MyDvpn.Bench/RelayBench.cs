using System.Diagnostics;
using System.Globalization;
using System.Net;
using MyDvpn.Cli.Demo;
using MyDvpn.Peer.LocalStatus;
using MyDvpn.Testbed;

namespace MyDvpn.Bench;

/// <summary>
/// relay mode: the tunnel relayed through the SuperNodes against the same tunnel direct, in one run on one testbed (see
/// <see cref="DataPlaneRun"/>). DIRECT: the network starts, the client's traffic leaves through the exit, its status says
/// path <c>direct</c> and its WireGuard peer for the exit is the exit's NAT (198.51.100.20:51820); ping series and iperf3
/// through the tunnel. RELAYED: the client stops (gives its exit back, removes its interface), the internet router drops
/// UDP between the two NATs, the client starts again with its key and state directory; its session finds no handshake
/// with the exit and chains relay legs on sn-eu-1 and sn-us-1. Once the traffic leaves through the exit again, the
/// status says <c>relay</c> and the client's peer for the exit is a leg on sn-eu-1, the same ping series and iperf3 —
/// each SuperNode must have forwarded at least what iperf3 moved. Reports Mbit/s, relayed/direct and the latency the relay
/// adds. Needs root.
/// </summary>
internal static class RelayBench
{
    // TestbedNetwork starts each SuperNode with --metrics on this port.
    private const int SuperNodeMetricsPort = 9100;
    private const string RelayBytes = "mydvpn_relay_bytes_total";
    private const string RelayDropped = "mydvpn_relay_dropped_total";
    private static readonly string[] RelayDirections = ["to_peer", "to_partner"];
    // The session waits about 5 s for a handshake before it sets up the legs; the restarted client first gets an exit.
    private static readonly TimeSpan RelayWithin = TimeSpan.FromSeconds(90);
    private static readonly TimeSpan MetricsTimeout = TimeSpan.FromSeconds(5);

    /// <summary>A lower bound on the seconds a run takes (start, restart into the relay, every measurement, teardown).</summary>
    public static int EstimatedSeconds(int seconds, int repeat, bool reverse, int pings) =>
        330 + (seconds + 3) * repeat * (reverse ? 4 : 2) + 2 * (repeat * ((int)Math.Ceiling(pings * 0.2) + 3) + 3);

    /// <param name="kernelOffload">The SuperNodes' kernels forward the legs once established; else their processes do.</param>
    public static Task<int> RunAsync(int seconds, int repeat, bool reverse, int pings, bool kernelOffload, CancellationToken cancellationToken) =>
        DataPlaneRun.RunAsync("relay", (run, cancel) => MeasureAsync(run, seconds, repeat, reverse, pings, kernelOffload, cancel), cancellationToken);

    private static async Task<Dictionary<string, object>> MeasureAsync(DataPlaneRun run, int seconds, int repeat, bool reverse, int pings,
        bool kernelOffload, CancellationToken cancellationToken)
    {
        var network = await run.StartNetworkAsync(cancellationToken, kernelOffload);
        await network.UntilAsync(async () => await PathAsync(network, cancellationToken) == AgentStatus.PathDirect,
            $"{TestbedNetwork.ClientId}'s status says path {AgentStatus.PathDirect}", cancellationToken);
        var directEndpoint = await ExitEndpointAsync(network, cancellationToken);
        var exitNat = new IPEndPoint(TestbedAddresses.ExitNatPublic, TestbedAddresses.ExitWireGuardPort).ToString();
        if (directEndpoint != exitNat)
            throw new DataPlaneBenchException($"on the direct path the client's WireGuard peer for the exit has endpoint {directEndpoint}, not the exit's NAT {exitNat}");
        run.Progress($"DIRECT: path {AgentStatus.PathDirect}, the client's WireGuard peer for the exit at {directEndpoint}");
        var link = await run.LinkAsync(TestbedRoles.Client, network.ClientInterface, cancellationToken);

        var directPings = await run.PingSeriesAsync("direct", pings, repeat, cancellationToken);
        var directBefore = await SampleAsync(run, cancellationToken);
        var direct = await run.IperfSeriesAsync("direct", seconds, repeat, reverse, network.ClientInterface, cancellationToken);
        var directUsage = Usage(directBefore, await SampleAsync(run, cancellationToken));
        await RequirePathAsync(network, AgentStatus.PathDirect, "direct", cancellationToken);

        await network.StopPeerAsync(TestbedNetwork.ClientId);
        run.Progress($"client {TestbedNetwork.ClientId} stopped (exit given back, interface removed)");
        await run.Testbed.DropUdpBetweenNatsAsync(cancellationToken);
        run.Progress($"UDP between {TestbedAddresses.ExitNatPublic} and {TestbedAddresses.ClientNatPublic} dropped on the internet router");
        var switchClock = Stopwatch.StartNew();
        await network.StartClientAsync(cancellationToken);
        run.Progress($"client {TestbedNetwork.ClientId} started again with its key and state directory; holds an exit");
        await network.UntilAsync(async () => await PathAsync(network, cancellationToken) == AgentStatus.PathRelay
                                              && await run.EchoAsync(cancellationToken) == TestbedAddresses.ExitNatPublic.ToString(),
            $"{TestbedNetwork.ClientId}'s status says path {AgentStatus.PathRelay} and its traffic leaves through the exit", cancellationToken, RelayWithin);
        var switchSeconds = switchClock.Elapsed.TotalSeconds;
        var relayedEndpoint = await ExitEndpointAsync(network, cancellationToken);
        if (!relayedEndpoint.StartsWith($"{TestbedAddresses.SnA}:", StringComparison.Ordinal))
            throw new DataPlaneBenchException($"on the relayed path the client's WireGuard peer for the exit has endpoint {relayedEndpoint}, not a leg on sn-eu-1 ({TestbedAddresses.SnA})");
        run.Progress($"RELAYED after {switchSeconds:0.0} s: path {AgentStatus.PathRelay}, the client's WireGuard peer for the exit at {relayedEndpoint}");

        var relayedPings = await run.PingSeriesAsync("relayed", pings, repeat, cancellationToken);
        var forwardedBefore = await RelayForwardedAsync(run, cancellationToken);
        var relayedBefore = await SampleAsync(run, cancellationToken);
        var relayed = await run.IperfSeriesAsync("relayed", seconds, repeat, reverse, network.ClientInterface, cancellationToken);
        var relayedUsage = Usage(relayedBefore, await SampleAsync(run, cancellationToken));
        var forwardedAfter = await RelayForwardedAsync(run, cancellationToken);
        await RequirePathAsync(network, AgentStatus.PathRelay, "relayed", cancellationToken);
        var dropped = await run.Testbed.DroppedUdpBetweenNatsAsync(cancellationToken);
        if (dropped == 0)
            throw new DataPlaneBenchException("the internet router dropped no UDP between the NATs: the client never tried the direct path it measured as relayed");
        // Every byte iperf3 moved crossed both SuperNodes (WireGuard adds its headers on top).
        var iperfBytes = relayed.Upload.Concat(relayed.Download ?? []).Sum(r => r.Bytes);
        var forwarded = forwardedAfter.Select((after, i) => after - forwardedBefore[i]).ToArray();
        foreach (var (superNode, bytes) in new[] { ("sn-eu-1", forwarded[0]), ("sn-us-1", forwarded[1]) })
        {
            if (bytes < iperfBytes)
                throw new DataPlaneBenchException($"iperf3 moved {iperfBytes} bytes through the relayed tunnel but {superNode}'s relay legs forwarded only {bytes:0}");
        }

        var results = new Dictionary<string, object>
        {
            ["mode"] = "relay",
            ["seconds"] = seconds,
            ["repeat"] = repeat,
            ["pings"] = pings,
            ["wireguard_backend"] = link.Backend,
            ["tunnel_mtu"] = link.Mtu,
            ["cpus"] = Environment.ProcessorCount,
        };
        DataPlaneRun.AddDirection(results, "", "direct", direct.Upload, "relayed", relayed.Upload);
        if (reverse)
            DataPlaneRun.AddDirection(results, "reverse_", "direct", direct.Download!, "relayed", relayed.Download!);
        // Over every reply of every series. The median and the minimum next to the average: on a loaded machine a few
        // replies delayed by the scheduler move the average a lot.
        var directRtts = directPings.SelectMany(p => p.RoundTripsMs).ToArray();
        var relayedRtts = relayedPings.SelectMany(p => p.RoundTripsMs).ToArray();
        results["direct_ping_avg_ms"] = Math.Round(directRtts.Average(), 3);
        results["relayed_ping_avg_ms"] = Math.Round(relayedRtts.Average(), 3);
        results["added_latency_ms"] = Math.Round(relayedRtts.Average() - directRtts.Average(), 3);
        results["direct_ping_median_ms"] = Math.Round(DataPlaneRun.Median(directRtts), 3);
        results["relayed_ping_median_ms"] = Math.Round(DataPlaneRun.Median(relayedRtts), 3);
        results["added_latency_median_ms"] = Math.Round(DataPlaneRun.Median(relayedRtts) - DataPlaneRun.Median(directRtts), 3);
        results["direct_ping_min_ms"] = Math.Round(directRtts.Min(), 3);
        results["relayed_ping_min_ms"] = Math.Round(relayedRtts.Min(), 3);
        results["direct_ping_runs_avg_ms"] = directPings.Select(p => Math.Round(p.RoundTripsMs.Average(), 3)).ToArray();
        results["relayed_ping_runs_avg_ms"] = relayedPings.Select(p => Math.Round(p.RoundTripsMs.Average(), 3)).ToArray();
        results["direct_ping_loss_percent"] = LossPercent(directPings);
        results["relayed_ping_loss_percent"] = LossPercent(relayedPings);
        results["direct_endpoint"] = directEndpoint;
        results["relayed_endpoint"] = relayedEndpoint;
        results["relay_switch_seconds"] = Math.Round(switchSeconds, 1);
        results["relayed_mib_sn_eu_1"] = Math.Round(forwarded[0] / 1048576, 1);
        results["relayed_mib_sn_us_1"] = Math.Round(forwarded[1] / 1048576, 1);
        results["dropped_direct_packets"] = dropped;
        results["relay_dropped"] = forwardedAfter[2] - forwardedBefore[2];
        results["relay_forwarding"] = kernelOffload ? "kernel" : "user";
        // Where the CPU went and where datagrams were lost while each series ran: on this testbed every process competes
        // for the same cores, and a datagram dropped for a full receive buffer is a retransmission inside the tunnel.
        foreach (var (label, usage) in new[] { ("direct", directUsage), ("relayed", relayedUsage) })
        {
            foreach (var (name, (drops, cpu)) in usage)
            {
                results[$"{label}_cpu_percent_{name}"] = cpu;
                results[$"{label}_rcvbuf_drops_{name}"] = drops;
            }
        }
        return results;
    }

    /// <summary>The namespaces watched while a series runs, by the name results give them.</summary>
    private static readonly (string Role, string Name)[] Observed =
        [(TestbedRoles.Client, "client"), (TestbedRoles.SnA, "sn_eu_1"), (TestbedRoles.SnB, "sn_us_1"), (TestbedRoles.Exit, "exit")];

    private static async Task<DataPlaneRun.NamespaceSample[]> SampleAsync(DataPlaneRun run, CancellationToken cancellationToken)
    {
        var samples = new DataPlaneRun.NamespaceSample[Observed.Length];
        for (var i = 0; i < Observed.Length; i++)
            samples[i] = await run.SampleAsync(Observed[i].Role, cancellationToken);
        return samples;
    }

    private static (string Name, (long Drops, double Cpu) Usage)[] Usage(DataPlaneRun.NamespaceSample[] before, DataPlaneRun.NamespaceSample[] after) =>
        [.. Observed.Select((o, i) => (o.Name, DataPlaneRun.Usage(before[i], after[i])))];

    /// <summary>The client's path as its status shows it (<c>mydvpn status</c>): direct, relay or none.</summary>
    public static async Task<string?> PathAsync(TestbedNetwork network, CancellationToken cancellationToken) =>
        (await network.StatusAsync(TestbedNetwork.ClientId, cancellationToken)).GetProperty("path").GetString();

    private static async Task RequirePathAsync(TestbedNetwork network, string expected, string label, CancellationToken cancellationToken)
    {
        var path = await PathAsync(network, cancellationToken);
        if (path != expected)
            throw new DataPlaneBenchException($"during the {label} measurement the client's path changed to {path ?? "(none)"}");
    }

    /// <summary>The endpoint of the client's WireGuard peer for the exit, as <c>wg show IFACE dump</c> in the client namespace reads it.</summary>
    public static async Task<string> ExitEndpointAsync(TestbedNetwork network, CancellationToken cancellationToken)
    {
        var exitKey = (await network.StatusAsync(TestbedNetwork.ExitId, cancellationToken)).GetProperty("wireguardPublicKey").GetString();
        var dump = (await network.WgShowAsync(TestbedRoles.Client, network.ClientInterface, cancellationToken)).EnsureSuccess();
        // The first line is the interface; then one line per peer: public key, preshared key, endpoint, allowed ips ….
        var peer = dump.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries).Skip(1).Select(line => line.Split('\t'))
            .FirstOrDefault(fields => fields.Length > 2 && fields[0] == exitKey);
        return peer?[2] ?? throw new DataPlaneBenchException($"{network.ClientInterface} in the client namespace has no peer with the exit's key {exitKey}");
    }

    /// <summary>
    /// The bytes each SuperNode's relay legs forwarded so far (to the leg's peer and to its partner leg): sn-eu-1, sn-us-1;
    /// then the datagrams both SuperNodes' legs dropped, for any reason.
    /// </summary>
    private static async Task<double[]> RelayForwardedAsync(DataPlaneRun run, CancellationToken cancellationToken)
    {
        var forwarded = new double[3];
        foreach (var (index, superNode) in new[] { (0, TestbedAddresses.SnA), (1, TestbedAddresses.SnB) })
        {
            var text = await run.Testbed.HttpGetAsync(TestbedRoles.Internet, $"http://{superNode}:{SuperNodeMetricsPort}/metrics", MetricsTimeout,
                cancellationToken);
            foreach (var direction in RelayDirections)
            {
                var series = $"{RelayBytes}{{direction=\"{direction}\"}} ";
                var line = text.Split('\n').FirstOrDefault(l => l.StartsWith(series, StringComparison.Ordinal));
                if (line is not null)
                    forwarded[index] += double.Parse(line[series.Length..], CultureInfo.InvariantCulture);
            }
            forwarded[2] += text.Split('\n').Where(l => l.StartsWith(RelayDropped + "{", StringComparison.Ordinal))
                .Sum(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture));
        }
        return forwarded;
    }

    private static double LossPercent(IReadOnlyList<DataPlaneRun.PingSeries> series) =>
        Math.Round(100.0 * series.Sum(p => p.Summary.Transmitted - p.Summary.Received) / series.Sum(p => p.Summary.Transmitted), 1);
}
