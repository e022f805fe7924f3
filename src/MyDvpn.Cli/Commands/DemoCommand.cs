using System.CommandLine;
using System.Diagnostics;
using System.Net;
using MyDvpn.Cli.Demo;
using MyDvpn.Hosting;
using MyDvpn.Protocol.Admin;
using MyDvpn.Protocol.Directory;
using MyDvpn.Protocol.SuperNode;
using MyDvpn.Security;
using Spectre.Console;
using Disconnect = MyDvpn.Protocol.Control.Disconnect;
using PeerRole = MyDvpn.Protocol.Control.PeerRole;

namespace MyDvpn.Cli.Commands;

/// <summary>
/// <c>mydvpn demo</c>: a whole myDvpn network on this machine. For now (until the data plane lands)
/// a BaseNode, two SuperNodes of two regions, an exit peer in one and a client peer in the other, on
/// loopback with TLS, each its own process; it prints the topology, the client's cross-region exit
/// assignment and a DISCONNECT that releases it, and runs until Ctrl-C.
/// </summary>
public static class DemoCommand
{
    private static readonly (string Id, string Region)[] SuperNodes = [("sn-eu-1", "eu-west"), ("sn-us-1", "us-east")];

    public static Command Build(TextWriter output)
    {
        var dir = new Option<string?>("--dir") { Description = "Working directory for certificates, data and logs (default: a new temporary one, removed afterwards)" };
        var once = new Option<bool>("--once") { Description = "Print the topology, then stop the network and exit" };
        var command = new Command("demo", "Run a whole myDvpn network on this machine and tell what happens") { dir, once };
        command.SetAction((parse, cancellationToken) => RunAsync(output, parse.GetValue(dir), parse.GetValue(once), cancellationToken));
        return command;
    }

    private static async Task<int> RunAsync(TextWriter output, string? requestedDir, bool once, CancellationToken cancellationToken)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(output) });
        if (Console.IsOutputRedirected)
            console.Profile.Width = 160;
        var work = requestedDir ?? Path.Combine(Path.GetTempPath(), $"mydvpn-demo-{Environment.ProcessId}");
        var removeWork = requestedDir is null;
        var nodes = new List<NodeProcess>();
        try
        {
            Directory.CreateDirectory(work);
            console.MarkupLineInterpolated($"[bold]myDvpn demo[/] in {work}");

            var certs = Path.Combine(work, "certs");
            if (!File.Exists(Path.Combine(certs, "ca", CertificateAuthority.CaCertFile)))
                CertificateAuthority.Init(Path.Combine(certs, "ca"));
            var loopback = new[] { IPAddress.Loopback };
            foreach (var name in SuperNodes.Select(s => s.Id).Prepend("base"))
                CertificateAuthority.Issue(Path.Combine(certs, "ca"), name, CertificateKind.Node, loopback, ["localhost"], Path.Combine(certs, name));
            CertificateAuthority.Issue(Path.Combine(certs, "ca"), "demo-admin", CertificateKind.Admin, [], [], Path.Combine(certs, "admin"));
            console.MarkupLine("1. Made an operator CA and TLS certificates for the BaseNode, two SuperNodes and an admin.");

            var executable = MydvpnExecutable.Current;
            var baseListen = new HostPort("127.0.0.1", NodeProcess.FreeTcpPort());
            var baseMetrics = new HostPort("127.0.0.1", NodeProcess.FreeTcpPort());
            nodes.Add(NodeProcess.Start(executable, "base", Path.Combine(work, "logs", "base.log"),
            [
                "base", "--data-dir", Path.Combine(work, "base"), "--cluster", $"127.0.0.1:{NodeProcess.FreeTcpPort()}",
                "--listen", baseListen.ToString(), "--tls", Path.Combine(certs, "base"), "--metrics", baseMetrics.ToString(),
            ]));
            await WaitReadyAsync(nodes[^1], baseMetrics, cancellationToken);
            console.MarkupLineInterpolated($"2. BaseNode up: directory and admin API on {baseListen} (mutual TLS), its own one-node Akka cluster.");

            var relayPort = 41000;
            var edges = new Dictionary<string, HostPort>();
            foreach (var (id, region) in SuperNodes)
            {
                var metrics = new HostPort("127.0.0.1", NodeProcess.FreeTcpPort());
                var listen = edges[region] = new HostPort("127.0.0.1", NodeProcess.FreeTcpPort());
                nodes.Add(NodeProcess.Start(executable, id, Path.Combine(work, "logs", $"{id}.log"),
                [
                    "super", "--data-dir", Path.Combine(work, id), "--region", region, "--id", id,
                    "--cluster", $"127.0.0.1:{NodeProcess.FreeTcpPort()}", "--base", baseListen.ToString(),
                    "--listen", listen.ToString(), "--public-ip", "127.0.0.1", "--relay-ports", $"{relayPort}-{relayPort + 99}",
                    "--tls", Path.Combine(certs, id), "--metrics", metrics.ToString(),
                ]));
                relayPort += 100;
                await WaitReadyAsync(nodes[^1], metrics, cancellationToken);
                console.MarkupLineInterpolated($"3. SuperNode {id} up: region {region} (a cluster of its own), peers' gRPC edge on {listen}, registered with the directory.");
            }

            using var tls = TlsMaterial.Load(Path.Combine(certs, "admin"));
            using var channel = GrpcChannels.MutualTls(baseListen, tls);
            var admin = new Admin.AdminClient(channel);
            var cluster = await admin.GetClusterAsync(new GetClusterRequest(), cancellationToken: cancellationToken);
            var regions = await admin.ListRegionsAsync(new ListRegionsRequest(), cancellationToken: cancellationToken);
            console.MarkupLine("4. The topology, as `mydvpn admin cluster` and `mydvpn admin regions` show it:");
            console.Write(AdminCommand.ClusterTable(cluster));
            console.Write(AdminCommand.RegionsTable(regions));

            var caFile = Path.Combine(certs, "ca", CertificateAuthority.CaCertFile);
            var (exitId, exitRegion) = ("exit-us-1", SuperNodes[1].Region);
            nodes.Add(await StartPeerAsync(admin, executable, work, exitId, PeerRole.Exit, exitRegion, edges[exitRegion], caFile,
                ["--max-clients", "10"], cancellationToken));
            var pool = await WaitForExitPoolAsync(admin, nodes[^1], exitRegion,
                p => p.Exits.Any(e => e.PeerId == exitId && e.Online), cancellationToken);
            console.MarkupLineInterpolated($"5. Exit peer {exitId} enrolled with a one-time token and offered 10 client places; region {exitRegion}'s exit pool knows it:");
            console.Write(AdminCommand.ExitsTable(pool));

            var (peerId, peerRegion) = ("laptop-1", SuperNodes[0].Region);
            nodes.Add(await StartPeerAsync(admin, executable, work, peerId, PeerRole.Client, peerRegion, edges[peerRegion], caFile,
                ["--exit-region", exitRegion], cancellationToken));
            var sessions = await WaitForSessionsAsync(admin, nodes[^1],
                list => list.Sessions.Any(s => s.PeerId == peerId && s.Assignments.Any(a => a.State == "active")), cancellationToken);
            pool = await admin.ListExitsAsync(new ListExitsRequest { Region = exitRegion }, cancellationToken: cancellationToken);
            console.MarkupLineInterpolated($"6. Client {peerId} ({peerRegion}) asked for an exit in {exitRegion}: its session asked {SuperNodes[1].Id} over mutual TLS, the pool picked {exitId}, which accepted the client's WireGuard key, then the client got the exit's key, endpoint and its tunnel address:");
            console.Write(AdminCommand.AssignmentsTable(pool));
            console.Write(AdminCommand.SessionsTable(sessions));
            console.MarkupLineInterpolated($"   The agent's own view: mydvpn status --state-dir {Path.Combine(work, peerId)}");

            var disconnect = await admin.IssueCommandAsync(new AdminCommandRequest
            {
                Region = peerRegion,
                Request = new IssueCommandRequest
                {
                    PeerId = peerId,
                    Command = new MyDvpn.Protocol.Control.Command { Disconnect = new Disconnect { Reason = "demo" } },
                    Wait = true,
                },
            }, cancellationToken: cancellationToken);
            console.MarkupLineInterpolated($"7. A DISCONNECT command, persisted by the peer's session before delivery: {AdminCommand.CommandText(peerId, disconnect)}");
            pool = await WaitForExitPoolAsync(admin, nodes[^1], exitRegion, p => p.Assignments.All(a => a.ClientPeerId != peerId), cancellationToken);
            console.MarkupLineInterpolated($"   It released the exit on both sides; {exitId} serves {pool.Exits.FirstOrDefault(e => e.PeerId == exitId)?.Clients ?? 0} clients now.");
            console.MarkupLineInterpolated($"   Peers keep the tunnel they were told to build in tunnel.json and log commands in commands.jsonl; WireGuard arrives with the data-plane issue.");
            console.MarkupLineInterpolated($"Try it yourself: mydvpn admin --base {baseListen} --tls {Path.Combine(certs, "admin")} sessions");
            console.MarkupLineInterpolated($"Node logs (JSON): {Path.Combine(work, "logs")}");

            if (!once)
            {
                console.MarkupLine("Running. Press Ctrl-C to stop the network.");
                await Task.Delay(Timeout.Infinite, cancellationToken).ContinueWith(_ => { }, TaskScheduler.Default);
            }
            return CliApplication.Success;
        }
        catch (DemoNodeFailedException ex)
        {
            await Console.Error.WriteLineAsync($"error: {ex.Message}");
            return CliApplication.RuntimeFailure;
        }
        finally
        {
            console.MarkupLine("Stopping the network…");
            foreach (var node in Enumerable.Reverse(nodes))
            {
                await node.StopAsync(TimeSpan.FromSeconds(10));
                node.Dispose();
            }
            if (removeWork)
                Directory.Delete(work, recursive: true);
        }
    }

    /// <summary>Enrolls a peer with a one-time token and starts its agent.</summary>
    private static async Task<NodeProcess> StartPeerAsync(Admin.AdminClient admin, MydvpnExecutable executable, string work, string peerId,
        PeerRole role, string region, HostPort superNode, string caFile, string[] extra, CancellationToken cancellationToken)
    {
        var token = await admin.CreateTokenAsync(new CreateTokenRequest { Role = (int)role, Region = region, Uses = 1, TtlSeconds = 600 },
            cancellationToken: cancellationToken);
        var keyFile = Path.Combine(work, $"{peerId}.key");
        if (!File.Exists(keyFile))
            IdentityKey.Generate().Save(keyFile);
        return NodeProcess.Start(executable, peerId, Path.Combine(work, "logs", $"{peerId}.log"),
        [
            "peer", "--role", role == PeerRole.Exit ? "exit" : "client", "--id", peerId, "--region", region, "--key", keyFile,
            "--ca", caFile, "--supernode", superNode.ToString(), "--token", token.Token, "--state-dir", Path.Combine(work, peerId), .. extra,
        ]);
    }

    /// <summary>Polls the admin's session list until <paramref name="until"/> holds; fails with the end of the peer's log if it exits.</summary>
    private static Task<SessionList> WaitForSessionsAsync(Admin.AdminClient admin, NodeProcess peer, Func<SessionList, bool> until,
        CancellationToken cancellationToken) =>
        PollAsync(peer, "the session list", async () => await admin.ListSessionsAsync(new ListSessionsRequest(), cancellationToken: cancellationToken),
            until, cancellationToken);

    /// <summary>Polls a region's exit pool until <paramref name="until"/> holds; fails with the end of the peer's log if it exits.</summary>
    private static Task<ExitPoolView> WaitForExitPoolAsync(Admin.AdminClient admin, NodeProcess peer, string region,
        Func<ExitPoolView, bool> until, CancellationToken cancellationToken) =>
        PollAsync(peer, $"region {region}'s exit pool",
            async () => await admin.ListExitsAsync(new ListExitsRequest { Region = region }, cancellationToken: cancellationToken), until, cancellationToken);

    private static async Task<T> PollAsync<T>(NodeProcess peer, string what, Func<Task<T>> read, Func<T, bool> until, CancellationToken cancellationToken)
    {
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < TimeSpan.FromSeconds(60))
        {
            if (peer.HasExited)
                throw new DemoNodeFailedException($"{peer.Name} exited with code {peer.ExitCode}:\n{Tail(peer.ReadLog())}");
            var value = await read();
            if (until(value))
                return value;
            await Task.Delay(250, cancellationToken);
        }
        throw new DemoNodeFailedException($"{what} did not get there within 60 s; {peer.Name}'s log:\n{Tail(peer.ReadLog())}");
    }

    /// <summary>Polls the node's <c>/readyz</c>; fails with the end of its log if it exits or stays unready.</summary>
    public static async Task WaitReadyAsync(NodeProcess node, HostPort metrics, CancellationToken cancellationToken, TimeSpan? timeout = null)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var deadline = Stopwatch.StartNew();
        var limit = timeout ?? TimeSpan.FromSeconds(60);
        while (deadline.Elapsed < limit)
        {
            if (node.HasExited)
                throw new DemoNodeFailedException($"{node.Name} exited with code {node.ExitCode}:\n{Tail(node.ReadLog())}");
            try
            {
                using var response = await http.GetAsync($"http://{metrics}/readyz", cancellationToken);
                if (response.IsSuccessStatusCode)
                    return;
            }
            catch (HttpRequestException)
            {
                // Not listening yet.
            }
            catch (TaskCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                // That poll timed out; try again.
            }
            await Task.Delay(200, cancellationToken);
        }
        throw new DemoNodeFailedException($"{node.Name} was not ready within {limit.TotalSeconds:0} s:\n{Tail(node.ReadLog())}");
    }

    private static string Tail(string log) => string.Join('\n', log.Split('\n').TakeLast(15));
}

public sealed class DemoNodeFailedException(string message) : Exception(message);
