using System.Diagnostics;
using System.Text.Json;
using MyDvpn.Protocol.Control;
using MyDvpn.Security;
using Xunit.Abstractions;

namespace MyDvpn.IntegrationTests;

/// <summary>
/// <c>mydvpn admin</c> as an operator runs it against real BaseNode and SuperNode processes (TLS, SQLite): saved once with
/// <c>admin login</c>, then tokens, peers, revocations and their taking back, across a BaseNode restart.
/// </summary>
public sealed class AdminLifecycleTests(ITestOutputHelper output)
{
    private const string Region = "region-a";

    [Fact]
    public async Task Tokens_peers_and_revocations_have_a_lifecycle_an_operator_runs_without_repeating_flags()
    {
        await using var network = new TestNetwork(output);
        var baseNode = network.BaseNode();
        await network.StartAsync(baseNode);
        var super = network.SuperNode("sn-a", Region, baseNode);
        await network.StartAsync(super);
        // Only the saved file tells the commands below where the BaseNode is.
        var env = new Dictionary<string, string> { ["XDG_CONFIG_HOME"] = Path.Combine(network.Root, "xdg") };
        var (missingExit, missing) = await network.RunAsync(["admin", "regions"], env);
        Assert.True(missingExit == 2, missing);
        Assert.Contains("--base: not given", missing, StringComparison.Ordinal);
        Assert.Contains("MYDVPN_ADMIN_BASE", missing, StringComparison.Ordinal);
        Assert.Contains("admin login", missing, StringComparison.Ordinal);

        var login = await network.RunAsync(["admin", "login", "--base", baseNode.Listen.ToString(), "--tls", network.AdminTls], env);
        Assert.True(login.ExitCode == 0, login.Output);
        Assert.True(File.Exists(Path.Combine(network.Root, "xdg", "mydvpn", "admin.json")));

        var token = JsonDocument.Parse(await AdminAsync(network, env, "token", "create", "--role", "client", "--region", Region, "--json"))
            .RootElement.GetProperty("token").GetString()!;
        var typo = await network.RunAsync(["admin", "token", "create", "--role", "client", "--region", "region-typo"], env);
        Assert.True(typo.ExitCode == 0, typo.Output);
        Assert.Contains("warning: the directory knows no region 'region-typo'", typo.Output, StringComparison.Ordinal);
        // The warning goes to stderr; the token is the first line on stdout.
        var typoTokenId = typo.Output.Split('\n').Single(l => System.Text.RegularExpressions.Regex.IsMatch(l, "^[0-9a-f]{16}\\.")).Split('.')[0];

        // A peer enrolls and is online; once its stream ends it is offline, with when it was last seen.
        var key = IdentityKey.Generate();
        await using (var peer = await RawPeer.OpenAsync(super.Listen, network.CaFile))
        {
            await peer.SendAsync(peer.SignedRequest(key, "peer-1", PeerRole.Client, Region, token));
            Assert.Equal(ControlMessage.PayloadOneofCase.AuthResponse, (await peer.ReadAsync()).PayloadCase);
            await Eventually.Async(async () => Peer(await PeersAsync(network, env), "peer-1") is { } p && p.GetProperty("online").GetBoolean(),
                "peer-1 shows online");
        }
        var offline = default(JsonElement);
        await Eventually.Async(async () =>
        {
            offline = Peer(await PeersAsync(network, env), "peer-1") ?? default;
            return offline.ValueKind == JsonValueKind.Object && !offline.GetProperty("online").GetBoolean()
                   && offline.GetProperty("lastSeen").ValueKind == JsonValueKind.String;
        }, "peer-1 shows offline with when it was last seen (the SuperNode's next report)");
        Assert.Equal(("client", Region, false), (offline.GetProperty("role").GetString(), offline.GetProperty("region").GetString(),
            offline.GetProperty("revoked").GetBoolean()));
        var lastSeen = offline.GetProperty("lastSeen").GetDateTimeOffset();

        // A typo is not banned for good by accident.
        var typoRevoke = await network.RunAsync(["admin", "revoke", "peer-l"], env);
        Assert.True(typoRevoke.ExitCode == 2, typoRevoke.Output);
        Assert.Contains("never enrolled", typoRevoke.Output, StringComparison.Ordinal);
        Assert.Contains("--force", typoRevoke.Output, StringComparison.Ordinal);

        await AdminAsync(network, env, "revoke", "peer-1");
        var revoked = JsonDocument.Parse(await AdminAsync(network, env, "revocations", "--json")).RootElement.GetProperty("peers");
        Assert.Equal(["peer-1"], revoked.EnumerateArray().Select(p => p.GetProperty("peerId").GetString()));
        Assert.Equal("REVOKED", await LoginAsync(super, network, key));

        var unrevoked = await AdminAsync(network, env, "unrevoke", "peer-1");
        Assert.Contains("Peer peer-1 may connect again", unrevoked, StringComparison.Ordinal);
        Assert.Empty(JsonDocument.Parse(await AdminAsync(network, env, "revocations", "--json")).RootElement.GetProperty("peers").EnumerateArray());
        Assert.Null(await LoginAsync(super, network, key));
        Assert.Contains("took back the revocation of peer peer-1", baseNode.Process!.ReadLog(), StringComparison.Ordinal);
        Assert.Contains("test-admin", baseNode.Process!.ReadLog().Split('\n').Single(l => l.Contains("took back the revocation", StringComparison.Ordinal)),
            StringComparison.Ordinal);

        await AdminAsync(network, env, "token", "revoke", typoTokenId);
        var tableText = await AdminAsync(network, env, "token", "list");
        Assert.DoesNotContain(tableText, c => c is '│' or '─' or '┌');

        // What the directory holds survives a restart of the BaseNode.
        baseNode.Process!.Kill();
        await network.StartAsync(baseNode);
        JsonElement tokens = default;
        await Eventually.Async(async () =>
        {
            var (exitCode, text) = await network.RunAsync(["admin", "token", "list", "--json"], env);
            if (exitCode != 0)
                return false;
            tokens = JsonDocument.Parse(text).RootElement.GetProperty("tokens").Clone();
            return true;
        }, "the restarted BaseNode lists the tokens");
        Assert.Equal([("used_up", "peer-1"), ("revoked", "")], tokens.EnumerateArray().Select(t =>
            (t.GetProperty("state").GetString(), string.Join(",", t.GetProperty("enrolledPeers").EnumerateArray().Select(p => p.GetString())))));
        var after = Peer(await PeersAsync(network, env), "peer-1");
        Assert.NotNull(after);
        Assert.Equal(token.Split('.')[0], after.Value.GetProperty("tokenId").GetString());
        Assert.False(after.Value.GetProperty("revoked").GetBoolean());
        Assert.True(after.Value.GetProperty("online").GetBoolean()
                    || after.Value.GetProperty("lastSeen").GetDateTimeOffset() >= lastSeen);
    }

    [Fact]
    public async Task Tables_are_box_drawn_on_a_terminal_and_plain_when_piped()
    {
        await using var network = new TestNetwork(output);
        var baseNode = network.BaseNode();
        await network.StartAsync(baseNode);
        // MYDVPN_ADMIN_* instead of flags.
        var env = new Dictionary<string, string>
        {
            ["MYDVPN_ADMIN_BASE"] = baseNode.Listen.ToString(),
            ["MYDVPN_ADMIN_TLS"] = network.AdminTls,
            ["LANG"] = "C.UTF-8",
            ["TERM"] = "xterm",
        };

        var piped = await AdminAsync(network, env, "cluster");
        var terminal = await OnTerminalAsync(network, env, "admin", "cluster");

        output.WriteLine(piped);
        output.WriteLine(terminal);
        Assert.DoesNotContain(piped, c => c is '│' or '─' or '┌');
        Assert.Contains("member", piped, StringComparison.Ordinal);
        Assert.Contains('─', terminal);
        Assert.Contains("member", terminal, StringComparison.Ordinal);
    }

    /// <summary>Runs <c>mydvpn</c> with a pseudo-terminal as its standard output (<c>script</c>), and returns what it printed.</summary>
    private static async Task<string> OnTerminalAsync(TestNetwork network, IReadOnlyDictionary<string, string> env, params string[] arguments)
    {
        // script takes the command as one line for the shell: every word quoted.
        var words = new[] { network.Executable.FileName }.Concat(network.Executable.PrefixArguments).Concat(arguments);
        var start = new ProcessStartInfo("script") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in new[] { "-qec", string.Join(' ', words.Select(w => "'" + w.Replace("'", "'\\''", StringComparison.Ordinal) + "'")), "/dev/null" })
            start.ArgumentList.Add(argument);
        foreach (var (name, value) in env)
            start.Environment[name] = value;
        using var process = Process.Start(start)!;
        var text = process.StandardOutput.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
        Assert.True(process.ExitCode == 0, await text + await process.StandardError.ReadToEndAsync());
        return await text;
    }

    private static async Task<string> AdminAsync(TestNetwork network, IReadOnlyDictionary<string, string> env, params string[] arguments)
    {
        var (exitCode, text) = await network.RunAsync(["admin", .. arguments], env);
        Assert.True(exitCode == 0, $"admin {string.Join(' ', arguments)} failed ({exitCode}): {text}");
        return text;
    }

    private static async Task<JsonElement> PeersAsync(TestNetwork network, IReadOnlyDictionary<string, string> env) =>
        JsonDocument.Parse(await AdminAsync(network, env, "peers", "--json")).RootElement.GetProperty("peers").Clone();

    private static JsonElement? Peer(JsonElement peers, string peerId) =>
        peers.EnumerateArray().Where(p => p.GetProperty("peerId").GetString() == peerId).Select(p => (JsonElement?)p).SingleOrDefault();

    /// <summary>Logs peer-1 in with its key: null when it is let in, else the reason of its refusal.</summary>
    private static async Task<string?> LoginAsync(TestNetwork.Node super, TestNetwork network, IdentityKey key)
    {
        await using var peer = await RawPeer.OpenAsync(super.Listen, network.CaFile);
        await peer.SendAsync(peer.SignedRequest(key, "peer-1", PeerRole.Client, Region));
        try
        {
            var answer = await peer.ReadAsync();
            return answer.PayloadCase == ControlMessage.PayloadOneofCase.AuthResponse ? null : $"unexpected {answer.PayloadCase}";
        }
        catch (Grpc.Core.RpcException ex)
        {
            return ex.Trailers.GetValue("mydvpn-reason") ?? ex.StatusCode.ToString();
        }
    }
}
