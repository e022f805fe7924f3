using System.Globalization;
using System.Net;
using System.Security.Cryptography.X509Certificates;
using Grpc.Net.Client;
using MyDvpn.Cli.Commands;
using MyDvpn.Cli.Demo;
using MyDvpn.Common;
using MyDvpn.Hosting;
using MyDvpn.Protocol.Admin;
using MyDvpn.Protocol.Control;
using MyDvpn.Security;

namespace MyDvpn.Bench;

/// <summary>A SuperNode the benchmark started: its process, the peers' gRPC edge and its metrics.</summary>
public sealed record BenchSuperNode(NodeProcess Process, HostPort Listen, HostPort Metrics);

/// <summary>
/// The nodes a benchmark measures: real <c>mydvpn</c> processes on loopback (TLS, SQLite), all in one temporary
/// directory with its own operator CA. Disposing stops them, peers first (<see cref="Track"/>); the directory goes
/// with them unless the run was not marked <see cref="Succeeded"/>, in which case the node logs stay for the post-mortem.
/// </summary>
public sealed class BenchCluster : IAsyncDisposable
{
    /// <summary>Peers one enrollment token serves.</summary>
    public const int TokenUses = 1000;

    private const string ClientCertificate = "bench-client";

    private readonly MydvpnExecutable executable = MydvpnExecutable.InDirectory(AppContext.BaseDirectory);
    private readonly List<NodeProcess> nodes = [];
    private readonly List<BenchPeer> peers = [];
    private TlsMaterial? adminTls;
    private GrpcChannel? adminChannel;
    private HostPort? baseListen;
    private int nextRelayPort = 45000;

    private BenchCluster(string work)
    {
        Work = work;
        CertificateAuthority.Init(CaDirectory);
        // The benchmark issues commands through SuperNodePeers, which only BaseNodes may call: its client is one.
        CertificateAuthority.IssueNode(CaDirectory, NodeIdentity.Base(ClientCertificate), [IPAddress.Loopback], [], Path.Combine(work, ClientCertificate));
        CertificateAuthority.IssueAdmin(CaDirectory, "bench-admin", [], [], Path.Combine(work, "admin"));
        CaCertificate = X509CertificateLoader.LoadCertificateFromFile(Path.Combine(CaDirectory, CertificateAuthority.CaCertFile));
    }

    /// <summary>The run's directory: CA, certificates, data directories, node logs.</summary>
    public string Work { get; }

    public X509Certificate2 CaCertificate { get; }

    /// <summary>Set once the run's numbers are good; otherwise disposing keeps the node logs.</summary>
    public bool Succeeded { get; set; }

    private string CaDirectory => Path.Combine(Work, "ca");

    public static BenchCluster Create() => new(Directory.CreateTempSubdirectory("mydvpn-bench-").FullName);

    /// <summary>Starts the BaseNode (directory and admin API) and waits until it is ready.</summary>
    public async Task StartBaseNodeAsync(CancellationToken cancellationToken)
    {
        CertificateAuthority.IssueNode(CaDirectory, NodeIdentity.Base("base"), [IPAddress.Loopback], [], Path.Combine(Work, "base"));
        var listen = new HostPort("127.0.0.1", NodeProcess.FreeTcpPort());
        var metrics = new HostPort("127.0.0.1", NodeProcess.FreeTcpPort());
        nodes.Add(NodeProcess.Start(executable, "base", Path.Combine(Work, "base.log"),
            ["base", "--data-dir", Path.Combine(Work, "base-data"), "--cluster", $"127.0.0.1:{NodeProcess.FreeTcpPort()}",
             "--listen", listen.ToString(), "--metrics", metrics.ToString(), "--tls", Path.Combine(Work, "base")],
            new Dictionary<string, string>
            {
                // Every peer of the run enrolls through one or two SuperNodes within seconds: lift the directory's redemption limits.
                ["MYDVPN__BASE__REDEMPTIONS__PERSUPERNODEBURST"] = "1000000",
                ["MYDVPN__BASE__REDEMPTIONS__PERSUPERNODEPERSECOND"] = "1000000",
                ["MYDVPN__BASE__REDEMPTIONS__GLOBALBURST"] = "1000000",
                ["MYDVPN__BASE__REDEMPTIONS__GLOBALPERSECOND"] = "1000000",
            }));
        await DemoCommand.WaitReadyAsync(nodes[^1], metrics, cancellationToken);
        baseListen = listen;
        adminTls = TlsMaterial.Load(Path.Combine(Work, "admin"));
        adminChannel = GrpcChannels.MutualTls(listen, adminTls, ExpectedServer.BaseNode);
    }

    /// <summary>
    /// Starts a SuperNode of <paramref name="region"/> (a cluster of its own, registered with the BaseNode) and waits
    /// until it is ready. Its log is <c>{id}.log</c>, its data <c>{id}-data</c>.
    /// </summary>
    public async Task<BenchSuperNode> StartSuperNodeAsync(string id, string region, int maxStreams, CancellationToken cancellationToken)
    {
        var directory = baseListen ?? throw new InvalidOperationException("start the BaseNode first");
        CertificateAuthority.IssueNode(CaDirectory, NodeIdentity.Super(id, region), [IPAddress.Loopback], [], Path.Combine(Work, id));
        var listen = new HostPort("127.0.0.1", NodeProcess.FreeTcpPort());
        var metrics = new HostPort("127.0.0.1", NodeProcess.FreeTcpPort());
        var relayPorts = $"{nextRelayPort}-{nextRelayPort + 99}";
        nextRelayPort += 100;
        var process = NodeProcess.Start(executable, id, Path.Combine(Work, $"{id}.log"),
            ["super", "--data-dir", Path.Combine(Work, $"{id}-data"), "--region", region, "--id", id,
             "--cluster", $"127.0.0.1:{NodeProcess.FreeTcpPort()}", "--base", directory.ToString(), "--listen", listen.ToString(),
             "--metrics", metrics.ToString(), "--public-ip", "127.0.0.1", "--relay-ports", relayPorts,
             "--tls", Path.Combine(Work, id), "--max-streams", maxStreams.ToString(CultureInfo.InvariantCulture)],
            new Dictionary<string, string>
            {
                // One source address opens every stream here, faster than any real region: lift the unauthenticated limits for the run.
                ["MYDVPN__SUPER__EDGE__PERSOURCEBURST"] = "1000000",
                ["MYDVPN__SUPER__EDGE__PERSOURCEPERSECOND"] = "1000000",
                ["MYDVPN__SUPER__EDGE__GLOBALBURST"] = "1000000",
                ["MYDVPN__SUPER__EDGE__GLOBALPERSECOND"] = "1000000",
                ["MYDVPN__SUPER__EDGE__MAXCHALLENGESPERSOURCE"] = "1000000",
                ["MYDVPN__SUPER__EDGE__REDEEMPERSOURCEBURST"] = "1000000",
                ["MYDVPN__SUPER__EDGE__REDEEMPERSOURCEPERSECOND"] = "1000000",
                ["MYDVPN__SUPER__EDGE__REDEEMGLOBALBURST"] = "1000000",
                ["MYDVPN__SUPER__EDGE__REDEEMGLOBALPERSECOND"] = "1000000",
            });
        nodes.Add(process);
        await DemoCommand.WaitReadyAsync(process, metrics, cancellationToken);
        return new BenchSuperNode(process, listen, metrics);
    }

    /// <summary>Enrollment tokens for <paramref name="peerCount"/> peers: token i / <see cref="TokenUses"/> serves peer i.</summary>
    public async Task<IReadOnlyList<string>> CreateTokensAsync(PeerRole role, string region, int peerCount, CancellationToken cancellationToken)
    {
        var admin = new Admin.AdminClient(adminChannel ?? throw new InvalidOperationException("start the BaseNode first"));
        var tokens = new List<string>();
        for (var enrolled = 0; enrolled < peerCount; enrolled += TokenUses)
        {
            tokens.Add((await admin.CreateTokenAsync(new CreateTokenRequest
            {
                Role = (int)role,
                Region = region,
                Uses = (uint)Math.Min(TokenUses, peerCount - enrolled),
                TtlSeconds = 3600,
            }, cancellationToken: cancellationToken)).Token);
        }
        return tokens;
    }

    /// <summary>The node certificate the benchmark calls SuperNodes' node-only APIs with.</summary>
    public TlsMaterial LoadClientTls() => TlsMaterial.Load(Path.Combine(Work, ClientCertificate));

    /// <summary>Closed with the cluster, before its nodes stop.</summary>
    public void Track(BenchPeer peer)
    {
        lock (peers)
            peers.Add(peer);
    }

    /// <summary>
    /// Opens <paramref name="count"/> peers, at most <paramref name="concurrency"/> at once, each tracked. Peer i is at
    /// index i, null where it failed (the first five failures are printed).
    /// </summary>
    public async Task<BenchPeer?[]> ConnectManyAsync(int count, int concurrency, Func<int, Task<BenchPeer>> connect, CancellationToken cancellationToken)
    {
        var opened = new BenchPeer?[count];
        var failures = 0;
        using var gate = new SemaphoreSlim(concurrency);
        await Task.WhenAll(Enumerable.Range(0, count).Select(async i =>
        {
            await gate.WaitAsync(cancellationToken);
            try
            {
                var peer = await connect(i);
                Track(peer);
                opened[i] = peer;
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
        return opened;
    }

    /// <summary>Closes every tracked peer (e.g. to reconnect them) and forgets them.</summary>
    public async Task CloseTrackedAsync()
    {
        BenchPeer[] closing;
        lock (peers)
        {
            closing = [.. peers];
            peers.Clear();
        }
        await Task.WhenAll(closing.Select(p => p.DisposeAsync().AsTask()));
    }

    public async ValueTask DisposeAsync()
    {
        await CloseTrackedAsync();
        adminChannel?.Dispose();
        adminTls?.Dispose();
        foreach (var node in Enumerable.Reverse(nodes))
        {
            await node.StopAsync(TimeSpan.FromSeconds(15));
            node.Dispose();
        }
        CaCertificate.Dispose();
        // A failed run keeps its node logs for the post-mortem.
        if (Succeeded)
            Directory.Delete(Work, recursive: true);
        else
            await Console.Error.WriteLineAsync($"node logs kept in {Work}");
    }
}
