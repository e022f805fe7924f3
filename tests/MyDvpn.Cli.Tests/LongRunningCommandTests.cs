using System.Globalization;
using System.Net;
using System.Text.Json;
using MyDvpn.Cli.Demo;
using MyDvpn.Common;
using MyDvpn.HostOs;
using MyDvpn.Security;
using Xunit.Abstractions;

namespace MyDvpn.Cli.Tests;

/// <summary>
/// Real <c>mydvpn</c> processes (the build output's, as the demo starts them) on loopback: what they log when they start,
/// how a peer says it was refused, and how SIGINT stops them — once cleanly, twice at once. Each process runs with SIGINT at
/// its default disposition (<c>env --default-signal=INT</c>): a runner started in the background may hand it down ignored.
/// </summary>
public sealed class LongRunningCommandTests(ITestOutputHelper output) : IDisposable
{
    /// <summary>How long anything may take before the test fails (a bound, not a measurement).</summary>
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(90);

    private readonly TempDirectory temp = new();
    private readonly List<NodeProcess> processes = [];

    public void Dispose()
    {
        foreach (var process in processes)
        {
            if (!process.HasExited)
                Signal(process, "CONT");
            output.WriteLine($"--- {process.Name} ---\n{process.ReadLog()}");
            process.Dispose();
        }
        temp.Dispose();
    }

    [Fact]
    public async Task A_normal_BaseNode_and_SuperNode_start_logs_no_warning_or_error()
    {
        var (baseNode, superNode) = await StartBaseAndSuperAsync();

        // Both ready (the SuperNode registered with the directory), with the default --max-streams, and polled while starting.
        var problems = JsonLines(baseNode).Concat(JsonLines(superNode))
            .Where(line => line.GetProperty("LogLevel").GetString() is "Warning" or "Error" or "Critical")
            .Select(line => line.GetRawText()).ToList();
        Assert.True(problems.Count == 0, string.Join('\n', problems));
    }

    [Fact]
    public async Task A_peer_refused_for_good_exits_1_saying_once_why_and_the_fix_on_stderr()
    {
        var (_, superNode) = await StartBaseAndSuperAsync();

        // Never enrolled and no --token: UNKNOWN_PEER, which no retry can fix.
        var peer = Start("stranger", PeerArgs("stranger", superNode.Grpc, "--log-format", "text"));

        Assert.True(await peer.WaitForExitAsync(Bound), "the refused peer exits");
        Assert.Equal(1, peer.ExitCode);
        var refusal = Assert.Single(peer.ReadLog().Split('\n'), line => line.StartsWith("error: ", StringComparison.Ordinal));
        Assert.StartsWith($"error: the SuperNode at {superNode.Grpc} refused peer stranger with UNKNOWN_PEER (", refusal, StringComparison.Ordinal);
        Assert.EndsWith("; the region does not know this peer: enroll it with --token TOKEN (from `mydvpn admin token create`); if it enrolled before, "
            + "delete enrollment.json in its --state-dir and enroll it again with a new token", refusal.TrimEnd(), StringComparison.Ordinal);
        Assert.Single(System.Text.RegularExpressions.Regex.Matches(refusal, "UNKNOWN_PEER"));
    }

    [Fact]
    public async Task A_peer_logs_a_line_a_person_reads_with_text_and_json_when_its_output_is_not_a_terminal_and_stops_on_SIGINT_with_0()
    {
        var nowhere = new HostPort("127.0.0.1", NodeProcess.FreeTcpPort());
        var text = Start("peer-text", PeerArgs("peer-text", nowhere, "--log-format", "text"));
        var json = Start("peer-json", PeerArgs("peer-json", nowhere));

        var line = await LineAsync(text, l => l.Contains("Connecting to SuperNode", StringComparison.Ordinal));
        Assert.Matches(@"^\d\d:\d\d:\d\d info: MyDvpn\.Peer\.Control\.ControlChannel\[0\] => peer_id=peer-text region=eu-west Connecting to SuperNode 127\.0\.0\.1:\d+ \(attempt 1\)$", line);
        var record = JsonDocument.Parse(await LineAsync(json, l => l.Contains("Connecting to SuperNode", StringComparison.Ordinal))).RootElement;
        Assert.Equal("Information", record.GetProperty("LogLevel").GetString());

        foreach (var peer in new[] { text, json })
        {
            Signal(peer, "INT");
            Assert.True(await peer.WaitForExitAsync(Bound), $"{peer.Name} stops after SIGINT");
            Assert.Equal(0, peer.ExitCode);
            Assert.Contains("Stopping (SIGINT); Ctrl-C again forces it.", peer.ReadLog(), StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task A_second_SIGINT_while_a_SuperNode_stops_ends_it_at_once_with_130()
    {
        var (baseNode, superNode) = await StartBaseAndSuperAsync();
        // A directory that does not answer: the SuperNode's clean stop waits for its deregistration to time out.
        Signal(baseNode.Process, "STOP");

        Signal(superNode.Process, "INT");
        await LineAsync(superNode.Process, l => l.StartsWith("Stopping (SIGINT)", StringComparison.Ordinal));
        Signal(superNode.Process, "INT");

        Assert.True(await superNode.Process.WaitForExitAsync(Bound), "the SuperNode ends after the second SIGINT");
        Assert.Equal(130, superNode.Process.ExitCode);
        Assert.Contains("Forced to stop (SIGINT again while stopping): exiting with 130", superNode.Process.ReadLog(), StringComparison.Ordinal);
        Assert.DoesNotContain("Deregistered SuperNode", superNode.Process.ReadLog(), StringComparison.Ordinal);
    }

    private sealed record Node(NodeProcess Process, HostPort Grpc, HostPort Metrics);

    /// <summary>A BaseNode, then (once it is ready) a SuperNode of eu-west with the default --max-streams, until both are ready.</summary>
    private async Task<(Node Base, Node Super)> StartBaseAndSuperAsync()
    {
        var ca = temp.Sub("ca");
        CertificateAuthority.Init(ca).Dispose();
        CertificateAuthority.IssueNode(ca, NodeIdentity.Base("base-1"), [IPAddress.Loopback], [], temp.Sub("base-tls")).Dispose();
        CertificateAuthority.IssueNode(ca, NodeIdentity.Super("sn-1", "eu-west"), [IPAddress.Loopback], [], temp.Sub("super-tls")).Dispose();

        var baseNode = StartNode("base",
            ["base", "--data-dir", temp.Sub("base"), "--cluster", Loopback(), "--tls", temp.Sub("base-tls")]);
        await ReadyAsync(baseNode);
        var relay = NodeProcess.FreeTcpPort();
        var superNode = StartNode("super",
        [
            "super", "--data-dir", temp.Sub("super"), "--cluster", Loopback(), "--tls", temp.Sub("super-tls"), "--region", "eu-west",
            "--id", "sn-1", "--base", baseNode.Grpc.ToString(), "--public-ip", "127.0.0.1", "--relay-ports", $"{relay}-{relay}",
        ]);
        await ReadyAsync(superNode);
        return (baseNode, superNode);
    }

    private Node StartNode(string name, string[] arguments)
    {
        var grpc = new HostPort("127.0.0.1", NodeProcess.FreeTcpPort());
        var metrics = new HostPort("127.0.0.1", NodeProcess.FreeTcpPort());
        var process = Start(name, [.. arguments, "--listen", grpc.ToString(), "--metrics", metrics.ToString()]);
        return new Node(process, grpc, metrics);
    }

    private string[] PeerArgs(string id, HostPort superNode, params string[] more)
    {
        var key = temp.Sub($"{id}.key");
        IdentityKey.Generate().Save(key);
        return
        [
            "peer", "--role", "client", "--id", id, "--region", "eu-west", "--key", key, "--ca", Path.Combine(temp.Sub("ca"), CertificateAuthority.CaCertFile),
            "--supernode", superNode.ToString(), "--state-dir", Directory.CreateDirectory(temp.Sub($"{id}-state")).FullName, "--data-plane", "none", .. more,
        ];
    }

    private NodeProcess Start(string name, string[] arguments)
    {
        if (!File.Exists(Path.Combine(temp.Sub("ca"), CertificateAuthority.CaCertFile)))
            CertificateAuthority.Init(temp.Sub("ca")).Dispose();
        var build = MydvpnExecutable.InDirectory(AppContext.BaseDirectory);
        var executable = new MydvpnExecutable("env", ["--default-signal=INT", build.FileName, .. build.PrefixArguments]);
        var process = NodeProcess.Start(executable, name, temp.Sub($"{name}.log"), arguments);
        processes.Add(process);
        return process;
    }

    private static string Loopback() => new HostPort("127.0.0.1", NodeProcess.FreeTcpPort()).ToString();

    private static async Task ReadyAsync(Node node)
    {
        using var cancel = new CancellationTokenSource(Bound);
        await Commands.DemoCommand.WaitReadyAsync(node.Process, node.Metrics, cancel.Token, Bound);
    }

    private static void Signal(NodeProcess process, string signal) =>
        HostCommand.Host.RunCheckedAsync("kill", ["-s", signal, process.Id.ToString(CultureInfo.InvariantCulture)]).GetAwaiter().GetResult();

    /// <summary>The first line of the process's output that matches, once it is there.</summary>
    private static async Task<string> LineAsync(NodeProcess process, Func<string, bool> match)
    {
        using var cancel = new CancellationTokenSource(Bound);
        while (true)
        {
            if (process.ReadLog().Split('\n').Select(l => l.TrimEnd('\r')).FirstOrDefault(match) is { } line)
                return line;
            if (process.HasExited)
                throw new Xunit.Sdk.XunitException($"{process.Name} exited with {process.ExitCode} before writing the line");
            await Task.Delay(50, cancel.Token);
        }
    }

    private static IEnumerable<JsonElement> JsonLines(Node node) =>
        node.Process.ReadLog().Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Where(line => line.StartsWith('{'))
            .Select(line => JsonDocument.Parse(line).RootElement.Clone());
}
