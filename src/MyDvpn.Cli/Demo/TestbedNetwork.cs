using System.Net;
using System.Text.Json;
using Grpc.Net.Client;
using MyDvpn.Cli.Commands;
using MyDvpn.Common;
using MyDvpn.Hosting;
using MyDvpn.HostOs;
using MyDvpn.Logging;
using MyDvpn.Peer.LocalStatus;
using MyDvpn.Protocol.Admin;
using MyDvpn.Protocol.Directory;
using MyDvpn.Protocol.SuperNode;
using MyDvpn.Security;
using MyDvpn.Testbed;
using PeerRole = MyDvpn.Protocol.Control.PeerRole;

namespace MyDvpn.Cli.Demo;

/// <summary>
/// A whole myDvpn network in a <see cref="NetnsTestbed"/>, every node a real <c>mydvpn</c> process in its namespace:
/// the BaseNode in <c>base</c>, SuperNode sn-eu-1 (region eu-west) in <c>sn-a</c>, sn-us-1 (us-east) in <c>sn-b</c>, an
/// exit peer behind its NAT in <c>exit</c> and a client peer behind its NAT in <c>client</c>, both driving WireGuard.
/// The admin API is reached from the internet router's namespace. Used by the netns tests and <c>mydvpn demo</c>.
/// With a second SuperNode in the exit's region, sn-us-2 runs in <c>sn-b2</c>: region us-east is then a cluster of two
/// sharing a PostgreSQL journal (a server in <c>base</c>), and the exit knows both. In a testbed with a second exit host,
/// <see cref="StartSecondExitAsync"/> starts exit-us-2 behind its own NAT in <c>exit2</c>, a second exit of us-east.
/// Disposing it stops the peers first (they tear their interfaces down), then the nodes; the testbed is the caller's.
/// </summary>
public sealed class TestbedNetwork : IAsyncDisposable
{
    public const string ClientRegion = "eu-west", ExitRegion = "us-east";
    public const string ClientId = "laptop-1", ExitId = "exit-us-1";
    public const string SecondExitRegionSuperNode = "sn-us-2";
    public const string ThirdExitRegionSuperNode = "sn-us-3";

    /// <summary>Region us-east's SuperNodes, their hosts' roles and addresses, in the order they start.</summary>
    public static IReadOnlyList<(string Id, string Role, IPAddress Address)> ExitRegionSuperNodes { get; } =
    [
        ("sn-us-1", TestbedRoles.SnB, TestbedAddresses.SnB),
        (SecondExitRegionSuperNode, TestbedRoles.SnB2, TestbedAddresses.SnB2),
        (ThirdExitRegionSuperNode, TestbedRoles.SnB3, TestbedAddresses.SnB3),
    ];
    public const string SecondExitId = "exit-us-2";
    private const int ClusterPort = 7000, GrpcPort = 7443, MetricsPort = 9100;

    private readonly MydvpnExecutable executable;
    private readonly List<NodeProcess> nodes = [];
    // How each node was started, so it can be restarted the same way.
    private readonly Dictionary<string, (string Namespace, string[] Arguments, Dictionary<string, string>? Environment)> nodeCommands =
        new(StringComparer.Ordinal);
    private Dictionary<string, string>? superNodeEnvironment;
    private readonly Dictionary<string, NodeProcess> peers = new(StringComparer.Ordinal);
    private readonly GrpcChannel adminChannel;
    private readonly TlsMaterial adminTls;
    private PostgresServer? postgres;
    private int superNodeCount = 2;

    private TestbedNetwork(NetnsTestbed testbed, MydvpnExecutable executable, string work)
    {
        Testbed = testbed;
        this.executable = executable;
        Work = work;
        Certificates = Path.Combine(work, "certs");
        adminTls = TlsMaterial.Load(Path.Combine(Certificates, "admin"));
        adminChannel = GrpcChannels.MutualTls(new HostPort(TestbedAddresses.Base.ToString(), GrpcPort), adminTls, ExpectedServer.BaseNode, TimeSpan.FromSeconds(5),
            (context, cancel) => ConnectFromAsync(testbed.Namespaces.Internet, context.DnsEndPoint, cancel));
        Admin = new Admin.AdminClient(adminChannel);
        // Interface names are host-wide for wireguard-go's socket: unique per testbed.
        ClientInterface = "wgc" + testbed.Id[^6..];
        ExitInterface = "wge" + testbed.Id[^6..];
        SecondExitInterface = "wgx" + testbed.Id[^6..];
    }

    public NetnsTestbed Testbed { get; }

    public string Work { get; }

    public string Certificates { get; }

    public Admin.AdminClient Admin { get; }

    public string ClientInterface { get; }

    public string ExitInterface { get; }

    /// <summary>The WireGuard interface of <see cref="SecondExitId"/> (started only by <see cref="StartSecondExitAsync"/>).</summary>
    public string SecondExitInterface { get; }

    /// <summary>An exit peer of this network: its testbed role, WireGuard interface and the public address of its NAT.</summary>
    public ExitHost ExitHostOf(string exitId) => exitId switch
    {
        ExitId => new ExitHost(ExitId, TestbedRoles.Exit, ExitInterface, TestbedAddresses.ExitNatPublic),
        SecondExitId => new ExitHost(SecondExitId, TestbedRoles.Exit2, SecondExitInterface, TestbedAddresses.Exit2NatPublic),
        _ => throw new ArgumentException($"no exit '{exitId}' in this network (exits: {ExitId}, {SecondExitId})", nameof(exitId)),
    };

    public HostPort BaseGrpc => new(TestbedAddresses.Base.ToString(), GrpcPort);

    public static HostPort SuperNodeGrpc(IPAddress address) => new(address.ToString(), GrpcPort);

    public string StateDir(string peerId) => Path.Combine(Work, "peers", peerId);

    /// <summary>Makes the certificates and starts the BaseNode and the SuperNodes; returns once the directory lists them all up.</summary>
    /// <param name="exitRegionSuperNodes">How many SuperNodes region us-east has (1 to 3: sn-us-1, sn-us-2, sn-us-3); more than one share a
    /// PostgreSQL journal.</param>
    /// <param name="relayKernelOffload">The SuperNodes' kernels forward established relay legs (Super:Relay:KernelOffload).</param>
    /// <param name="superNodeEnvironment">More settings for every SuperNode, as environment variables (<c>MYDVPN__SUPER__…</c>).</param>
    public static async Task<TestbedNetwork> StartAsync(NetnsTestbed testbed, MydvpnExecutable executable, string work,
        Action<string>? progress, CancellationToken cancellationToken, int exitRegionSuperNodes = 1, bool relayKernelOffload = false,
        IReadOnlyDictionary<string, string>? superNodeEnvironment = null, LogFormat logFormat = LogFormat.Json)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(exitRegionSuperNodes, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(exitRegionSuperNodes, ExitRegionSuperNodes.Count);
        var certs = Path.Combine(work, "certs");
        var ca = Path.Combine(certs, "ca");
        if (!File.Exists(Path.Combine(ca, CertificateAuthority.CaCertFile)))
            CertificateAuthority.Init(ca).Dispose();
        // Each node's certificate names it: a SuperNode's its region and id, which it must run as.
        (NodeIdentity Node, IPAddress Address)[] nodes =
        [
            (NodeIdentity.Base("base"), TestbedAddresses.Base),
            (NodeIdentity.Super("sn-eu-1", ClientRegion), TestbedAddresses.SnA),
            .. ExitRegionSuperNodes.Select(superNode => (NodeIdentity.Super(superNode.Id, ExitRegion), superNode.Address)),
        ];
        foreach (var (node, address) in nodes)
            CertificateAuthority.IssueNode(ca, node, [address], [], Path.Combine(certs, node.Id)).Dispose();
        CertificateAuthority.IssueAdmin(ca, "testbed-admin", [], [], Path.Combine(certs, "admin")).Dispose();

        var network = new TestbedNetwork(testbed, executable, work) { logFormat = logFormat };
        var environment = new Dictionary<string, string>(superNodeEnvironment ?? new Dictionary<string, string>(), StringComparer.Ordinal);
        if (relayKernelOffload)
        {
            environment["MYDVPN__SUPER__RELAY__KERNELOFFLOAD"] = "true";
            // Tests and the bench read the relay counters right after traffic.
            environment["MYDVPN__SUPER__RELAY__KERNELCOUNTERSINTERVAL"] = "00:00:01";
        }
        network.superNodeEnvironment = environment.Count > 0 ? environment : null;
        try
        {
            network.StartNode("base", testbed.Namespaces.Base,
            [
                "base", "--data-dir", Path.Combine(work, "base"), "--cluster", At(TestbedAddresses.Base, ClusterPort),
                "--listen", At(TestbedAddresses.Base, GrpcPort), "--metrics", At(TestbedAddresses.Base, MetricsPort),
                "--tls", Path.Combine(certs, "base"),
            ]);
            await network.UntilAsync(async () => await network.Admin.ListRegionsAsync(new ListRegionsRequest(), cancellationToken: cancellationToken) is not null,
                "the BaseNode answers", cancellationToken);
            progress?.Invoke($"BaseNode up in namespace {testbed.Namespaces.Base} ({TestbedAddresses.Base}): directory and admin API.");

            string[] exitRegionCluster = [];
            if (exitRegionSuperNodes > 1)
            {
                network.postgres = await PostgresServer.StartAsync(testbed, TestbedRoles.Base, TestbedAddresses.Base,
                    Path.Combine(work, "logs", "postgres.log"), cancellationToken);
                exitRegionCluster = ["--seed", At(TestbedAddresses.SnB, ClusterPort), "--postgres", network.postgres.ConnectionString];
                network.superNodeCount = 1 + exitRegionSuperNodes;
                progress?.Invoke($"PostgreSQL up in namespace {testbed.Namespaces.Base} ({TestbedAddresses.Base}:{PostgresServer.Port}): region {ExitRegion}'s journal.");
            }

            foreach (var (id, region, ns, address, cluster) in new[]
                     {
                         ("sn-eu-1", ClientRegion, testbed.Namespaces.SnA, TestbedAddresses.SnA, (string[])[]),
                         ("sn-us-1", ExitRegion, testbed.Namespaces.SnB, TestbedAddresses.SnB, exitRegionCluster),
                     })
            {
                network.StartSuperNode(id, region, ns, address, cluster);
            }
            if (exitRegionSuperNodes > 1)
            {
                // They join through sn-us-1, so they start once sn-us-1 is up.
                await network.UntilAsync(async () => await network.SuperNodesUpAsync(cancellationToken) == 2, "sn-eu-1 and sn-us-1 are registered",
                    cancellationToken);
                foreach (var (id, role, address) in ExitRegionSuperNodes.Skip(1).Take(exitRegionSuperNodes - 1))
                    network.StartSuperNode(id, ExitRegion, testbed.Namespaces.Name(role), address, exitRegionCluster);
            }
            await network.UntilAsync(async () => await network.SuperNodesUpAsync(cancellationToken) == network.superNodeCount,
                "every SuperNode is registered", cancellationToken);
            progress?.Invoke($"SuperNodes up: sn-eu-1 (region {ClientRegion}) in {testbed.Namespaces.SnA} ({TestbedAddresses.SnA}), " +
                             $"sn-us-1 (region {ExitRegion}) in {testbed.Namespaces.SnB} ({TestbedAddresses.SnB}), each a cluster of its own.");
            return network;
        }
        catch
        {
            await network.DisposeAsync();
            throw;
        }
    }

    /// <summary>Starts the exit peer behind its NAT and waits until region us-east's exit pool has it online.</summary>
    public Task StartExitAsync(CancellationToken cancellationToken) => StartExitPeerAsync(ExitHostOf(ExitId), cancellationToken);

    /// <summary>
    /// Starts the second exit peer (exit-us-2) behind its own NAT in <c>exit2</c> and waits until region us-east's exit pool has it
    /// online. The testbed must have been created with a second exit.
    /// </summary>
    public Task StartSecondExitAsync(CancellationToken cancellationToken) =>
        Testbed.Namespaces.SecondExit
            ? StartExitPeerAsync(ExitHostOf(SecondExitId), cancellationToken)
            : throw new InvalidOperationException($"testbed {Testbed.Id} has no second exit host: create it with NetnsTestbed.CreateAsync(secondExit: true)");

    private async Task StartExitPeerAsync(ExitHost exit, CancellationToken cancellationToken)
    {
        IPAddress[] superNodes = [.. ExitRegionSuperNodes.Take(superNodeCount - 1).Select(superNode => superNode.Address)];
        await StartPeerAsync(exit.PeerId, PeerRole.Exit, ExitRegion, Testbed.Namespaces.Name(exit.Role), superNodes, exit.Interface,
            ["--max-clients", "10"], cancellationToken);
        await UntilAsync(async () =>
        {
            var pool = await Admin.ListExitsAsync(new ListExitsRequest { Region = ExitRegion }, cancellationToken: cancellationToken);
            return pool.Exits.Any(e => e.PeerId == exit.PeerId && e.Online);
        }, $"{exit.PeerId} is online in region {ExitRegion}'s exit pool", cancellationToken);
    }

    /// <summary>Starts the client peer behind its NAT, asking for an exit in us-east, and waits until it holds one.</summary>
    /// <param name="poll">How often its status is read meanwhile (default 250 ms).</param>
    public async Task<JsonElement> StartClientAsync(CancellationToken cancellationToken, TimeSpan? poll = null)
    {
        await StartPeerAsync(ClientId, PeerRole.Client, ClientRegion, Testbed.Namespaces.Client, [TestbedAddresses.SnA], ClientInterface,
            ["--exit-region", ExitRegion], cancellationToken);
        JsonElement status = default;
        await UntilAsync(async () =>
        {
            status = await StatusAsync(ClientId, cancellationToken);
            return status.GetProperty("exit").ValueKind == JsonValueKind.Object;
        }, $"{ClientId} holds an exit", cancellationToken, poll: poll);
        return status;
    }

    /// <summary>In a network with two exits: the exit the client holds (as its status says) and the other one.</summary>
    public async Task<(ExitHost Held, ExitHost Other)> ClientExitsAsync(CancellationToken cancellationToken)
    {
        var held = (await StatusAsync(ClientId, cancellationToken)).GetProperty("exit").GetProperty("peerId").GetString();
        return (ExitHostOf(held!), ExitHostOf(held == ExitId ? SecondExitId : ExitId));
    }

    /// <summary>What <c>mydvpn status --json</c> shows for the peer (its agent's status socket).</summary>
    public async Task<JsonElement> StatusAsync(string peerId, CancellationToken cancellationToken)
    {
        var bytes = await StatusSocket.ReadAsync(StatusSocket.PathIn(StateDir(peerId)), TimeSpan.FromSeconds(5), cancellationToken);
        return JsonDocument.Parse(bytes).RootElement.Clone();
    }

    /// <summary><c>wg show IFACE dump</c> in the namespace: wireguard-tools' own reading of the interface.</summary>
    public Task<CommandResult> WgShowAsync(string roleOrNamespace, string interfaceName, CancellationToken cancellationToken) =>
        Testbed.For(roleOrNamespace).RunAsync("wg", ["show", interfaceName, "dump"], cancellationToken: cancellationToken);

    public NodeProcess Peer(string peerId) => peers[peerId];

    /// <summary>
    /// SIGKILL the peer's agent and what it started (its wireguard-go): a crash, nothing torn down. The network forgets it, so
    /// waits go on without it.
    /// </summary>
    public void KillPeer(string peerId)
    {
        if (peers.Remove(peerId, out var peer))
            peer.Dispose();
    }

    /// <summary>SIGTERM the peer and wait: its agent gives the exit back and tears its interface down.</summary>
    public async Task StopPeerAsync(string peerId)
    {
        if (peers.Remove(peerId, out var peer))
        {
            await peer.StopAsync(TimeSpan.FromSeconds(30));
            peer.Dispose();
        }
    }

    private async Task StartPeerAsync(string peerId, PeerRole role, string region, string ns, IPAddress[] superNodes, string wgInterface,
        string[] extra, CancellationToken cancellationToken)
    {
        var token = await Admin.CreateTokenAsync(new CreateTokenRequest { Role = (int)role, Region = region, Uses = 1, TtlSeconds = 600 },
            cancellationToken: cancellationToken);
        var keyFile = Path.Combine(Work, $"{peerId}.key");
        if (!File.Exists(keyFile))
            IdentityKey.Generate().Save(keyFile);
        Directory.CreateDirectory(StateDir(peerId));
        peers[peerId] = NodeProcess.Start(executable, peerId, Path.Combine(Work, "logs", $"{peerId}.log"),
        [
            "peer", "--role", role == PeerRole.Exit ? "exit" : "client", "--id", peerId, "--region", region, "--key", keyFile,
            "--ca", Path.Combine(Certificates, "ca", CertificateAuthority.CaCertFile),
            "--supernode", string.Join(',', superNodes.Select(superNode => At(superNode, GrpcPort))),
            "--token", token.Token, "--state-dir", StateDir(peerId), "--wg-interface", wgInterface, .. LogFormatFlag, .. extra,
        ], networkNamespace: ns);
    }

    private void StartSuperNode(string id, string region, string ns, IPAddress address, string[] cluster) =>
        StartNode(id, ns, superNodeEnvironment,
        [
            "super", "--data-dir", Path.Combine(Work, id), "--region", region, "--id", id,
            "--cluster", At(address, ClusterPort), "--base", At(TestbedAddresses.Base, GrpcPort),
            "--listen", At(address, GrpcPort), "--metrics", At(address, MetricsPort), "--public-ip", address.ToString(),
            "--relay-ports", "40000-40999", "--tls", Path.Combine(Certificates, id), "--max-streams", "1000", .. cluster,
        ]);

    /// <summary>How many SuperNodes the directory lists up.</summary>
    private async Task<int> SuperNodesUpAsync(CancellationToken cancellationToken) =>
        (await Admin.ListRegionsAsync(new ListRegionsRequest(), cancellationToken: cancellationToken)).Regions
        .Sum(r => r.Supernodes.Count(s => s.Status == SuperNodeStatus.Up));

    /// <summary>The nodes' and peers' log format (in their log files).</summary>
    private LogFormat logFormat = LogFormat.Json;

    private string[] LogFormatFlag => ["--log-format", EnumOption.NameOf(logFormat)];

    private void StartNode(string name, string ns, string[] arguments) => StartNode(name, ns, null, arguments);

    private void StartNode(string name, string ns, Dictionary<string, string>? environment, string[] arguments)
    {
        arguments = [.. arguments, .. LogFormatFlag];
        nodeCommands[name] = (ns, arguments, environment);
        nodes.Add(NodeProcess.Start(executable, name, Path.Combine(Work, "logs", $"{name}.log"), arguments, environment, ns));
    }

    /// <summary>
    /// Stops the node (<c>base</c>, <c>sn-eu-1</c> or <c>sn-us-1</c>) with SIGTERM, as an operator's restart does, and starts it
    /// again with the same data directory and arguments; returns once the directory lists every SuperNode up again.
    /// </summary>
    public async Task RestartNodeAsync(string name, CancellationToken cancellationToken)
    {
        if (!nodeCommands.TryGetValue(name, out var command))
            throw new ArgumentException($"no node '{name}' in this network; it has {string.Join(", ", nodeCommands.Keys)}", nameof(name));
        await StopNodeAsync(name);
        StartNode(name, command.Namespace, command.Environment, command.Arguments);
        await UntilAsync(async () => await SuperNodesUpAsync(cancellationToken) == superNodeCount,
            $"{name} is back and every SuperNode is registered", cancellationToken, TimeSpan.FromSeconds(90));
    }

    /// <summary>SIGKILL the node: a crash, nothing handed over, no cluster leave, no deregistration. The network forgets it.</summary>
    public void KillNode(string name)
    {
        var running = nodes.SingleOrDefault(n => n.Name == name)
                      ?? throw new ArgumentException($"no running node '{name}' in this network", nameof(name));
        nodes.Remove(running);
        running.Dispose();
    }

    /// <summary>Stops the node with SIGTERM (it leaves its cluster and the directory cleanly) and waits until it exited.</summary>
    public async Task StopNodeAsync(string name)
    {
        var running = nodes.SingleOrDefault(n => n.Name == name)
                      ?? throw new ArgumentException($"no running node '{name}' in this network", nameof(name));
        await running.StopAsync(TimeSpan.FromSeconds(30));
        nodes.Remove(running);
        running.Dispose();
    }

    /// <summary>
    /// Polls until <paramref name="condition"/> holds (60 s at most, every 250 ms unless <paramref name="poll"/> says otherwise); a node
    /// that exits meanwhile fails it with its log.
    /// </summary>
    public async Task UntilAsync(Func<Task<bool>> condition, string what, CancellationToken cancellationToken, TimeSpan? within = null,
        TimeSpan? poll = null)
    {
        var deadline = DateTime.UtcNow + (within ?? TimeSpan.FromSeconds(60));
        string? lastProblem = null;
        while (DateTime.UtcNow < deadline)
        {
            if (nodes.Concat(peers.Values).FirstOrDefault(n => n.HasExited) is { } dead)
                throw new DemoNodeFailedException($"{dead.Name} exited with code {dead.ExitCode}:\n{Tail(dead.ReadLog())}");
            try
            {
                if (await condition())
                    return;
            }
            catch (Exception ex) when (ex is Grpc.Core.RpcException or IOException or System.Net.Sockets.SocketException or JsonException
                                           or TimeoutException or TestbedException)
            {
                lastProblem = ex.Message;
            }
            await Task.Delay(poll ?? TimeSpan.FromMilliseconds(250), cancellationToken);
        }
        throw new DemoNodeFailedException($"timed out waiting until {what}{(lastProblem is null ? "" : $" (last: {lastProblem})")}; logs in {Path.Combine(Work, "logs")}");
    }

    private static string At(IPAddress address, int port) => new HostPort(address.ToString(), port).ToString();

    private static string Tail(string log) => string.Join('\n', log.Split('\n').TakeLast(15));

    private static async ValueTask<Stream> ConnectFromAsync(string ns, DnsEndPoint server, CancellationToken cancellationToken)
    {
        var socket = NetnsSockets.CreateTcp(ns);
        try
        {
            await socket.ConnectAsync(server, cancellationToken);
            return new System.Net.Sockets.NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var peerId in peers.Keys.ToList())
            await StopPeerAsync(peerId);
        foreach (var node in Enumerable.Reverse(nodes))
        {
            await node.StopAsync(TimeSpan.FromSeconds(15));
            node.Dispose();
        }
        if (postgres is not null)
            await postgres.DisposeAsync();
        adminChannel.Dispose();
        adminTls.Dispose();
    }
}

/// <summary>An exit peer of a <see cref="TestbedNetwork"/>: its id, testbed role, WireGuard interface and its NAT's public address.</summary>
public sealed record ExitHost(string PeerId, string Role, string Interface, IPAddress NatPublic);
