using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using MyDvpn.Peer;
using MyDvpn.Peer.LocalStatus;
using MyDvpn.Peer.Tunnel;
using MyDvpn.Security;

namespace MyDvpn.Cli.Tests;

/// <summary><c>mydvpn status</c> against a real agent's status socket, against none, and against a socket that answers nonsense.</summary>
public sealed class StatusCommandTests : IAsyncLifetime
{
    private readonly TempDirectory temp = new();

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync()
    {
        temp.Dispose();
        return Task.CompletedTask;
    }

    [Fact]
    public async Task Without_an_agent_status_says_none_runs_and_how_to_start_one()
    {
        var stateDir = temp.Sub("state");
        Directory.CreateDirectory(stateDir);

        var (exitCode, output, error) = await CliRunner.RunAsync("status", "--state-dir", stateDir);

        Assert.Equal(CliApplication.RuntimeFailure, exitCode);
        Assert.Empty(output);
        Assert.StartsWith(
            $"error: no peer agent is running with state dir {stateDir} (no socket at {Path.Combine(stateDir, StatusSocket.FileName)}): start `mydvpn peer … --state-dir {stateDir}`",
            error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_socket_file_nothing_listens_on_means_no_agent()
    {
        var stateDir = temp.Sub("state");
        Directory.CreateDirectory(stateDir);
        var socketPath = StatusSocket.PathIn(stateDir);
        // As an agent that was killed leaves it: the file is there, nothing accepts on it.
        await File.WriteAllTextAsync(socketPath, "");

        var (exitCode, _, error) = await CliRunner.RunAsync("status", "--state-dir", stateDir);

        Assert.Equal(CliApplication.RuntimeFailure, exitCode);
        Assert.Contains($"no peer agent is running with state dir {stateDir} (nothing listens on {socketPath})", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task With_a_running_agent_status_json_prints_its_document_and_the_summary_reads_it()
    {
        var stateDir = temp.Sub("state");
        await using var agent = await StartAgentAsync(stateDir);

        var (exitCode, output, error) = await CliRunner.RunAsync("status", "--state-dir", stateDir, "--json");

        Assert.True(exitCode == CliApplication.Success, error);
        using var document = JsonDocument.Parse(output);
        var root = document.RootElement;
        Assert.Equal("peer-1", root.GetProperty("peerId").GetString());
        Assert.Equal("client", root.GetProperty("role").GetString());
        Assert.Equal(agent.WireGuardKey.PublicKeyBase64, root.GetProperty("wireguardPublicKey").GetString());
        Assert.Equal("connecting", root.GetProperty("stream").GetProperty("state").GetString());
        Assert.Equal(JsonValueKind.Null, root.GetProperty("exit").ValueKind);
        Assert.Equal("none", root.GetProperty("path").GetString());
        Assert.Equal("us-east", root.GetProperty("exitRequest").GetProperty("region").GetString());
        Assert.Equal(JsonValueKind.Null, root.GetProperty("lastRotation").ValueKind);

        (exitCode, output, error) = await CliRunner.RunAsync("status", "--state-dir", stateDir);

        Assert.True(exitCode == CliApplication.Success, error);
        Assert.Contains("peer-1 (client, region eu-west)", output, StringComparison.Ordinal);
        Assert.Contains(agent.WireGuardKey.PublicKeyBase64, output, StringComparison.Ordinal);
        Assert.Contains("last handshake", output, StringComparison.Ordinal);
        Assert.Contains("n/a (no data plane yet)", output, StringComparison.Ordinal);
        Assert.Contains("(region us-east)", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Status_shows_the_last_rotation_when_why_from_which_exit_and_the_address_change()
    {
        var stateDir = temp.Sub("state");
        Directory.CreateDirectory(stateDir);
        var at = new DateTimeOffset(2030, 1, 2, 3, 4, 5, TimeSpan.Zero);
        using (var store = TunnelStateStore.Open(stateDir))
        {
            await store.UpdateAsync(s => s with
            {
                Exit = new ClientExit("a-2", "exit-2", "us-east", Convert.ToBase64String(new byte[32]), "198.51.100.8:51820", ["0.0.0.0/0"], 25,
                    ["100.96.1.2/32"], at),
                LastRotation = new ExitRotation(at, "exit exit-1 lost: its stream ended",
                    new RotationEnd("a-1", "exit-1", "us-east", ["100.96.0.2/32"]), new RotationEnd("a-2", "exit-2", "us-east", ["100.96.1.2/32"])),
            });
        }
        await using var agent = await StartAgentAsync(stateDir);

        var (exitCode, output, error) = await CliRunner.RunAsync("status", "--state-dir", stateDir, "--json");

        Assert.True(exitCode == CliApplication.Success, error);
        using var document = JsonDocument.Parse(output);
        var rotation = document.RootElement.GetProperty("lastRotation");
        Assert.Equal(at, rotation.GetProperty("at").GetDateTimeOffset());
        Assert.Equal("exit exit-1 lost: its stream ended", rotation.GetProperty("reason").GetString());
        Assert.Equal("exit-1", rotation.GetProperty("from").GetProperty("peerId").GetString());
        Assert.Equal("a-1", rotation.GetProperty("from").GetProperty("assignmentId").GetString());
        Assert.Equal(["100.96.0.2/32"], rotation.GetProperty("from").GetProperty("tunnelAddresses").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal("exit-2", rotation.GetProperty("to").GetProperty("peerId").GetString());
        Assert.Equal(["100.96.1.2/32"], document.RootElement.GetProperty("tunnelAddresses").EnumerateArray().Select(e => e.GetString()));

        (exitCode, output, error) = await CliRunner.RunAsync("status", "--state-dir", stateDir);

        Assert.True(exitCode == CliApplication.Success, error);
        Assert.Contains("last rotation", output, StringComparison.Ordinal);
        Assert.Contains("2030-01-02 03:04:05Z from exit exit-1 (region us-east, assignment a-1) to exit-2 (assignment a-2): exit exit-1 lost: its stream ended",
            output, StringComparison.Ordinal);
        Assert.Contains("address change", output, StringComparison.Ordinal);
        Assert.Contains("100.96.0.2/32 with exit exit-1, 100.96.1.2/32 with exit exit-2", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_answer_that_is_no_status_document_is_a_runtime_failure()
    {
        var stateDir = temp.Sub("state");
        Directory.CreateDirectory(stateDir);
        using var impostor = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        impostor.Bind(new UnixDomainSocketEndPoint(StatusSocket.PathIn(stateDir)));
        impostor.Listen(1);
        var answering = AnswerOnceAsync(impostor, "hello, not json\n");

        var (exitCode, output, error) = await CliRunner.RunAsync("status", "--state-dir", stateDir, "--json");

        await answering;
        Assert.Equal(CliApplication.RuntimeFailure, exitCode);
        Assert.Empty(output);
        Assert.Contains("not a status document", error, StringComparison.Ordinal);
    }

    private static async Task AnswerOnceAsync(Socket listener, string text)
    {
        using var client = await listener.AcceptAsync();
        await client.SendAsync(Encoding.UTF8.GetBytes(text));
        client.Shutdown(SocketShutdown.Send);
    }

    /// <summary>An agent whose SuperNode never answers: it keeps connecting, and its status socket serves meanwhile.</summary>
    private async Task<PeerAgent> StartAgentAsync(string stateDir)
    {
        var pki = new Pki(temp);
        var keyFile = temp.Sub("peer.key");
        IdentityKey.Generate().Save(keyFile);
        var settings = new PeerOptions
        {
            // In-process agents share this host: never let them drive a WireGuard interface here.
            DataPlane = "none",
            Role = "client",
            Id = "peer-1",
            Region = "eu-west",
            Key = keyFile,
            Ca = pki.CaFile,
            Supernode = ["127.0.0.1:1"],
            ExitRegion = "us-east",
            StateDir = stateDir,
        }.Validate();
        var agent = PeerHost.Build(settings, logging: logging => logging.ClearProviders());
        await agent.StartAsync();
        return agent;
    }
}
