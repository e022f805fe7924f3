using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using MyDvpn.Cli.Commands;
using MyDvpn.Cli.Demo;
using MyDvpn.DataPlane.Os;
using MyDvpn.Testbed;

namespace MyDvpn.Bench;

/// <summary>
/// throughput mode: iperf3 through the WireGuard tunnel against the same path without it, in one run. A
/// <see cref="NetnsTestbed"/> with an iperf3 server on the internet router (198.51.100.1). RAW: before any tunnel exists,
/// iperf3 from the client namespace (client → client NAT → internet). TUNNEL: then a <see cref="TestbedNetwork"/>
/// (BaseNode, two SuperNodes, the exit and the client as real <c>mydvpn</c> processes driving WireGuard); once the echo
/// server sees the client as the exit's NAT, the same iperf3 again (client → WireGuard → exit → exit NAT → internet),
/// each tunnel run checked against the client interface's WireGuard byte counters. Needs root.
/// </summary>
internal static class ThroughputBench
{
    /// <summary>The programs the run uses, with the Debian package that has each.</summary>
    public static readonly IReadOnlyList<(string Program, string Package)> Tools = [.. DemoCommand.Tools, ("ss", "iproute2"), ("iperf3", "iperf3")];

    private const int IperfPort = 5201;
    private const int BusyRetries = 5;
    private static readonly TimeSpan IperfConnectTimeout = TimeSpan.FromSeconds(5);
    // What one iperf3 run may take beyond its --seconds: connecting, the end-of-test exchange.
    private static readonly TimeSpan IperfSlack = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan ServerStartTimeout = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan EchoTimeout = TimeSpan.FromSeconds(5);

    /// <summary>A lower bound on the seconds a run takes (start, every iperf3 run, teardown), to check --timeout up front.</summary>
    public static int EstimatedSeconds(int seconds, int repeat, bool reverse) => 240 + (seconds + 3) * repeat * (reverse ? 4 : 2);

    public static async Task<int> RunAsync(int seconds, int repeat, bool reverse, CancellationToken cancellationToken)
    {
        if (!OperatingSystem.IsLinux() || !Prerequisites.IsPrivileged())
        {
            await Console.Error.WriteLineAsync("error: throughput mode builds network namespaces, WireGuard interfaces and NAT rules, which needs " +
                "root (CAP_NET_ADMIN, CAP_SYS_ADMIN) on Linux: run it as root, e.g. `sudo dotnet run -c Release --project src/MyDvpn.Bench -- --mode throughput`");
            return 2;
        }
        var missing = Prerequisites.MissingPackages(Tools);
        if (missing.Count > 0)
        {
            await Console.Error.WriteLineAsync($"error: throughput mode needs these Debian packages: {string.Join(' ', missing)} " +
                                               $"(apt-get install {string.Join(' ', missing)})");
            return 2;
        }

        var work = Directory.CreateTempSubdirectory("mydvpn-bench-throughput-").FullName;
        var exitCode = 1;
        NetnsTestbed? testbed = null;
        TestbedNetwork? network = null;
        try
        {
            testbed = await NetnsTestbed.CreateAsync(cancellationToken);
            Progress($"testbed {testbed.Id} up; iperf3 server on {TestbedAddresses.Router}:{IperfPort} in {testbed.Namespaces.Internet}");
            var server = await testbed.StartAsync(TestbedRoles.Internet, "iperf3",
                ["-s", "-B", TestbedAddresses.Router.ToString(), "-p", Invariant(IperfPort)], null, IperfServerLog(work), cancellationToken);
            await WaitListeningAsync(testbed, server, work, cancellationToken);
            var seenBefore = (await testbed.HttpGetAsync(TestbedRoles.Client, testbed.EchoUrl, EchoTimeout, cancellationToken)).Trim();
            if (seenBefore != TestbedAddresses.ClientNatPublic.ToString())
                throw new ThroughputException($"before any tunnel the echo server sees the client as {seenBefore}, not its NAT {TestbedAddresses.ClientNatPublic}");

            var raw = await MeasureAsync(testbed, "raw", seconds, repeat, reverse, tunnel: null, cancellationToken);

            network = await TestbedNetwork.StartAsync(testbed, MydvpnExecutable.InDirectory(AppContext.BaseDirectory), work, Progress, cancellationToken);
            await network.StartExitAsync(cancellationToken);
            Progress($"exit {TestbedNetwork.ExitId} online");
            await network.StartClientAsync(cancellationToken);
            Progress($"client {TestbedNetwork.ClientId} holds an exit");
            await network.UntilAsync(async () =>
                (await testbed.HttpGetAsync(TestbedRoles.Client, testbed.EchoUrl, EchoTimeout, cancellationToken)).Trim()
                == TestbedAddresses.ExitNatPublic.ToString(), "the client's traffic leaves through the exit", cancellationToken);
            Progress($"the echo server sees the client as {TestbedAddresses.ExitNatPublic} (the exit's NAT): full tunnel up");
            var clientLink = await LinkAsync(testbed, TestbedRoles.Client, network.ClientInterface, cancellationToken);
            var exitLink = await LinkAsync(testbed, TestbedRoles.Exit, network.ExitInterface, cancellationToken);

            var tunnel = await MeasureAsync(testbed, "tunnel", seconds, repeat, reverse, network.ClientInterface, cancellationToken);

            var results = new Dictionary<string, object>
            {
                ["mode"] = "throughput",
                ["seconds"] = seconds,
                ["repeat"] = repeat,
                ["wireguard_backend"] = clientLink.Backend == exitLink.Backend ? clientLink.Backend : $"client {clientLink.Backend}, exit {exitLink.Backend}",
                ["tunnel_mtu"] = clientLink.Mtu,
                ["cpus"] = Environment.ProcessorCount,
            };
            AddDirection(results, "", raw.Upload, tunnel.Upload);
            if (reverse)
                AddDirection(results, "reverse_", raw.Download!, tunnel.Download!);
            results["raw_source"] = raw.Upload[0].LocalHost;
            results["tunnel_source"] = tunnel.Upload[0].LocalHost;
            Program.Print(results);
            exitCode = 0;
        }
        catch (Exception ex) when (ex is ThroughputException or DemoNodeFailedException or TestbedException or HostCommandException
                                       or TimeoutException or Grpc.Core.RpcException)
        {
            await Console.Error.WriteLineAsync($"error: {ex.Message}");
        }
        finally
        {
            // The peers give their exit back and remove their interfaces, then the nodes stop; then the namespaces go.
            if (network is not null)
                await network.DisposeAsync();
            if (testbed is not null)
            {
                try
                {
                    await testbed.DisposeAsync();
                }
                catch (TestbedException ex)
                {
                    await Console.Error.WriteLineAsync($"error: {ex.Message}");
                    exitCode = 1;
                }
            }
            if (exitCode == 0)
                Directory.Delete(work, recursive: true);
            else
                await Console.Error.WriteLineAsync($"logs kept in {work} (logs/: the nodes and the iperf3 server)");
        }
        return exitCode;
    }

    /// <summary>Median Mbit/s of each side, every run, and tunnel/raw, as <c>{prefix}raw_mbps</c> ….</summary>
    private static void AddDirection(Dictionary<string, object> results, string prefix, IReadOnlyList<IperfRun> raw, IReadOnlyList<IperfRun> tunnel)
    {
        var rawMbps = Median(raw.Select(r => r.Mbps));
        var tunnelMbps = Median(tunnel.Select(r => r.Mbps));
        results[$"{prefix}raw_mbps"] = Math.Round(rawMbps, 1);
        results[$"{prefix}tunnel_mbps"] = Math.Round(tunnelMbps, 1);
        results[$"{prefix}ratio"] = Math.Round(tunnelMbps / rawMbps, 4);
        results[$"{prefix}raw_runs_mbps"] = raw.Select(r => Math.Round(r.Mbps, 1)).ToArray();
        results[$"{prefix}tunnel_runs_mbps"] = tunnel.Select(r => Math.Round(r.Mbps, 1)).ToArray();
        results[$"{prefix}raw_retransmits"] = raw.Sum(r => r.Retransmits);
        results[$"{prefix}tunnel_retransmits"] = tunnel.Sum(r => r.Retransmits);
    }

    private sealed record Measurements(IReadOnlyList<IperfRun> Upload, IReadOnlyList<IperfRun>? Download);

    /// <summary>
    /// <paramref name="repeat"/> uploads (client → internet), then as many downloads (<c>-R</c>) when asked. With
    /// <paramref name="tunnel"/> set, each run must have moved at least its bytes through that WireGuard interface.
    /// </summary>
    private static async Task<Measurements> MeasureAsync(NetnsTestbed testbed, string label, int seconds, int repeat, bool reverse, string? tunnel,
        CancellationToken cancellationToken)
    {
        var upload = new List<IperfRun>();
        var download = new List<IperfRun>();
        var directions = reverse ? new[] { (upload, false), (download, true) } : [(upload, false)];
        foreach (var (runs, isReverse) in directions)
        {
            for (var i = 1; i <= repeat; i++)
            {
                var before = tunnel is null ? default : await WireGuardBytesAsync(testbed, tunnel, cancellationToken);
                var run = await IperfAsync(testbed, seconds, isReverse, cancellationToken);
                if (tunnel is not null)
                {
                    var after = await WireGuardBytesAsync(testbed, tunnel, cancellationToken);
                    var carried = isReverse ? after.Received - before.Received : after.Sent - before.Sent;
                    if (carried < run.Bytes)
                        throw new ThroughputException($"{label} run {i}: iperf3 moved {run.Bytes} bytes but {tunnel} carried only {carried}: " +
                                                      "the traffic did not go through the tunnel");
                }
                Progress($"{label} {(isReverse ? "download (-R)" : "upload")} {i}/{repeat}: {run.Mbps:0.0} Mbit/s from {run.LocalHost}, {run.Retransmits} retransmits");
                runs.Add(run);
            }
        }
        return new Measurements(upload, reverse ? download : null);
    }

    private sealed record IperfRun(double Mbps, long Bytes, long Retransmits, string LocalHost);

    /// <summary>
    /// <c>iperf3 -c 198.51.100.1 -t T -J [-R]</c> in the client namespace, bounded; the receiver's side
    /// (<c>end.sum_received</c>: what arrived, in either direction — iperf3 3.12 reports the client's own reception there under -R).
    /// </summary>
    private static async Task<IperfRun> IperfAsync(NetnsTestbed testbed, int seconds, bool reverse, CancellationToken cancellationToken)
    {
        List<string> arguments =
        [
            "-c", TestbedAddresses.Router.ToString(), "-p", Invariant(IperfPort), "-t", Invariant(seconds), "-J",
            "--connect-timeout", Invariant((int)IperfConnectTimeout.TotalMilliseconds),
        ];
        if (reverse)
            arguments.Add("-R");
        for (var attempt = 1; ; attempt++)
        {
            using var bound = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            var limit = TimeSpan.FromSeconds(seconds) + IperfSlack;
            bound.CancelAfter(limit);
            CommandResult result;
            try
            {
                result = await testbed.For(TestbedRoles.Client).RunAsync("iperf3", arguments, cancellationToken: bound.Token);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw new TimeoutException($"`iperf3 {string.Join(' ', arguments)}` did not finish within {limit.TotalSeconds:0} s");
            }
            var (run, error) = ParseIperf(result.StandardOutput);
            if (run is not null && result.Succeeded)
                return run;
            // The server takes a moment to accept the next test after one ends.
            if (error is not null && error.Contains("busy", StringComparison.OrdinalIgnoreCase) && attempt < BusyRetries)
            {
                await Task.Delay(TimeSpan.FromSeconds(1), cancellationToken);
                continue;
            }
            throw new ThroughputException($"`iperf3 {string.Join(' ', arguments)}` in the client namespace failed (exit code {result.ExitCode}): " +
                                          $"{error ?? result.StandardError.Trim()}");
        }
    }

    /// <summary>iperf3's JSON (<c>-J</c>): the run, or the error it reports.</summary>
    private static (IperfRun? Run, string? Error) ParseIperf(string json)
    {
        try
        {
            using var document = JsonDocument.Parse(json);
            var root = document.RootElement;
            if (root.TryGetProperty("error", out var error))
                return (null, error.GetString());
            var end = root.GetProperty("end");
            var received = end.GetProperty("sum_received");
            var retransmits = end.GetProperty("sum_sent").TryGetProperty("retransmits", out var r) ? r.GetInt64() : 0;
            var localHost = root.GetProperty("start").GetProperty("connected")[0].GetProperty("local_host").GetString() ?? "";
            return (new IperfRun(received.GetProperty("bits_per_second").GetDouble() / 1e6, received.GetProperty("bytes").GetInt64(), retransmits,
                localHost), null);
        }
        catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException or IndexOutOfRangeException)
        {
            return (null, $"unreadable iperf3 JSON ({ex.Message}): {(json.Length > 300 ? json[..300] + "…" : json)}");
        }
    }

    /// <summary>Bytes the interface's peers received and sent, summed (<c>wg show IFACE transfer</c>).</summary>
    private static async Task<(long Received, long Sent)> WireGuardBytesAsync(NetnsTestbed testbed, string wgInterface, CancellationToken cancellationToken)
    {
        var text = await testbed.For(TestbedRoles.Client).RunCheckedAsync("wg", ["show", wgInterface, "transfer"], cancellationToken: cancellationToken);
        long received = 0, sent = 0;
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var fields = line.Split('\t');
            if (fields.Length != 3)
                throw new ThroughputException($"unexpected line in `wg show {wgInterface} transfer`: {line}");
            received += long.Parse(fields[1], CultureInfo.InvariantCulture);
            sent += long.Parse(fields[2], CultureInfo.InvariantCulture);
        }
        return (received, sent);
    }

    /// <summary>The WireGuard backend behind an interface (a tun device: wireguard-go; kind wireguard: the kernel) and its MTU.</summary>
    private static async Task<(string Backend, int Mtu)> LinkAsync(NetnsTestbed testbed, string role, string wgInterface, CancellationToken cancellationToken)
    {
        var json = await testbed.For(role).RunCheckedAsync("ip", ["-j", "-d", "link", "show", "dev", wgInterface], cancellationToken: cancellationToken);
        using var document = JsonDocument.Parse(json);
        var link = document.RootElement[0];
        var kind = link.TryGetProperty("linkinfo", out var info) && info.TryGetProperty("info_kind", out var k) ? k.GetString() : null;
        var backend = kind switch
        {
            "tun" => "wireguard-go",
            "wireguard" => "kernel",
            _ => $"unknown (link kind {kind ?? "none"})",
        };
        return (backend, link.GetProperty("mtu").GetInt32());
    }

    /// <summary>Until the iperf3 server listens (<c>ss</c> in the internet namespace); fails with its log if it exits.</summary>
    private static async Task WaitListeningAsync(NetnsTestbed testbed, Process server, string work, CancellationToken cancellationToken)
    {
        var listening = $"{TestbedAddresses.Router}:{IperfPort}";
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < ServerStartTimeout)
        {
            if (server.HasExited)
                throw new ThroughputException($"the iperf3 server exited with code {server.ExitCode}: {ReadShared(IperfServerLog(work)).Trim()}");
            var sockets = await testbed.For(TestbedRoles.Internet).RunCheckedAsync("ss", ["-H", "-l", "-t", "-n"], cancellationToken: cancellationToken);
            if (sockets.Split('\n').Any(line => line.Contains(listening, StringComparison.Ordinal)))
                return;
            await Task.Delay(100, cancellationToken);
        }
        throw new TimeoutException($"the iperf3 server did not listen on {listening} within {ServerStartTimeout.TotalSeconds:0} s");
    }

    private static string IperfServerLog(string work) => Path.Combine(work, "logs", "iperf3-server.log");

    private static string ReadShared(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        return new StreamReader(stream).ReadToEnd();
    }

    private static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }

    private static string Invariant(int value) => value.ToString(CultureInfo.InvariantCulture);

    /// <summary>Progress goes to stderr: stdout holds the table and the JSON line only.</summary>
    private static void Progress(string line) => Console.Error.WriteLine($"[throughput] {line}");
}

/// <summary>The throughput run could not measure what it should; the message says what and why.</summary>
internal sealed class ThroughputException(string message) : Exception(message);
