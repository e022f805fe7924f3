using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using MyDvpn.Cli.Commands;
using MyDvpn.Cli.Demo;
using MyDvpn.HostOs;
using MyDvpn.Testbed;

namespace MyDvpn.Bench;

/// <summary>
/// What the data-plane modes (<see cref="ThroughputBench"/>, <see cref="RelayBench"/>, <see cref="FailoverBench"/>) share: a
/// <see cref="NetnsTestbed"/> — for throughput and relay one, with an iperf3 server on the internet router (198.51.100.1); for
/// failover a fresh one for every measurement (<see cref="FreshTestbedAsync"/>) — the <see cref="TestbedNetwork"/> started in
/// it when the mode asks, and the measurements taken from the client namespace — iperf3 runs, each checked against the client
/// interface's WireGuard byte counters, and ping series. <see cref="RunAsync"/> owns the run: it checks the machine, tears
/// everything down at the end (failure and Ctrl-C included), keeps the logs when the run failed and prints the results.
/// </summary>
internal sealed partial class DataPlaneRun
{
    /// <summary>The programs the run uses, with the Debian package that has each.</summary>
    public static readonly IReadOnlyList<(string Program, string Package)> Tools = [.. DemoCommand.Tools, ("ss", "iproute2"), ("iperf3", "iperf3")];

    private const int IperfPort = 5201;
    private const int BusyRetries = 5;
    // Pings before a series that are not recorded: a WireGuard handshake due then does not land in a series.
    private const int WarmupPings = 3;
    private static readonly TimeSpan IperfConnectTimeout = TimeSpan.FromSeconds(5);
    // What one iperf3 run may take beyond its --seconds: connecting, the end-of-test exchange.
    private static readonly TimeSpan IperfSlack = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan ServerStartTimeout = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan EchoTimeout = TimeSpan.FromSeconds(5);

    private readonly string mode;
    // The run's directory; each testbed's network works in a directory of its own below it (the whole run's when there is one testbed).
    private readonly string root;
    private string work;
    private NetnsTestbed? testbed;
    private TestbedNetwork? network;
    // Why the run's logs are kept although it succeeded: its measurements that missed their goals.
    private readonly List<string> keptFor = [];

    private DataPlaneRun(string mode, string root)
    {
        this.mode = mode;
        this.root = root;
        work = root;
    }

    /// <summary>The testbed the run measures in now.</summary>
    public NetnsTestbed Testbed => testbed ?? throw new InvalidOperationException("no testbed is built yet");

    /// <summary>The network <see cref="StartNetworkAsync"/> or <see cref="StartNodesAsync"/> started.</summary>
    public TestbedNetwork Network => network ?? throw new InvalidOperationException("the network is not started yet");

    /// <summary>
    /// Builds a testbed with an iperf3 server, runs <paramref name="measure"/> in it and prints what it returns (plus the
    /// machine's 1-minute load average before and after: another process's load makes the numbers noisy). 0 on success;
    /// 1 when the run failed (its logs are kept), 2 when the machine cannot run it.
    /// </summary>
    public static Task<int> RunAsync(string mode, Func<DataPlaneRun, CancellationToken, Task<Dictionary<string, object>>> measure,
        CancellationToken cancellationToken) =>
        RunAsync(mode, async (run, cancel) =>
        {
            run.testbed = await NetnsTestbed.CreateAsync(cancel);
            await run.StartIperfServerAsync(cancel);
            return await measure(run, cancel);
        }, cancellationToken, firstTestbed: true);

    /// <summary>
    /// As <see cref="RunAsync(string, Func{DataPlaneRun, CancellationToken, Task{Dictionary{string, object}}}, CancellationToken)"/>, but
    /// <paramref name="measure"/> builds each testbed it measures in (<see cref="FreshTestbedAsync"/>); no iperf3 server.
    /// </summary>
    public static Task<int> RunOnFreshTestbedsAsync(string mode, Func<DataPlaneRun, CancellationToken, Task<Dictionary<string, object>>> measure,
        CancellationToken cancellationToken) =>
        RunAsync(mode, measure, cancellationToken, firstTestbed: false);

    private static async Task<int> RunAsync(string mode, Func<DataPlaneRun, CancellationToken, Task<Dictionary<string, object>>> measure,
        CancellationToken cancellationToken, bool firstTestbed)
    {
        if (!OperatingSystem.IsLinux() || !Prerequisites.IsPrivileged())
        {
            await Console.Error.WriteLineAsync($"error: {mode} mode builds network namespaces, WireGuard interfaces and NAT rules, which needs " +
                $"root (CAP_NET_ADMIN, CAP_SYS_ADMIN) on Linux: run it as root, e.g. `sudo dotnet run -c Release --project src/MyDvpn.Bench -- --mode {mode}`");
            return 2;
        }
        var missing = Prerequisites.MissingPackages(firstTestbed ? Tools : DemoCommand.Tools);
        if (missing.Count > 0)
        {
            await Console.Error.WriteLineAsync($"error: {mode} mode needs these Debian packages: {string.Join(' ', missing)} " +
                                               $"(apt-get install {string.Join(' ', missing)})");
            return 2;
        }

        var run = new DataPlaneRun(mode, Directory.CreateTempSubdirectory($"mydvpn-bench-{mode}-").FullName);
        var exitCode = 1;
        try
        {
            var loadBefore = LoadAverage();
            var results = await measure(run, cancellationToken);
            results["load_1m"] = new[] { loadBefore, LoadAverage() };
            Program.Print(results);
            exitCode = 0;
        }
        catch (Exception ex) when (ex is DataPlaneBenchException or DemoNodeFailedException or TestbedException or HostCommandException
                                       or TimeoutException or Grpc.Core.RpcException or IOException or JsonException)
        {
            await Console.Error.WriteLineAsync($"error: {ex.Message}");
        }
        finally
        {
            try
            {
                await run.TearDownAsync();
            }
            catch (TestbedException ex)
            {
                await Console.Error.WriteLineAsync($"error: {ex.Message}");
                exitCode = 1;
            }
            if (exitCode == 0 && run.keptFor.Count == 0)
                Directory.Delete(run.root, recursive: true);
            else
                await Console.Error.WriteLineAsync($"logs kept in {run.root} (logs/ of each testbed's network: the nodes, the peers and any iperf3 server)" +
                                                   (run.keptFor.Count > 0 ? $" for {string.Join("; ", run.keptFor)}" : ""));
        }
        return exitCode;
    }

    /// <summary>
    /// Tears down the network and the testbed the run had, if any, and builds a new testbed (with <c>exit2</c> behind its own NAT
    /// when <paramref name="secondExit"/>); its network will work in a directory of its own, <paramref name="label"/>.
    /// </summary>
    /// <exception cref="TestbedException">The testbed before left something behind.</exception>
    public async Task<NetnsTestbed> FreshTestbedAsync(string label, bool secondExit, CancellationToken cancellationToken)
    {
        await TearDownAsync();
        work = Path.Combine(root, label);
        testbed = await NetnsTestbed.CreateAsync(secondExit, cancellationToken);
        Progress($"testbed {testbed.Id} up for {label}{(secondExit ? " (with exit2)" : "")}");
        return testbed;
    }

    /// <summary>The peers give their exit back and remove their interfaces, then the nodes stop; then the namespaces go.</summary>
    private async Task TearDownAsync()
    {
        var (started, built) = (network, testbed);
        (network, testbed) = (null, null);
        try
        {
            if (started is not null)
                await started.DisposeAsync();
        }
        finally
        {
            if (built is not null)
                await built.DisposeAsync();
        }
    }

    /// <summary>
    /// Starts the BaseNode, both SuperNodes, the exit and the client (see <see cref="TestbedNetwork"/>), with the second exit
    /// before the client when the testbed has one; returns once the echo server sees the client as the NAT of the exit it holds.
    /// </summary>
    /// <param name="relayKernelOffload">The SuperNodes' kernels forward established relay legs (Super:Relay:KernelOffload).</param>
    public async Task<TestbedNetwork> StartNetworkAsync(CancellationToken cancellationToken, bool relayKernelOffload = false)
    {
        var started = await StartNodesAsync(cancellationToken, relayKernelOffload);
        var status = await started.StartClientAsync(cancellationToken);
        var held = started.ExitHostOf(status.GetProperty("exit").GetProperty("peerId").GetString()!);
        Progress($"client {TestbedNetwork.ClientId} holds exit {held.PeerId}");
        await started.UntilAsync(async () => await EchoAsync(cancellationToken) == held.NatPublic.ToString(),
            $"the client's traffic leaves through {held.PeerId}", cancellationToken);
        Progress($"the echo server sees the client as {held.NatPublic} ({held.PeerId}'s NAT): full tunnel up");
        return started;
    }

    /// <summary>
    /// Starts the BaseNode, both SuperNodes and the exit (see <see cref="TestbedNetwork"/>), and the second exit when the testbed
    /// has one; no client yet.
    /// </summary>
    /// <param name="relayKernelOffload">The SuperNodes' kernels forward established relay legs (Super:Relay:KernelOffload).</param>
    /// <param name="exitRegionSuperNodes">How many SuperNodes the exit's region has (1 to 3).</param>
    public async Task<TestbedNetwork> StartNodesAsync(CancellationToken cancellationToken, bool relayKernelOffload = false, int exitRegionSuperNodes = 1)
    {
        if (network is not null)
            throw new InvalidOperationException("the network is already started");
        network = await TestbedNetwork.StartAsync(Testbed, MydvpnExecutable.InDirectory(AppContext.BaseDirectory), work, Progress, cancellationToken,
            exitRegionSuperNodes, relayKernelOffload);
        await network.StartExitAsync(cancellationToken);
        Progress($"exit {TestbedNetwork.ExitId} online");
        if (Testbed.Namespaces.SecondExit)
        {
            await network.StartSecondExitAsync(cancellationToken);
            Progress($"exit {TestbedNetwork.SecondExitId} online");
        }
        return network;
    }

    /// <summary>The address the echo server on the internet router sees the client namespace as.</summary>
    public async Task<string> EchoAsync(CancellationToken cancellationToken) =>
        (await Testbed.HttpGetAsync(TestbedRoles.Client, Testbed.EchoUrl, EchoTimeout, cancellationToken)).Trim();

    public sealed record Measurements(IReadOnlyList<IperfRun> Upload, IReadOnlyList<IperfRun>? Download);

    public sealed record IperfRun(double Mbps, long Bytes, long Retransmits, string LocalHost);

    /// <summary>
    /// <paramref name="repeat"/> uploads (client → internet), then as many downloads (<c>-R</c>) when asked. With
    /// <paramref name="tunnel"/> set, each run must have moved at least its bytes through that WireGuard interface.
    /// </summary>
    public async Task<Measurements> IperfSeriesAsync(string label, int seconds, int repeat, bool reverse, string? tunnel,
        CancellationToken cancellationToken)
    {
        var upload = new List<IperfRun>();
        var download = new List<IperfRun>();
        var directions = reverse ? new[] { (upload, false), (download, true) } : [(upload, false)];
        foreach (var (runs, isReverse) in directions)
        {
            for (var i = 1; i <= repeat; i++)
            {
                var before = tunnel is null ? default : await WireGuardBytesAsync(tunnel, cancellationToken);
                var run = await IperfAsync(seconds, isReverse, cancellationToken);
                if (tunnel is not null)
                {
                    var after = await WireGuardBytesAsync(tunnel, cancellationToken);
                    var carried = isReverse ? after.Received - before.Received : after.Sent - before.Sent;
                    if (carried < run.Bytes)
                        throw new DataPlaneBenchException($"{label} run {i}: iperf3 moved {run.Bytes} bytes but {tunnel} carried only {carried}: " +
                                                          "the traffic did not go through the tunnel");
                }
                Progress($"{label} {(isReverse ? "download (-R)" : "upload")} {i}/{repeat}: {run.Mbps:0.0} Mbit/s from {run.LocalHost}, " +
                         $"{run.Retransmits} retransmits");
                runs.Add(run);
            }
        }
        return new Measurements(upload, reverse ? download : null);
    }

    /// <summary>One <c>ping -c COUNT</c>: its summary and the round trip of every reply, in milliseconds.</summary>
    public sealed record PingSeries(PingResult Summary, IReadOnlyList<double> RoundTripsMs);

    /// <summary>
    /// <paramref name="series"/> runs of <c>ping -c COUNT</c> from the client namespace to the internet router, after a few
    /// unrecorded pings (a WireGuard handshake due then does not land in a series); each series must get answers (loss is
    /// reported, not an error).
    /// </summary>
    public async Task<IReadOnlyList<PingSeries>> PingSeriesAsync(string label, int count, int series, CancellationToken cancellationToken)
    {
        await PingAsync(WarmupPings, cancellationToken);
        var results = new List<PingSeries>();
        for (var i = 1; i <= series; i++)
        {
            var ping = await PingAsync(count, cancellationToken);
            if (ping.Summary.AverageRoundTrip is not { } average || ping.RoundTripsMs.Count == 0)
                throw new DataPlaneBenchException($"{label} ping {i}/{series}: none of {ping.Summary.Transmitted} pings to {TestbedAddresses.Router} was answered");
            Progress($"{label} ping {i}/{series}: avg {average.TotalMilliseconds:0.000} ms, median {Median(ping.RoundTripsMs):0.000} ms, " +
                     $"{ping.Summary.Received}/{ping.Summary.Transmitted} answered");
            results.Add(ping);
        }
        return results;
    }

    /// <summary>
    /// Median Mbit/s of each side, every run, and second/first as <c>{prefix}{first}_mbps</c>, <c>{prefix}{second}_mbps</c>,
    /// <c>{prefix}ratio</c> ….
    /// </summary>
    public static void AddDirection(Dictionary<string, object> results, string prefix, string first, IReadOnlyList<IperfRun> firstRuns,
        string second, IReadOnlyList<IperfRun> secondRuns)
    {
        var firstMbps = Median(firstRuns.Select(r => r.Mbps));
        var secondMbps = Median(secondRuns.Select(r => r.Mbps));
        results[$"{prefix}{first}_mbps"] = Math.Round(firstMbps, 1);
        results[$"{prefix}{second}_mbps"] = Math.Round(secondMbps, 1);
        results[$"{prefix}ratio"] = Math.Round(secondMbps / firstMbps, 4);
        results[$"{prefix}{first}_runs_mbps"] = firstRuns.Select(r => Math.Round(r.Mbps, 1)).ToArray();
        results[$"{prefix}{second}_runs_mbps"] = secondRuns.Select(r => Math.Round(r.Mbps, 1)).ToArray();
        results[$"{prefix}{first}_retransmits"] = firstRuns.Sum(r => r.Retransmits);
        results[$"{prefix}{second}_retransmits"] = secondRuns.Sum(r => r.Retransmits);
    }

    /// <summary>
    /// What a namespace's kernel and processes did so far: UDP datagrams dropped for a full socket receive buffer
    /// (<c>UdpRcvbufErrors</c>) and CPU seconds (user + system) of each process in it; two of them give
    /// <see cref="Usage"/>.
    /// </summary>
    public sealed record NamespaceSample(long UdpReceiveBufferErrors, IReadOnlyDictionary<int, double> CpuSeconds, long Timestamp);

    /// <summary>The role's namespace now (<c>nstat</c> in it; <c>ip netns pids</c> and <c>/proc/PID/stat</c> on the host).</summary>
    public async Task<NamespaceSample> SampleAsync(string role, CancellationToken cancellationToken)
    {
        var snmp = await Testbed.For(role).RunCheckedAsync("nstat", ["-a", "-s", "-z", "UdpRcvbufErrors"], cancellationToken: cancellationToken);
        var errors = snmp.Split('\n').Select(line => line.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .FirstOrDefault(fields => fields.Length >= 2 && fields[0] == "UdpRcvbufErrors") is { } counter
            ? long.Parse(counter[1], CultureInfo.InvariantCulture)
            : throw new DataPlaneBenchException($"`nstat` in {Testbed.Namespaces.Name(role)} shows no UdpRcvbufErrors: {snmp.Trim()}");
        var pids = await HostCommand.Host.RunCheckedAsync("ip", ["netns", "pids", Testbed.Namespaces.Name(role)], cancellationToken: cancellationToken);
        var cpu = new Dictionary<int, double>();
        foreach (var pid in pids.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(p => int.Parse(p, CultureInfo.InvariantCulture)))
        {
            string stat;
            try
            {
                stat = await File.ReadAllTextAsync($"/proc/{pid}/stat", cancellationToken);
            }
            catch (IOException)
            {
                continue; // gone since it was listed
            }
            // After the command name in parentheses: state is field 3, utime and stime fields 14 and 15, in clock ticks (USER_HZ, 100 on Linux).
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            cpu[pid] = (long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture)) / 100.0;
        }
        return new NamespaceSample(errors, cpu, Stopwatch.GetTimestamp());
    }

    /// <summary>
    /// Between two samples: the UDP receive-buffer drops, and the CPU the namespace's processes used as percent of one
    /// core (processes alive at both samples only: a short-lived one, such as an iperf3 client, is not counted).
    /// </summary>
    public static (long UdpReceiveBufferDrops, double CpuPercent) Usage(NamespaceSample before, NamespaceSample after)
    {
        var seconds = Stopwatch.GetElapsedTime(before.Timestamp, after.Timestamp).TotalSeconds;
        var cpu = after.CpuSeconds.Where(p => before.CpuSeconds.ContainsKey(p.Key)).Sum(p => p.Value - before.CpuSeconds[p.Key]);
        return (after.UdpReceiveBufferErrors - before.UdpReceiveBufferErrors, Math.Round(100 * cpu / seconds, 1));
    }

    /// <summary>The WireGuard backend behind an interface (a tun device: wireguard-go; kind wireguard: the kernel) and its MTU.</summary>
    public async Task<(string Backend, int Mtu)> LinkAsync(string role, string wgInterface, CancellationToken cancellationToken)
    {
        var json = await Testbed.For(role).RunCheckedAsync("ip", ["-j", "-d", "link", "show", "dev", wgInterface], cancellationToken: cancellationToken);
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

    /// <summary>Progress goes to stderr: stdout holds the table and the JSON line only.</summary>
    public void Progress(string line) => Console.Error.WriteLine($"[{mode}] {line}");

    /// <summary>Keeps the run's logs when it ends (the current testbed's are in <c>logs/</c> of its label's directory).</summary>
    public void KeepLogs(string why) => keptFor.Add($"{Path.GetFileName(work)}: {why}");

    public static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }

    private async Task StartIperfServerAsync(CancellationToken cancellationToken)
    {
        Progress($"testbed {Testbed.Id} up; iperf3 server on {TestbedAddresses.Router}:{IperfPort} in {Testbed.Namespaces.Internet}");
        var server = await Testbed.StartAsync(TestbedRoles.Internet, "iperf3",
            ["-s", "-B", TestbedAddresses.Router.ToString(), "-p", Invariant(IperfPort)], null, IperfServerLog, cancellationToken);
        await WaitListeningAsync(server, cancellationToken);
    }

    /// <summary>
    /// <c>iperf3 -c 198.51.100.1 -t T -J [-R]</c> in the client namespace, bounded; the receiver's side
    /// (<c>end.sum_received</c>: what arrived, in either direction — iperf3 3.12 reports the client's own reception there under -R).
    /// </summary>
    private async Task<IperfRun> IperfAsync(int seconds, bool reverse, CancellationToken cancellationToken)
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
                result = await Testbed.For(TestbedRoles.Client).RunAsync("iperf3", arguments, cancellationToken: bound.Token);
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
            throw new DataPlaneBenchException($"`iperf3 {string.Join(' ', arguments)}` in the client namespace failed (exit code {result.ExitCode}): " +
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
    private async Task<(long Received, long Sent)> WireGuardBytesAsync(string wgInterface, CancellationToken cancellationToken)
    {
        var text = await Testbed.For(TestbedRoles.Client).RunCheckedAsync("wg", ["show", wgInterface, "transfer"], cancellationToken: cancellationToken);
        long received = 0, sent = 0;
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var fields = line.Split('\t');
            if (fields.Length != 3)
                throw new DataPlaneBenchException($"unexpected line in `wg show {wgInterface} transfer`: {line}");
            received += long.Parse(fields[1], CultureInfo.InvariantCulture);
            sent += long.Parse(fields[2], CultureInfo.InvariantCulture);
        }
        return (received, sent);
    }

    /// <summary>Until the iperf3 server listens (<c>ss</c> in the internet namespace); fails with its log if it exits.</summary>
    private async Task WaitListeningAsync(Process server, CancellationToken cancellationToken)
    {
        var listening = $"{TestbedAddresses.Router}:{IperfPort}";
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < ServerStartTimeout)
        {
            if (server.HasExited)
                throw new DataPlaneBenchException($"the iperf3 server exited with code {server.ExitCode}: {ReadShared(IperfServerLog).Trim()}");
            var sockets = await Testbed.For(TestbedRoles.Internet).RunCheckedAsync("ss", ["-H", "-l", "-t", "-n"], cancellationToken: cancellationToken);
            if (sockets.Split('\n').Any(line => line.Contains(listening, StringComparison.Ordinal)))
                return;
            await Task.Delay(100, cancellationToken);
        }
        throw new TimeoutException($"the iperf3 server did not listen on {listening} within {ServerStartTimeout.TotalSeconds:0} s");
    }

    private string IperfServerLog => Path.Combine(work, "logs", "iperf3-server.log");

    private static string ReadShared(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        return new StreamReader(stream).ReadToEnd();
    }

    /// <summary>
    /// <c>ping -n -c COUNT</c> from the client namespace to the internet router, 0.2 s apart, each reply awaited at most 1 s,
    /// the whole run bounded (as <see cref="NetnsTestbed.PingAsync"/>, which reports only the average); every reply's time read.
    /// </summary>
    private async Task<PingSeries> PingAsync(int count, CancellationToken cancellationToken)
    {
        var deadlineSeconds = (int)Math.Ceiling(count * 0.2) + 2;
        List<string> arguments =
            ["-n", "-c", Invariant(count), "-i", "0.2", "-W", "1", "-w", Invariant(deadlineSeconds), TestbedAddresses.Router.ToString()];
        using var bound = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var limit = TimeSpan.FromSeconds(deadlineSeconds + 10);
        bound.CancelAfter(limit);
        CommandResult result;
        try
        {
            result = await Testbed.For(TestbedRoles.Client).RunAsync("ping", arguments, cancellationToken: bound.Token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new TimeoutException($"`ping {string.Join(' ', arguments)}` did not finish within {limit.TotalSeconds:0} s");
        }
        // iputils: 0 all answered, 1 some or all lost, 2 anything else.
        if (result.ExitCode is not (0 or 1))
            result.EnsureSuccess();
        try
        {
            var roundTrips = ReplyTime().Matches(result.StandardOutput).Select(m => double.Parse(m.Groups["ms"].Value, CultureInfo.InvariantCulture));
            return new PingSeries(PingResult.Parse(result.StandardOutput), [.. roundTrips]);
        }
        catch (FormatException)
        {
            throw new HostCommandException(result);
        }
    }

    [GeneratedRegex(@" time=(?<ms>[\d.]+) ms")]
    private static partial Regex ReplyTime();

    /// <summary>The machine's 1-minute load average (<c>/proc/loadavg</c>).</summary>
    private static double LoadAverage() =>
        double.Parse(File.ReadAllText("/proc/loadavg").Split(' ')[0], CultureInfo.InvariantCulture);

    private static string Invariant(int value) => value.ToString(CultureInfo.InvariantCulture);
}

/// <summary>A data-plane run could not measure what it should; the message says what and why.</summary>
internal sealed class DataPlaneBenchException(string message) : Exception(message);
