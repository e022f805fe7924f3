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
/// a BaseNode, two SuperNodes of two regions and a client peer on loopback, with TLS, each its own
/// process; it prints the topology, the peer's session and a command's round trip, and runs until Ctrl-C.
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

            var (peerId, peerRegion) = ("laptop-1", SuperNodes[0].Region);
            var token = await admin.CreateTokenAsync(new CreateTokenRequest { Role = (int)PeerRole.Client, Region = peerRegion, Uses = 1, TtlSeconds = 600 },
                cancellationToken: cancellationToken);
            var keyFile = Path.Combine(work, $"{peerId}.key");
            if (!File.Exists(keyFile))
                IdentityKey.Generate().Save(keyFile);
            nodes.Add(NodeProcess.Start(executable, peerId, Path.Combine(work, "logs", $"{peerId}.log"),
            [
                "peer", "--role", "client", "--id", peerId, "--region", peerRegion, "--key", keyFile,
                "--ca", Path.Combine(certs, "ca", CertificateAuthority.CaCertFile), "--supernode", edges[peerRegion].ToString(),
                "--token", token.Token, "--state-dir", Path.Combine(work, peerId),
            ]));
            var sessions = await WaitForSessionAsync(admin, nodes[^1], peerId, peerRegion, cancellationToken);
            console.MarkupLineInterpolated($"5. Peer {peerId} enrolled with a one-time token (Ed25519 key, challenge signed) and holds a control stream to {SuperNodes[0].Id}:");
            console.Write(AdminCommand.SessionsTable(sessions));

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
            console.MarkupLineInterpolated($"6. A DISCONNECT command, persisted by the peer's session before delivery: {AdminCommand.CommandText(peerId, disconnect)}");
            console.MarkupLineInterpolated($"   The peer records what it applies in {Path.Combine(work, peerId, "commands.jsonl")}; WireGuard arrives with the data-plane issue.");
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

    /// <summary>Polls the admin API until the peer's stream shows; fails with the end of its log if it exits.</summary>
    private static async Task<SessionList> WaitForSessionAsync(Admin.AdminClient admin, NodeProcess peer, string peerId, string region, CancellationToken cancellationToken)
    {
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < TimeSpan.FromSeconds(60))
        {
            if (peer.HasExited)
                throw new DemoNodeFailedException($"{peer.Name} exited with code {peer.ExitCode}:\n{Tail(peer.ReadLog())}");
            var sessions = await admin.ListSessionsAsync(new ListSessionsRequest { Region = region }, cancellationToken: cancellationToken);
            if (sessions.Sessions.Any(s => s.PeerId == peerId))
                return sessions;
            await Task.Delay(250, cancellationToken);
        }
        throw new DemoNodeFailedException($"{peer.Name} did not connect within 60 s:\n{Tail(peer.ReadLog())}");
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
