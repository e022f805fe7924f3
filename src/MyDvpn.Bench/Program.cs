using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using MyDvpn.Common;
using MyDvpn.Hosting;
using MyDvpn.Protocol.Control;
using MyDvpn.Protocol.SuperNode;
using MyDvpn.Security;
using MyDvpn.SuperNode.Commands;

namespace MyDvpn.Bench;

/// <summary>
/// <c>mydvpn-bench</c>: starts a real BaseNode and SuperNodes (separate processes, TLS, SQLite, see
/// <see cref="BenchCluster"/>) and measures them from outside; throughput mode measures the data plane in network
/// namespaces (<see cref="ThroughputBench"/>), relay mode the relayed tunnel against the direct one
/// (<see cref="RelayBench"/>), and failover mode the client's recovery from a killed or drained exit and its first packet
/// through a relay (<see cref="FailoverBench"/>). Prints a table and one JSON line. Not part of the tests.
/// </summary>
public static class Program
{
    private const string Region = "bench";
    private const int DefaultTimeoutSeconds = 900;

    // After Ctrl-C or SIGTERM: time for the run to stop its peers and nodes and remove its namespaces.
    private static readonly TimeSpan TeardownGrace = TimeSpan.FromSeconds(150);

    public static Task<int> Main(string[] args)
    {
        var mode = new Option<string>("--mode")
        {
            Description = "streams | commands | reconnect (all streams dropped, then re-authenticated) | setup (cross-region exit setups) "
                          + "| throughput (iperf3 through the WireGuard tunnel vs the raw path, in network namespaces; root) "
                          + "| relay (iperf3 and ping through the tunnel relayed by the SuperNodes vs direct, in network namespaces; root) "
                          + "| failover (pinging through the tunnel every 50 ms: recovery from a kill -9 of the serving exit, pings lost in a drain, "
                          + "the first packet through a relay; in network namespaces; root)",
            Required = true,
        };
        var streams = new Option<int>("--streams") { Description = "Authenticated streams to open, each its own TLS connection", DefaultValueFactory = _ => 1000 };
        var commands = new Option<int>("--commands") { Description = "commands mode: commands to time", DefaultValueFactory = _ => 2000 };
        var setups = new Option<int>("--setups") { Description = "setup mode: exit setups to time, one client each", DefaultValueFactory = _ => 100 };
        var concurrency = new Option<int?>("--concurrency")
        {
            Description = "Connections opened / commands issued / setups run at once (default 64; setup mode: 1, one setup after another)",
        };
        var seconds = new Option<int>("--seconds") { Description = "throughput, relay modes: seconds each iperf3 run lasts (-t)", DefaultValueFactory = _ => 10 };
        var repeat = new Option<int?>("--repeat")
        {
            Description = "throughput, relay modes: iperf3 runs (relay mode: and ping series) per path and direction (default 1); "
                          + $"failover mode: runs, each measurement on a fresh testbed (default {FailoverBench.DefaultRepeat}); the median is reported",
        };
        var reverse = new Option<bool>("--reverse") { Description = "throughput, relay modes: also measure the download direction (iperf3 -R)" };
        var pings = new Option<int>("--pings") { Description = "relay mode: pings per series through the tunnel, 0.2 s apart", DefaultValueFactory = _ => 20 };
        var kernelOffload = new Option<bool>("--kernel-offload")
        {
            Description = "relay mode: the SuperNodes' kernels forward established relay legs (Super:Relay:KernelOffload); else their processes do",
        };
        var timeout = new Option<int?>("--timeout")
        {
            Description = $"The whole run, in seconds, at most (default {DefaultTimeoutSeconds}; failover mode: {FailoverBench.TimeoutSecondsPerRun} per run)",
        };
        var root = new RootCommand("myDvpn benchmarks: SuperNode streams, command round trips, exit setups, tunnel throughput, the relay and exit failover")
        {
            mode, streams, commands, setups, concurrency, seconds, repeat, reverse, pings, kernelOffload, timeout,
        };
        root.SetAction((parse, ct) => RunAsync(parse.GetRequiredValue(mode), parse.GetValue(streams), parse.GetValue(commands), parse.GetValue(setups),
            parse.GetValue(concurrency), parse.GetValue(seconds), parse.GetValue(repeat), parse.GetValue(reverse), parse.GetValue(pings),
            parse.GetValue(kernelOffload), parse.GetValue(timeout), ct));
        return root.Parse(args).InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = TeardownGrace });
    }

    private static async Task<int> RunAsync(string mode, int streamCount, int commandCount, int setupCount, int? concurrency, int seconds,
        int? repeatOption, bool reverse, int pingCount, bool kernelOffload, int? timeoutOption, CancellationToken cancellationToken)
    {
        var repeat = repeatOption ?? (mode == "failover" ? FailoverBench.DefaultRepeat : 1);
        var timeoutSeconds = timeoutOption ?? (mode == "failover" ? FailoverBench.TimeoutSecondsPerRun * repeat : DefaultTimeoutSeconds);
        if (mode is not ("streams" or "commands" or "reconnect" or "setup" or "throughput" or "relay" or "failover") || streamCount < 1
            || commandCount < 1 || setupCount < 1 || concurrency < 1 || seconds < 1 || repeat < 1 || pingCount < 1 || timeoutSeconds < 1)
        {
            await Console.Error.WriteLineAsync("error: --mode streams|commands|reconnect|setup|throughput|relay|failover, --streams >= 1, "
                                               + "--commands >= 1, --setups >= 1, --concurrency >= 1, --seconds >= 1, --repeat >= 1, --pings >= 1, "
                                               + "--timeout >= 1");
            return 2;
        }
        var needed = mode switch
        {
            "throughput" => ThroughputBench.EstimatedSeconds(seconds, repeat, reverse),
            "relay" => RelayBench.EstimatedSeconds(seconds, repeat, reverse, pingCount),
            "failover" => FailoverBench.EstimatedSeconds(repeat),
            _ => 0,
        };
        if (needed > timeoutSeconds)
        {
            var asked = mode == "failover"
                ? $"--repeat {repeat}"
                : $"--seconds {seconds} --repeat {repeat}{(reverse ? " --reverse" : "")}{(mode == "relay" ? $" --pings {pingCount}" : "")}";
            await Console.Error.WriteLineAsync($"error: {asked} needs about {needed} s, more than --timeout {timeoutSeconds}: raise --timeout");
            return 2;
        }
        using var run = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        run.CancelAfter(TimeSpan.FromSeconds(timeoutSeconds));
        try
        {
            return mode switch
            {
                "setup" => await RunSetupsAsync(setupCount, concurrency ?? 1, run.Token),
                "throughput" => await ThroughputBench.RunAsync(seconds, repeat, reverse, run.Token),
                "relay" => await RelayBench.RunAsync(seconds, repeat, reverse, pingCount, kernelOffload, run.Token),
                "failover" => await FailoverBench.RunAsync(repeat, run.Token),
                _ => await RunStreamsAsync(mode, streamCount, commandCount, concurrency ?? 64, run.Token),
            };
        }
        catch (OperationCanceledException) when (run.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            await Console.Error.WriteLineAsync($"error: the run did not finish within {timeoutSeconds} s (--timeout)");
            return 1;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            await Console.Error.WriteLineAsync("interrupted: torn down");
            return 130;
        }
    }

    private static async Task<int> RunStreamsAsync(string mode, int streamCount, int commandCount, int concurrency, CancellationToken cancellationToken)
    {
        await using var cluster = BenchCluster.Create();
        await cluster.StartBaseNodeAsync(cancellationToken);
        var super = await cluster.StartSuperNodeAsync("sn-bench", Region, streamCount + 100, cancellationToken);
        var tokens = await cluster.CreateTokensAsync(PeerRole.Client, Region, streamCount, cancellationToken);

        var rssBefore = RssBytes(super.Process.Id);
        var keys = Enumerable.Range(0, streamCount).Select(_ => IdentityKey.Generate()).ToArray();
        var peers = new List<BenchPeer>();
        var failures = 0;
        async Task<double> ConnectAllAsync()
        {
            var clock = Stopwatch.StartNew();
            var opened = await cluster.ConnectManyAsync(streamCount, concurrency, i => BenchPeer.ConnectAsync(super.Listen, cluster.CaCertificate,
                $"bench-{i:D6}", keys[i], PeerRole.Client, Region, tokens[i / BenchCluster.TokenUses], 0, cancellationToken), cancellationToken);
            peers.AddRange(opened.OfType<BenchPeer>());
            failures += opened.Count(p => p is null);
            return clock.Elapsed.TotalSeconds;
        }
        var connectSeconds = await ConnectAllAsync();
        double? reconnectSeconds = null;
        if (mode == "reconnect")
        {
            // Every peer drops its stream at once and comes back with its key (already enrolled).
            await cluster.CloseTrackedAsync();
            peers.Clear();
            // Old and new sockets together would pass the file-descriptor limit: let the
            // SuperNode close the old streams first.
            await WaitForOpenStreamsAsync(super.Metrics, 0, cancellationToken);
            reconnectSeconds = await ConnectAllAsync();
        }
        // Let the SuperNode settle (heartbeats, GC) before reading its memory.
        await Task.Delay(TimeSpan.FromSeconds(5), cancellationToken);
        var rssAfter = RssBytes(super.Process.Id);

        var results = new Dictionary<string, object>
        {
            ["mode"] = mode,
            ["streams_requested"] = streamCount,
            ["streams_open"] = peers.Count,
            ["stream_failures"] = failures,
            ["connect_seconds"] = Math.Round(connectSeconds, 2),
            ["connects_per_second"] = Math.Round(peers.Count / connectSeconds, 1),
            ["supernode_rss_mib"] = Math.Round(rssAfter / 1048576.0, 1),
            ["supernode_rss_before_mib"] = Math.Round(rssBefore / 1048576.0, 1),
            ["bytes_per_stream"] = peers.Count == 0 ? 0 : (rssAfter - rssBefore) / peers.Count,
        };
        if (reconnectSeconds is { } seconds)
        {
            results["reconnect_seconds"] = Math.Round(seconds, 2);
            results["reconnects_per_second"] = Math.Round(peers.Count / seconds, 1);
        }

        if (mode == "commands" && peers.Count > 0)
        {
            using var nodeTls = cluster.LoadClientTls();
            using var superChannel = GrpcChannels.MutualTls(super.Listen, nodeTls, ExpectedServer.AnySuperNode);
            var client = new SuperNodePeers.SuperNodePeersClient(superChannel);
            var latencies = new double[commandCount];
            var commandFailures = 0;
            using var gate = new SemaphoreSlim(concurrency);
            var commandClock = Stopwatch.StartNew();
            var issuing = Enumerable.Range(0, commandCount).Select(async i =>
            {
                await gate.WaitAsync(cancellationToken);
                try
                {
                    var peer = peers[i % peers.Count];
                    var started = Stopwatch.GetTimestamp();
                    var answer = await client.IssueCommandAsync(new IssueCommandRequest
                    {
                        PeerId = peer.PeerId,
                        Command = PeerCommands.Disconnect("benchmark"),
                        Wait = true,
                    }, cancellationToken: cancellationToken);
                    latencies[i] = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
                    if (answer.OutcomeCase != IssueCommandResponse.OutcomeOneofCase.Response)
                        Interlocked.Increment(ref commandFailures);
                }
                finally
                {
                    gate.Release();
                }
            }).ToList();
            await Task.WhenAll(issuing);
            results["commands"] = commandCount;
            results["command_failures"] = commandFailures;
            results["command_concurrency"] = concurrency;
            results["commands_per_second"] = Math.Round(commandCount / commandClock.Elapsed.TotalSeconds, 1);
            AddLatencies(results, "command", latencies);
        }

        Print(results);
        cluster.Succeeded = failures == 0;
        return cluster.Succeeded ? 0 : 1;
    }

    /// <summary>
    /// setup mode: the control-plane latency of a cross-region exit setup. A BaseNode, SuperNode sn-a (region a, the
    /// clients) and sn-b (region b, one exit); each client asks once for an exit in b and the clock runs from its
    /// ExitRequest until it has acked its SetupExit (and, a second column, until that SetupExit arrived).
    /// </summary>
    private static async Task<int> RunSetupsAsync(int setupCount, int concurrency, CancellationToken cancellationToken)
    {
        const string clientRegion = "a", exitRegion = "b";
        // The session allocates within 25 s and gives the client 15 s to apply its half (ExitSettings defaults).
        var setupTimeout = TimeSpan.FromSeconds(60);
        const int warmupAttempts = 20;
        var warmupDelay = TimeSpan.FromMilliseconds(250);

        await using var cluster = BenchCluster.Create();
        await cluster.StartBaseNodeAsync(cancellationToken);
        // Region b first: sn-a's first directory-cache refresh then already lists it.
        var superB = await cluster.StartSuperNodeAsync("sn-b", exitRegion, setupCount + 100, cancellationToken);
        var superA = await cluster.StartSuperNodeAsync("sn-a", clientRegion, setupCount + 100, cancellationToken);
        var exitToken = (await cluster.CreateTokensAsync(PeerRole.Exit, exitRegion, 1, cancellationToken))[0];
        // One client more than timed: the first is the warm-up.
        var clientCount = setupCount + 1;
        var clientTokens = await cluster.CreateTokensAsync(PeerRole.Client, clientRegion, clientCount, cancellationToken);

        var exit = await BenchPeer.ConnectAsync(superB.Listen, cluster.CaCertificate, "bench-exit", IdentityKey.Generate(), PeerRole.Exit, exitRegion,
            exitToken, (uint)(clientCount + 10), cancellationToken);
        cluster.Track(exit);
        // Connecting is not timed: at least 16 at once even when the setups run one by one.
        var clients = await cluster.ConnectManyAsync(clientCount, Math.Max(concurrency, 16), i => BenchPeer.ConnectAsync(superA.Listen,
            cluster.CaCertificate, $"client-{i:D6}", IdentityKey.Generate(), PeerRole.Client, clientRegion,
            clientTokens[i / BenchCluster.TokenUses], 0, cancellationToken), cancellationToken);
        if (clients.Any(c => c is null))
        {
            await Console.Error.WriteLineAsync($"error: {clients.Count(c => c is null)} of {clientCount} clients could not connect");
            return 1;
        }

        // The exit's session announces it to region b's pool when its stream attaches; until the pool has it (and
        // sn-a's directory cache lists region b) a request is refused. The first client asks until it gets an exit.
        var warmupClock = Stopwatch.StartNew();
        ExitOutcome warmup;
        var attempt = 0;
        while (true)
        {
            attempt++;
            warmup = await clients[0]!.RequestExitAsync(exitRegion, WireGuardKey.Generate().PublicKey, setupTimeout, cancellationToken);
            if (warmup is not ExitOutcome.Refused { Failure.Reason: RefusalReason.NoExitAvailable or RefusalReason.UnknownRegion } || attempt == warmupAttempts)
                break;
            await Console.Error.WriteLineAsync($"warm-up attempt {attempt}: {warmup}");
            await Task.Delay(warmupDelay, cancellationToken);
        }
        if (warmup is not ExitOutcome.SetUp)
        {
            await Console.Error.WriteLineAsync($"error: warm-up setup failed after {attempt} attempts: {warmup}");
            return 1;
        }
        var warmupMs = warmupClock.Elapsed.TotalMilliseconds;

        var toSetupExit = new List<double>();
        var toAck = new List<double>();
        var failures = 0;
        using var gate = new SemaphoreSlim(concurrency);
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(1, setupCount).Select(async i =>
        {
            await gate.WaitAsync(cancellationToken);
            try
            {
                var outcome = await clients[i]!.RequestExitAsync(exitRegion, WireGuardKey.Generate().PublicKey, setupTimeout, cancellationToken);
                if (outcome is ExitOutcome.SetUp setUp)
                {
                    lock (toAck)
                    {
                        toSetupExit.Add(setUp.SetupExitAfter.TotalMilliseconds);
                        toAck.Add(setUp.AckedAfter.TotalMilliseconds);
                    }
                }
                else if (Interlocked.Increment(ref failures) <= 10)
                {
                    await Console.Error.WriteLineAsync($"setup {i} (client-{i:D6}) failed: {outcome}");
                }
            }
            finally
            {
                gate.Release();
            }
        }));
        var seconds = clock.Elapsed.TotalSeconds;

        var results = new Dictionary<string, object>
        {
            ["mode"] = "setup",
            ["setups"] = setupCount,
            ["setup_failures"] = failures,
            ["setup_concurrency"] = concurrency,
            ["warmup_attempts"] = attempt,
            ["warmup_ms"] = Math.Round(warmupMs, 1),
            ["setups_per_second"] = Math.Round(toAck.Count / seconds, 1),
        };
        // Successful setups only: request → ack written, then request → SetupExit received.
        AddLatencies(results, "setup", [.. toAck]);
        AddLatencies(results, "setup_exit_received", [.. toSetupExit]);
        Print(results);
        cluster.Succeeded = failures == 0;
        return cluster.Succeeded ? 0 : 1;
    }

    /// <summary>p50, p99 and max of <paramref name="milliseconds"/> (sorted in place) as <c>{prefix}_p50_ms</c> ….</summary>
    private static void AddLatencies(Dictionary<string, object> results, string prefix, double[] milliseconds)
    {
        Array.Sort(milliseconds);
        results[$"{prefix}_p50_ms"] = Math.Round(Percentile(milliseconds, 0.50), 2);
        results[$"{prefix}_p99_ms"] = Math.Round(Percentile(milliseconds, 0.99), 2);
        results[$"{prefix}_max_ms"] = Math.Round(milliseconds.Length == 0 ? 0 : milliseconds[^1], 2);
    }

    /// <summary>
    /// One line per result (an array's values space-separated; a nested result's parts as <c>name value</c> on its line), then all
    /// of them as one JSON line.
    /// </summary>
    internal static void Print(Dictionary<string, object> results)
    {
        foreach (var (name, value) in results)
            Console.WriteLine($"{name,-26} {Cell(value)}");
        Console.WriteLine(JsonSerializer.Serialize(results));

        static string Cell(object value) => value switch
        {
            double[] values => string.Join(' ', values),
            Dictionary<string, object> nested => string.Join("   ", nested.Select(part => $"{part.Key} {Cell(part.Value)}")),
            _ => value.ToString() ?? "",
        };
    }

    private static async Task WaitForOpenStreamsAsync(HostPort metrics, int expected, CancellationToken cancellationToken)
    {
        using var http = new HttpClient();
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < TimeSpan.FromSeconds(120))
        {
            var text = await http.GetStringAsync($"http://{metrics}/metrics", cancellationToken);
            var line = text.Split('\n').FirstOrDefault(l => l.StartsWith("mydvpn_streams_open ", StringComparison.Ordinal));
            if (line is not null && double.Parse(line["mydvpn_streams_open ".Length..], CultureInfo.InvariantCulture) <= expected)
                return;
            await Task.Delay(250, cancellationToken);
        }
        throw new TimeoutException($"the SuperNode still holds streams after 120 s (expected {expected})");
    }

    private static double Percentile(double[] sorted, double p) =>
        sorted.Length == 0 ? 0 : sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(p * sorted.Length) - 1)];

    /// <summary>Resident set size of a process, from /proc (Linux).</summary>
    private static long RssBytes(int pid)
    {
        if (!File.Exists($"/proc/{pid}/status"))
            throw new InvalidOperationException($"process {pid} is gone: the SuperNode exited during the run");
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
        return 0;
    }
}
