using System.Net;
using System.Text.Json;
using MyDvpn.Cli.Commands;
using MyDvpn.Cli.Demo;
using MyDvpn.Common;
using MyDvpn.Security;
using Xunit.Abstractions;

namespace MyDvpn.IntegrationTests;

/// <summary>
/// Real <c>mydvpn</c> processes on loopback with TLS and SQLite in a temporary directory. Disposing
/// it kills every process it started and deletes the directory, also when the test failed; the
/// node logs are written to the test output first.
/// </summary>
public sealed class TestNetwork : IAsyncDisposable
{
    private readonly ITestOutputHelper output;
    private readonly List<NodeProcess> processes = [];
    private readonly string caDir;

    public string Root { get; }
    public MydvpnExecutable Executable { get; } = MydvpnExecutable.InDirectory(AppContext.BaseDirectory);
    public string AdminTls { get; }

    public TestNetwork(ITestOutputHelper output)
    {
        this.output = output;
        Root = Path.Combine(Path.GetTempPath(), $"mydvpn-it-{Guid.NewGuid():N}");
        caDir = Path.Combine(Root, "ca");
        CertificateAuthority.Init(caDir);
        AdminTls = Path.Combine(Root, "certs", "admin");
        CertificateAuthority.IssueAdmin(caDir, "test-admin", [], [], AdminTls);
    }

    /// <summary>The certificate of <paramref name="node"/> in <c>certs/{role}-{region}-{id}</c>, issued once.</summary>
    public string IssueNodeCertificate(NodeIdentity node)
    {
        var dir = Path.Combine(Root, "certs", $"{node.Role}-{node.Region}-{node.Id}".ToLowerInvariant());
        if (!Directory.Exists(dir))
            CertificateAuthority.IssueNode(caDir, node, [IPAddress.Loopback], ["localhost"], dir);
        return dir;
    }

    /// <summary>A BaseNode certificate from a CA that is not this network's: an intruder's.</summary>
    public string IssueForeignNodeCertificate(string name)
    {
        var foreignCa = Path.Combine(Root, "foreign-ca");
        if (!Directory.Exists(foreignCa))
            CertificateAuthority.Init(foreignCa);
        var dir = Path.Combine(Root, "certs", name);
        CertificateAuthority.IssueNode(foreignCa, NodeIdentity.Base(name), [IPAddress.Loopback], ["localhost"], dir);
        return dir;
    }

    public sealed record Node(string Name, HostPort Listen, HostPort Metrics, string[] Arguments)
    {
        public NodeProcess? Process { get; set; }

        /// <summary>MYDVPN__… settings that have no flag (timeouts, limits).</summary>
        public Dictionary<string, string> Environment { get; } = [];

        /// <summary>How the node is started, when not as the network's <see cref="TestNetwork.Executable"/> (e.g. under <c>prlimit</c>).</summary>
        public MydvpnExecutable? Executable { get; set; }
    }

    public Node BaseNode(string name = "base")
    {
        var listen = new HostPort("127.0.0.1", NodeProcess.FreeTcpPort());
        var metrics = new HostPort("127.0.0.1", NodeProcess.FreeTcpPort());
        return new Node(name, listen, metrics,
        [
            "base", "--data-dir", Path.Combine(Root, name), "--cluster", $"127.0.0.1:{NodeProcess.FreeTcpPort()}",
            "--listen", listen.ToString(), "--metrics", metrics.ToString(), "--tls", IssueNodeCertificate(NodeIdentity.Base(name)),
        ]);
    }

    public Node SuperNode(string id, string region, Node baseNode)
    {
        var listen = new HostPort("127.0.0.1", NodeProcess.FreeTcpPort());
        var metrics = new HostPort("127.0.0.1", NodeProcess.FreeTcpPort());
        return new Node(id, listen, metrics,
        [
            "super", "--data-dir", Path.Combine(Root, id), "--region", region, "--id", id,
            "--cluster", $"127.0.0.1:{NodeProcess.FreeTcpPort()}", "--base", baseNode.Listen.ToString(),
            "--listen", listen.ToString(), "--metrics", metrics.ToString(), "--public-ip", "127.0.0.1",
            "--relay-ports", "42000-42099", "--tls", IssueNodeCertificate(NodeIdentity.Super(id, region)),
        ]);
    }

    /// <summary>Starts (or restarts, with the same arguments and data dir) a node and waits until /readyz answers 200.</summary>
    public async Task StartAsync(Node node, bool waitUntilReady = true)
    {
        node.Process = NodeProcess.Start(node.Executable ?? Executable, node.Name, Path.Combine(Root, "logs", $"{node.Name}.log"), node.Arguments, node.Environment);
        processes.Add(node.Process);
        if (waitUntilReady)
            await DemoCommand.WaitReadyAsync(node.Process, node.Metrics, CancellationToken.None, TimeSpan.FromSeconds(90));
    }

    /// <summary>The network the exits of <see cref="StartAgentAsync"/> claim their endpoint in, which region b's SuperNode trusts.</summary>
    public const string TrustedExitNetwork = "192.0.2.0/24";

    /// <summary>
    /// A BaseNode, SuperNode sn-a of <paramref name="clientRegion"/> and sn-b of <paramref name="exitRegion"/>, started and
    /// ready; <paramref name="configureBase"/> and <paramref name="configureB"/> may change a node before it starts.
    /// </summary>
    public async Task<(Node Base, Node A, Node B)> StartRegionsAsync(string clientRegion, string exitRegion,
        Func<Node, Node>? configureBase = null, Action<Node>? configureB = null)
    {
        var baseNode = BaseNode();
        if (configureBase is not null)
            baseNode = configureBase(baseNode);
        await StartAsync(baseNode);
        var superA = SuperNode("sn-a", clientRegion, baseNode);
        var superB = SuperNode("sn-b", exitRegion, baseNode);
        // The agents' exits claim an endpoint in 192.0.2.0/24 (StartAgentAsync) while their streams come from loopback:
        // the operator vouches for that network, as for exits behind a load balancer.
        superB.Environment["MYDVPN__SUPER__EXITS__TRUSTEDENDPOINTNETWORKS__0"] = TrustedExitNetwork;
        configureB?.Invoke(superB);
        // No wait for A's directory cache to learn region b: a region it does not know yet is looked up at once.
        await Task.WhenAll(StartAsync(superA), StartAsync(superB));
        return (baseNode, superA, superB);
    }

    /// <summary>The state directory of the agent <see cref="StartAgentAsync"/> starts as <paramref name="peerId"/>.</summary>
    public string PeerStateDir(string peerId) => Path.Combine(Root, "peers", peerId);

    /// <summary>
    /// A real peer agent without a data plane, enrolled with a token of its own; an exit claims 192.0.2.10:51820 as its
    /// public endpoint unless <paramref name="extra"/> names one.
    /// </summary>
    public async Task<Node> StartAgentAsync(Node baseNode, Node super, string peerId, string role, string region, params string[] extra)
    {
        var keyFile = Path.Combine(Root, $"{peerId}.key");
        IdentityKey.Generate().Save(keyFile);
        var token = await CreateTokenAsync(baseNode, role, region);
        Directory.CreateDirectory(PeerStateDir(peerId));
        // Without one the SuperNode would hand clients the exit's stream address, loopback here, which agents refuse as
        // an endpoint; a documentation address stands for the exit's public one (no data plane runs).
        string[] endpoint = role == "client" || extra.Contains("--public-endpoint") ? [] : ["--public-endpoint", "192.0.2.10:51820"];
        var agent = new Node(peerId, super.Listen, super.Metrics,
        [
            "peer", "--data-plane", "none", "--role", role, "--id", peerId, "--region", region, "--key", keyFile, "--ca", CaFile,
            "--supernode", super.Listen.ToString(), "--token", token, "--state-dir", PeerStateDir(peerId), .. endpoint, .. extra,
        ]);
        await StartAsync(agent, waitUntilReady: false);
        return agent;
    }

    /// <summary>Runs a short-lived <c>mydvpn</c> command to completion.</summary>
    public Task<(int ExitCode, string Output)> RunAsync(params string[] arguments) => RunAsync(arguments, null);

    public async Task<(int ExitCode, string Output)> RunAsync(string[] arguments, IReadOnlyDictionary<string, string>? environment)
    {
        var log = Path.Combine(Root, "logs", $"cli-{Guid.NewGuid():N}.log");
        using var process = NodeProcess.Start(Executable, "cli", log, arguments, environment);
        if (!await process.WaitForExitAsync(TimeSpan.FromSeconds(60)))
            throw new TimeoutException($"mydvpn {string.Join(' ', arguments)} did not finish within 60 s");
        // The exit event fires before the last output lines are flushed to the log.
        await Task.Delay(100);
        return (process.ExitCode, process.ReadLog());
    }

    public async Task<JsonElement> AdminRegionsAsync(Node baseNode)
    {
        var (exitCode, text) = await RunAsync("admin", "--base", baseNode.Listen.ToString(), "--tls", AdminTls, "regions", "--json");
        Assert.True(exitCode == 0, $"admin regions failed ({exitCode}): {text}");
        return JsonDocument.Parse(text).RootElement.GetProperty("regions").Clone();
    }

    public string CaFile => Path.Combine(caDir, CertificateAuthority.CaCertFile);

    /// <summary>The operator CA's directory, as `mydvpn ca --dir` names it.</summary>
    public string CaDir => caDir;

    /// <summary>An enrollment token made the operator's way: <c>mydvpn admin token create</c>.</summary>
    public async Task<string> CreateTokenAsync(Node baseNode, string role, string region, int uses = 1, string ttl = "1h")
    {
        var (exitCode, text) = await RunAsync("admin", "--base", baseNode.Listen.ToString(), "--tls", AdminTls,
            "token", "create", "--role", role, "--region", region, "--uses", uses.ToString(System.Globalization.CultureInfo.InvariantCulture), "--ttl", ttl, "--json");
        Assert.True(exitCode == 0, $"token create failed ({exitCode}): {text}");
        return JsonDocument.Parse(text).RootElement.GetProperty("token").GetString()!;
    }

    /// <summary>A counter or gauge from the node's /metrics, 0 when the series does not exist yet.</summary>
    public static async Task<double> MetricAsync(Node node, string series)
    {
        using var http = new HttpClient();
        var text = await http.GetStringAsync($"http://{node.Metrics}/metrics");
        var line = text.Split('\n').FirstOrDefault(l => l.StartsWith(series + " ", StringComparison.Ordinal));
        return line is null ? 0 : double.Parse(line[(series.Length + 1)..], System.Globalization.CultureInfo.InvariantCulture);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var process in processes)
        {
            process.Dispose();
            output.WriteLine($"--- {process.Name} log (last 40 lines) ---");
            foreach (var line in process.ReadLog().Split('\n').TakeLast(40))
                output.WriteLine(line.Length > 400 ? line[..400] : line);
        }
        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (IOException)
        {
            await Task.Delay(500);
            Directory.Delete(Root, recursive: true);
        }
    }
}
