using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using MyDvpn.Cli.Commands;
using MyDvpn.Cli.Demo;
using MyDvpn.Hosting;
using MyDvpn.Protocol.Admin;
using MyDvpn.Protocol.Control;
using MyDvpn.Protocol.SuperNode;
using MyDvpn.Security;

namespace MyDvpn.Bench;

/// <summary>
/// <c>mydvpn-bench</c>: starts a real BaseNode and SuperNode (separate processes, TLS, SQLite) and
/// measures the SuperNode from outside. Prints a table and one JSON line. Not part of the tests.
/// </summary>
public static class Program
{
    private const string Region = "bench";
    private const int TokenUses = 1000;

    public static Task<int> Main(string[] args)
    {
        var mode = new Option<string>("--mode") { Description = "streams | commands | reconnect (all streams dropped, then re-authenticated)", Required = true };
        var streams = new Option<int>("--streams") { Description = "Authenticated streams to open, each its own TLS connection", DefaultValueFactory = _ => 1000 };
        var commands = new Option<int>("--commands") { Description = "commands mode: commands to time", DefaultValueFactory = _ => 2000 };
        var concurrency = new Option<int>("--concurrency") { Description = "Connections opened / commands issued at once", DefaultValueFactory = _ => 64 };
        var root = new RootCommand("myDvpn benchmarks: SuperNode streams and command round trips") { mode, streams, commands, concurrency };
        root.SetAction((parse, ct) => RunAsync(parse.GetRequiredValue(mode), parse.GetValue(streams), parse.GetValue(commands), parse.GetValue(concurrency), ct));
        return root.Parse(args).InvokeAsync();
    }

    private static async Task<int> RunAsync(string mode, int streamCount, int commandCount, int concurrency, CancellationToken cancellationToken)
    {
        if (mode is not ("streams" or "commands" or "reconnect") || streamCount < 1 || concurrency < 1)
        {
            await Console.Error.WriteLineAsync("error: --mode streams|commands|reconnect, --streams >= 1, --concurrency >= 1");
            return 2;
        }
        var work = Directory.CreateTempSubdirectory("mydvpn-bench-").FullName;
        var nodes = new List<NodeProcess>();
        var peers = new List<BenchPeer>();
        var succeeded = false;
        try
        {
            var ca = Path.Combine(work, "ca");
            CertificateAuthority.Init(ca);
            foreach (var name in new[] { "base", "sn-bench", "bench-client" })
                CertificateAuthority.Issue(ca, name, CertificateKind.Node, [IPAddress.Loopback], [], Path.Combine(work, name));
            CertificateAuthority.Issue(ca, "bench-admin", CertificateKind.Admin, [], [], Path.Combine(work, "admin"));
            var executable = MydvpnExecutable.InDirectory(AppContext.BaseDirectory);

            var baseListen = new HostPort("127.0.0.1", NodeProcess.FreeTcpPort());
            var baseMetrics = new HostPort("127.0.0.1", NodeProcess.FreeTcpPort());
            nodes.Add(NodeProcess.Start(executable, "base", Path.Combine(work, "base.log"),
                ["base", "--data-dir", Path.Combine(work, "base-data"), "--cluster", $"127.0.0.1:{NodeProcess.FreeTcpPort()}",
                 "--listen", baseListen.ToString(), "--metrics", baseMetrics.ToString(), "--tls", Path.Combine(work, "base")]));
            await DemoCommand.WaitReadyAsync(nodes[^1], baseMetrics, cancellationToken);

            var superListen = new HostPort("127.0.0.1", NodeProcess.FreeTcpPort());
            var superMetrics = new HostPort("127.0.0.1", NodeProcess.FreeTcpPort());
            var super = NodeProcess.Start(executable, "sn-bench", Path.Combine(work, "sn-bench.log"),
                ["super", "--data-dir", Path.Combine(work, "sn-data"), "--region", Region, "--id", "sn-bench",
                 "--cluster", $"127.0.0.1:{NodeProcess.FreeTcpPort()}", "--base", baseListen.ToString(), "--listen", superListen.ToString(),
                 "--metrics", superMetrics.ToString(), "--public-ip", "127.0.0.1", "--relay-ports", "45000-45099",
                 "--tls", Path.Combine(work, "sn-bench"), "--max-streams", (streamCount + 100).ToString(CultureInfo.InvariantCulture)],
                new Dictionary<string, string>
                {
                    // One source address opens every stream here: lift the per-source limit for the run.
                    ["MYDVPN__SUPER__EDGE__PERSOURCEBURST"] = "1000000",
                    ["MYDVPN__SUPER__EDGE__PERSOURCEPERSECOND"] = "1000000",
                });
            nodes.Add(super);
            await DemoCommand.WaitReadyAsync(super, superMetrics, cancellationToken);

            using var adminTls = TlsMaterial.Load(Path.Combine(work, "admin"));
            using var adminChannel = GrpcChannels.MutualTls(baseListen, adminTls);
            // A token serves at most TokensUses peers: as many tokens as the run needs.
            var tokens = new List<string>();
            for (var enrolled = 0; enrolled < streamCount; enrolled += TokenUses)
                tokens.Add((await new Admin.AdminClient(adminChannel).CreateTokenAsync(new CreateTokenRequest
                {
                    Role = (int)PeerRole.Client,
                    Region = Region,
                    Uses = (uint)Math.Min(TokenUses, streamCount - enrolled),
                    TtlSeconds = 3600,
                }, cancellationToken: cancellationToken)).Token);

            var rssBefore = RssBytes(super.Id);
            var caCert = X509CertificateLoader.LoadCertificateFromFile(Path.Combine(ca, CertificateAuthority.CaCertFile));
            var keys = Enumerable.Range(0, streamCount).Select(_ => IdentityKey.Generate()).ToArray();
            var failures = 0;
            using var gate = new SemaphoreSlim(concurrency);
            async Task<double> ConnectAllAsync()
            {
                var clock = Stopwatch.StartNew();
                await Task.WhenAll(Enumerable.Range(0, streamCount).Select(async i =>
                {
                    await gate.WaitAsync(cancellationToken);
                    try
                    {
                        var peer = await BenchPeer.ConnectAsync(superListen, caCert, $"bench-{i:D6}", keys[i], Region, tokens[i / TokenUses], cancellationToken);
                        lock (peers)
                            peers.Add(peer);
                    }
                    catch (Exception ex) when (ex is not OperationCanceledException)
                    {
                        if (Interlocked.Increment(ref failures) <= 5)
                            await Console.Error.WriteLineAsync($"stream {i} failed: {ex.Message}");
                    }
                    finally
                    {
                        gate.Release();
                    }
                }));
                return clock.Elapsed.TotalSeconds;
            }
            var connectSeconds = await ConnectAllAsync();
            double? reconnectSeconds = null;
            if (mode == "reconnect")
            {
                // Every peer drops its stream at once and comes back with its key (already enrolled).
                await Task.WhenAll(peers.Select(p => p.DisposeAsync().AsTask()));
                peers.Clear();
                // Old and new sockets together would pass the file-descriptor limit: let the
                // SuperNode close the old streams first.
                await WaitForOpenStreamsAsync(superMetrics, 0, cancellationToken);
                reconnectSeconds = await ConnectAllAsync();
            }
            // Let the SuperNode settle (heartbeats, GC) before reading its memory.
            await Task.Delay(TimeSpan.FromSeconds(5), cancellationToken);
            var rssAfter = RssBytes(super.Id);

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
                using var nodeTls = TlsMaterial.Load(Path.Combine(work, "bench-client"));
                using var superChannel = GrpcChannels.MutualTls(superListen, nodeTls);
                var client = new SuperNodePeers.SuperNodePeersClient(superChannel);
                var latencies = new double[commandCount];
                var commandFailures = 0;
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
                            Command = new MyDvpn.Protocol.Control.Command { Disconnect = new Disconnect { Reason = "benchmark" } },
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
                Array.Sort(latencies);
                results["commands"] = commandCount;
                results["command_failures"] = commandFailures;
                results["command_concurrency"] = concurrency;
                results["commands_per_second"] = Math.Round(commandCount / commandClock.Elapsed.TotalSeconds, 1);
                results["command_p50_ms"] = Math.Round(Percentile(latencies, 0.50), 2);
                results["command_p99_ms"] = Math.Round(Percentile(latencies, 0.99), 2);
                results["command_max_ms"] = Math.Round(latencies[^1], 2);
            }

            foreach (var (name, value) in results)
                Console.WriteLine($"{name,-26} {value}");
            Console.WriteLine(JsonSerializer.Serialize(results));
            succeeded = failures == 0;
            return succeeded ? 0 : 1;
        }
        finally
        {
            await Task.WhenAll(peers.Select(p => p.DisposeAsync().AsTask()));
            foreach (var node in Enumerable.Reverse(nodes))
            {
                await node.StopAsync(TimeSpan.FromSeconds(15));
                node.Dispose();
            }
            // A failed run keeps its node logs for the post-mortem.
            if (succeeded)
                Directory.Delete(work, recursive: true);
            else
                await Console.Error.WriteLineAsync($"node logs kept in {work}");
        }
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
