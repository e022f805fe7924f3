using System.CommandLine;
using System.Diagnostics;
using MyDvpn.Cli.Demo;
using MyDvpn.Common;
using MyDvpn.HostOs;
using MyDvpn.Logging;
using MyDvpn.Protocol.Admin;
using MyDvpn.Protocol.SuperNode;
using MyDvpn.Testbed;
using Spectre.Console;

namespace MyDvpn.Cli.Commands;

/// <summary>
/// <c>mydvpn demo</c>: a whole myDvpn network on this machine, in network namespaces (root): a BaseNode, two SuperNodes
/// of two regions, an exit peer and a client peer each behind its own NAT, every node its own <c>mydvpn</c> process,
/// real WireGuard (wireguard-go) between the peers. It tells what happens — who runs where, which exit the client got,
/// the public address an internet server sees, a ping through the tunnel — then runs until Ctrl-C and tears down.
/// </summary>
public static class DemoCommand
{
    /// <summary>The programs the demo runs, with the Debian package that has each.</summary>
    public static readonly IReadOnlyList<(string Program, string Package)> Tools =
    [
        ("ip", "iproute2"), ("nft", "nftables"), ("sysctl", "procps"), ("ping", "iputils-ping"),
        ("wireguard-go", "wireguard-go"), ("wg", "wireguard-tools"),
    ];

    public static Command Build(TextWriter output)
    {
        var dir = new Option<string?>("--dir") { Description = "Working directory for certificates, data and logs (default: a new temporary one, removed afterwards)" };
        var once = new Option<bool>("--once") { Description = "Tell the story, then tear the network down and exit" };
        var installDeps = new Option<bool>("--install-deps") { Description = "apt-get install the Debian packages the demo needs that are missing" };
        var command = new LongRunningCommand("demo",
            "Run a whole myDvpn network on this machine in network namespaces (root): BaseNode, two SuperNodes, an exit and a client behind NATs, real WireGuard; " +
            "--log-format is that of the nodes' logs (in DIR/logs)")
        {
            dir, once, installDeps,
        };
        command.SetAction((parse, cancellationToken) =>
            RunAsync(output, parse.InvocationConfiguration.Error, parse.GetValue(dir), parse.GetValue(once), parse.GetValue(installDeps),
                command.LogFormatOf(parse), cancellationToken));
        return command;
    }

    private static async Task<int> RunAsync(TextWriter output, TextWriter error, string? requestedDir, bool once, bool installDeps,
        LogFormat logFormat, CancellationToken cancellationToken)
    {
        if (!OperatingSystem.IsLinux() || !Prerequisites.IsPrivileged())
        {
            await error.WriteLineAsync("error: the demo builds network namespaces, WireGuard interfaces and NAT rules, which needs root " +
                                       "(CAP_NET_ADMIN, CAP_SYS_ADMIN) on Linux: run it as root, e.g. `sudo dotnet run --project src/MyDvpn.Cli -- demo`");
            return CliApplication.BadUsage;
        }
        if (!await EnsurePackagesAsync(output, error, installDeps, cancellationToken))
            return CliApplication.BadUsage;

        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(output) });
        if (Console.IsOutputRedirected)
            console.Profile.Width = 160;
        var work = requestedDir ?? Path.Combine(Path.GetTempPath(), $"mydvpn-demo-{Environment.ProcessId}");
        Directory.CreateDirectory(work);
        console.MarkupLineInterpolated($"[bold]myDvpn demo[/] in {work}");
        NetnsTestbed? testbed = null;
        TestbedNetwork? network = null;
        try
        {
            await NetnsTestbed.RemoveLeftoversAsync(cancellationToken);
            testbed = await NetnsTestbed.CreateAsync(cancellationToken);
            var ns = testbed.Namespaces;
            console.MarkupLineInterpolated($"1. Network namespaces {testbed.Id}-*: an internet ({TestbedAddresses.Router}/24, an HTTP server that answers with the caller's address), base, sn-a, sn-b, and an exit ({TestbedAddresses.Exit}) and a client ({TestbedAddresses.Client}) each behind its own NAT router ({TestbedAddresses.ExitNatPublic}, UDP 51820 forwarded to the exit; {TestbedAddresses.ClientNatPublic}).");
            var before = await testbed.HttpGetAsync(TestbedRoles.Client, testbed.EchoUrl, TimeSpan.FromSeconds(5), cancellationToken);
            console.MarkupLineInterpolated($"   Before any tunnel, the internet server sees the client as {before.Trim()} (its own NAT).");

            var step = 2;
            network = await TestbedNetwork.StartAsync(testbed, MydvpnExecutable.Current, work,
                line => console.MarkupLineInterpolated($"{step++}. {line}"), cancellationToken, logFormat: logFormat);

            await network.StartExitAsync(cancellationToken);
            var exitStatus = await network.StatusAsync(TestbedNetwork.ExitId, cancellationToken);
            console.MarkupLineInterpolated($"{step++}. Exit peer {TestbedNetwork.ExitId} (region {TestbedNetwork.ExitRegion}, namespace {ns.Exit}) enrolled with a one-time token, offers 10 client places; WireGuard key {exitStatus.GetProperty("wireguardPublicKey").GetString()}.");

            var client = await network.StartClientAsync(cancellationToken);
            var exit = client.GetProperty("exit");
            console.MarkupLineInterpolated($"{step++}. Client peer {TestbedNetwork.ClientId} (region {TestbedNetwork.ClientRegion}, namespace {ns.Client}) asked for an exit in {TestbedNetwork.ExitRegion}: sn-eu-1 asked sn-us-1 over mutual TLS, its exit pool picked {exit.GetProperty("peerId").GetString()}, which accepted the client's key; the client got endpoint {exit.GetProperty("endpoint").GetString()} and tunnel address {client.GetProperty("tunnelAddresses")[0].GetString()}.");

            var seen = "";
            await network.UntilAsync(async () =>
            {
                seen = (await testbed.HttpGetAsync(TestbedRoles.Client, testbed.EchoUrl, TimeSpan.FromSeconds(5), cancellationToken)).Trim();
                return seen == TestbedAddresses.ExitNatPublic.ToString();
            }, "the client's traffic leaves through the exit", cancellationToken);
            console.MarkupLineInterpolated($"{step++}. Through the tunnel, the internet server sees the client as [green]{seen}[/]: the exit's public address (its NAT), not the client's {before.Trim()}.");
            var ping = await testbed.PingAsync(TestbedRoles.Client, TestbedAddresses.Router.ToString(), 5, cancellationToken);
            // The human form: it hides the private key, which the dump form prints.
            var handshake = await testbed.For(TestbedRoles.Client).RunAsync("wg", ["show", network.ClientInterface], cancellationToken: cancellationToken);
            console.MarkupLineInterpolated($"   Ping from the client to {TestbedAddresses.Router} through the tunnel: {ping.Received}/{ping.Transmitted} answered, average RTT {ping.AverageRoundTrip?.TotalMilliseconds ?? double.NaN:0.###} ms.");
            console.MarkupLineInterpolated($"   `wg show {network.ClientInterface}` in the client's namespace (wireguard-tools reading our interface):");
            console.WriteLine(Indent(handshake.StandardOutput));

            var sessions = await network.Admin.ListSessionsAsync(new ListSessionsRequest(), cancellationToken: cancellationToken);
            var pool = await network.Admin.ListExitsAsync(new ListExitsRequest { Region = TestbedNetwork.ExitRegion }, cancellationToken: cancellationToken);
            console.MarkupLine($"{step++}. What an operator sees (`mydvpn admin sessions`, `mydvpn admin exits --region {TestbedNetwork.ExitRegion}`):");
            console.Write(AdminCommand.SessionsTable(sessions));
            console.Write(AdminCommand.AssignmentsTable(pool));
            // What is left to look at after the story: nothing with --once, and the work directory only until teardown
            // unless it was the caller's.
            var logs = $"Node logs ({EnumOption.NameOf(logFormat)}): {Path.Combine(work, "logs")}";
            if (once)
            {
                console.MarkupLine("--once: the network goes now. Without --once it stays up until Ctrl-C, to look around.");
                if (requestedDir is not null)
                    console.MarkupLineInterpolated($"{logs}");
            }
            else
            {
                console.MarkupLine("Try it yourself while it runs, as root in another terminal:");
                console.MarkupLineInterpolated($"   {MydvpnExecutable.Current.ShellCommand} status --state-dir {network.StateDir(TestbedNetwork.ClientId)}");
                console.MarkupLineInterpolated($"   ip netns exec {ns.Client} ping {TestbedAddresses.Router}");
                console.MarkupLineInterpolated($"{logs}{(requestedDir is null ? " (removed with the network; --dir DIR keeps them)" : "")}");
            }

            if (!once)
            {
                console.MarkupLine("Running. Press Ctrl-C to stop and tear everything down.");
                await Task.Delay(Timeout.Infinite, cancellationToken).ContinueWith(_ => { }, TaskScheduler.Default);
            }
            return CliApplication.Success;
        }
        catch (Exception ex) when (ex is DemoNodeFailedException or TestbedException or HostCommandException or Grpc.Core.RpcException)
        {
            await error.WriteLineAsync($"error: {ex.Message}");
            return CliApplication.RuntimeFailure;
        }
        finally
        {
            console.MarkupLine("Stopping: the peers give their exit back and remove their WireGuard interfaces, then the nodes leave…");
            if (network is not null)
                await network.DisposeAsync();
            if (testbed is not null)
                await testbed.DisposeAsync();
            if (requestedDir is null)
                Directory.Delete(work, recursive: true);
            console.MarkupLine("Torn down: no namespace, interface, NAT rule or process of the demo is left.");
        }
    }

    /// <summary>Says which Debian packages are missing; with <paramref name="install"/> apt-gets them.</summary>
    private static async Task<bool> EnsurePackagesAsync(TextWriter output, TextWriter error, bool install, CancellationToken cancellationToken)
    {
        var missing = Prerequisites.MissingPackages(Tools);
        if (missing.Count == 0)
            return true;
        if (!install)
        {
            await error.WriteLineAsync($"error: the demo needs these Debian packages: {string.Join(' ', missing)}. " +
                                       $"Install them (apt-get install {string.Join(' ', missing)}) or run the demo with --install-deps.");
            return false;
        }
        await output.WriteLineAsync($"Installing {string.Join(' ', missing)} with apt-get…");
        await HostCommand.Host.RunCheckedAsync("apt-get", ["update", "-qq"], cancellationToken: cancellationToken);
        var installed = await new HostCommand(null).RunAsync("env",
            ["DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-qq", .. missing], cancellationToken: cancellationToken);
        if (!installed.Succeeded)
        {
            await error.WriteLineAsync($"error: apt-get install {string.Join(' ', missing)} failed: {installed.StandardError.Trim()}");
            return false;
        }
        return Prerequisites.MissingPackages(Tools).Count == 0;
    }

    private static string Indent(string text) => string.Join('\n', text.TrimEnd().Split('\n').Select(line => "     " + line));

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
