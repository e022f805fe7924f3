using MyDvpn.Cli.Demo;
using MyDvpn.Testbed;

namespace MyDvpn.Bench;

/// <summary>
/// throughput mode: iperf3 through the WireGuard tunnel against the same path without it, in one run (see
/// <see cref="DataPlaneRun"/>). RAW: before any tunnel exists, iperf3 from the client namespace (client → client NAT →
/// internet). TUNNEL: then a <see cref="TestbedNetwork"/> (BaseNode, two SuperNodes, the exit and the client as real
/// <c>mydvpn</c> processes driving WireGuard); once the echo server sees the client as the exit's NAT, the same iperf3
/// again (client → WireGuard → exit → exit NAT → internet), each tunnel run checked against the client interface's
/// WireGuard byte counters. Needs root.
/// </summary>
internal static class ThroughputBench
{
    /// <summary>A lower bound on the seconds a run takes (start, every iperf3 run, teardown), to check --timeout up front.</summary>
    public static int EstimatedSeconds(int seconds, int repeat, bool reverse) => 240 + (seconds + 3) * repeat * (reverse ? 4 : 2);

    public static Task<int> RunAsync(int seconds, int repeat, bool reverse, CancellationToken cancellationToken) =>
        DataPlaneRun.RunAsync("throughput", (run, cancel) => MeasureAsync(run, seconds, repeat, reverse, cancel), cancellationToken);

    private static async Task<Dictionary<string, object>> MeasureAsync(DataPlaneRun run, int seconds, int repeat, bool reverse,
        CancellationToken cancellationToken)
    {
        var seenBefore = await run.EchoAsync(cancellationToken);
        if (seenBefore != TestbedAddresses.ClientNatPublic.ToString())
            throw new DataPlaneBenchException($"before any tunnel the echo server sees the client as {seenBefore}, not its NAT {TestbedAddresses.ClientNatPublic}");

        var raw = await run.IperfSeriesAsync("raw", seconds, repeat, reverse, tunnel: null, cancellationToken);

        var network = await run.StartNetworkAsync(cancellationToken);
        var clientLink = await run.LinkAsync(TestbedRoles.Client, network.ClientInterface, cancellationToken);
        var exitLink = await run.LinkAsync(TestbedRoles.Exit, network.ExitInterface, cancellationToken);

        var tunnel = await run.IperfSeriesAsync("tunnel", seconds, repeat, reverse, network.ClientInterface, cancellationToken);

        var results = new Dictionary<string, object>
        {
            ["mode"] = "throughput",
            ["seconds"] = seconds,
            ["repeat"] = repeat,
            ["wireguard_backend"] = clientLink.Backend == exitLink.Backend ? clientLink.Backend : $"client {clientLink.Backend}, exit {exitLink.Backend}",
            ["tunnel_mtu"] = clientLink.Mtu,
            ["cpus"] = Environment.ProcessorCount,
        };
        DataPlaneRun.AddDirection(results, "", "raw", raw.Upload, "tunnel", tunnel.Upload);
        if (reverse)
            DataPlaneRun.AddDirection(results, "reverse_", "raw", raw.Download!, "tunnel", tunnel.Download!);
        results["raw_source"] = raw.Upload[0].LocalHost;
        results["tunnel_source"] = tunnel.Upload[0].LocalHost;
        return results;
    }
}
