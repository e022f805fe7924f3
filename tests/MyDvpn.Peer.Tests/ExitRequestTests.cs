using System.Text.Json;
using Grpc.Core;
using MyDvpn.Common;
using MyDvpn.Peer.Commands;
using MyDvpn.Peer.LocalStatus;
using MyDvpn.Peer.Tunnel;
using MyDvpn.Protocol.Control;
using MyDvpn.Security;
using Xunit.Abstractions;
using PayloadCase = MyDvpn.Protocol.Control.ControlMessage.PayloadOneofCase;

namespace MyDvpn.Peer.Tests;

/// <summary>
/// The whole agent asking for an exit, and serving as one, against a real gRPC test SuperNode (Kestrel on loopback,
/// TLS): the SuperNode's side of the contract is played by the test through <see cref="TestStream"/>. The status
/// socket is read as <c>mydvpn status</c> reads it.
/// </summary>
public sealed class ExitRequestTests(ITestOutputHelper output) : AgentTestKit(nameof(ExitRequestTests), output)
{
    private const string ExitRegion = "us-east";

    /// <summary><see cref="AgentTestKit.Fast"/>, with exit requests retried and asked again fast too.</summary>
    private static readonly PeerTimings FastExits = Fast with
    {
        ExitRetryBase = TimeSpan.FromMilliseconds(50),
        ExitRetryCap = TimeSpan.FromMilliseconds(200),
        ExitReaskDelay = TimeSpan.FromMilliseconds(50),
    };

    [Fact]
    public async Task Client_asks_for_an_exit_after_authenticating_with_its_wireguard_key()
    {
        var (superNode, settings) = await StartAsync("client");
        var agent = await StartAgentAsync(settings);

        var stream = await superNode.NextStreamAsync(Patience);
        var request = (await stream.ReceiveAsync(PayloadCase.ExitRequest, Patience)).ExitRequest;

        Assert.Equal(ExitRegion, request.Region);
        Assert.Equal(agent.WireGuardKey.PublicKey, request.WireguardPublicKey.ToByteArray());
        Assert.Equal(agent.WireGuardKey.PublicKey, WireGuardKey.Load(Path.Combine(settings.StateDir, PeerHost.WireGuardKeyFileName)).PublicKey);
        Assert.Null(stream.Auth.ExitOffer);
        await AwaitAssertAsync(() => Assert.Equal(ExitRequestState.Requested, agent.Status.Current.ExitRequest.State), Patience);
        Assert.Equal(ExitRegion, agent.Status.Current.ExitRequest.Region);
    }

    [Fact]
    public async Task Client_keeps_its_wireguard_key_across_restarts()
    {
        var (superNode, settings) = await StartAsync("client");
        byte[] first;
        await using (var agent = BuildAgent(settings))
        {
            await agent.StartAsync();
            first = (await (await superNode.NextStreamAsync(Patience)).ReceiveAsync(PayloadCase.ExitRequest, Patience)).ExitRequest.WireguardPublicKey.ToByteArray();
        }

        var restarted = await StartAgentAsync(settings);
        var again = (await (await superNode.NextStreamAsync(Patience)).ReceiveAsync(PayloadCase.ExitRequest, Patience)).ExitRequest;

        Assert.Equal(first, again.WireguardPublicKey.ToByteArray());
        Assert.Equal(first, restarted.WireGuardKey.PublicKey);
    }

    [Fact]
    public async Task Damaged_wireguard_key_file_is_refused_saying_to_delete_it()
    {
        var (_, settings) = await StartAsync("client");
        await File.WriteAllTextAsync(Path.Combine(settings.StateDir, PeerHost.WireGuardKeyFileName), "garbage");

        var problem = Assert.Throws<ConfigurationException>(() => PeerHost.Build(settings, logging: TestOutputLoggerProvider.For(Output)));

        Assert.Equal("--state-dir", problem.Setting);
        Assert.Contains("delete it to make a new key", problem.Message, StringComparison.Ordinal);
        // The state directory is free again for an agent once the file is fixed.
        File.Delete(Path.Combine(settings.StateDir, PeerHost.WireGuardKeyFileName));
        await using var agent = PeerHost.Build(settings, logging: TestOutputLoggerProvider.For(Output));
    }

    [Fact]
    public async Task Client_asks_again_after_resource_exhausted_and_a_setup_exit_clears_the_error()
    {
        var (superNode, settings) = await StartAsync("client");
        var agent = await StartAgentAsync(settings);
        var stream = await superNode.NextStreamAsync(Patience);
        await stream.ReceiveAsync(PayloadCase.ExitRequest, Patience);

        stream.SendExitRequestFailed(ExitRegion, StatusCode.ResourceExhausted, RefusalReason.NoExitAvailable, "every exit is full");
        var second = (await PumpAsync(stream.ReceiveAsync(PayloadCase.ExitRequest, Patience))).ExitRequest;

        Assert.Equal(ExitRegion, second.Region);
        var failed = agent.Status.Current.ExitRequest;
        Assert.Equal(ExitRequestState.Requested, failed.State);
        Assert.Equal(("RESOURCE_EXHAUSTED", "NO_EXIT_AVAILABLE", "every exit is full"), (failed.LastError?.GrpcStatus, failed.LastError?.Reason, failed.LastError?.Detail));

        var answer = await AssignExitAsync(stream, "setup-1", "assign-1");

        Assert.Equal(CommandResult.BodyOneofCase.Done, answer.Result.BodyCase);
        await AwaitAssertAsync(() =>
        {
            var status = agent.Status.Current.ExitRequest;
            Assert.Equal(ExitRequestState.Idle, status.State);
            Assert.Null(status.LastError);
            Assert.Null(status.NextAttemptAt);
        }, Patience);
        Assert.Equal("assign-1", agent.Tunnel.Current.Exit?.AssignmentId);
    }

    [Fact]
    public async Task Client_stops_asking_after_a_refusal_no_retry_can_fix()
    {
        var (superNode, settings) = await StartAsync("client");
        var agent = await StartAgentAsync(settings);
        var stream = await superNode.NextStreamAsync(Patience);
        await stream.ReceiveAsync(PayloadCase.ExitRequest, Patience);

        stream.SendExitRequestFailed(ExitRegion, StatusCode.PermissionDenied, RefusalReason.NotAnExitClient, "not a client");

        await AwaitAssertAsync(() => Assert.Equal(ExitRequestState.Stopped, agent.Status.Current.ExitRequest.State), Patience);
        // Not after a reconnect either: the first thing the new stream hears is the answer to a ping.
        stream.Close();
        var next = await PumpAsync(superNode.NextStreamAsync(Patience));
        await AssertSaysNothingBeforePongAsync(next);
        Assert.Single(superNode.ExitRequests);

        using var document = await ReadStatusAsync(settings);
        var exitRequest = document.RootElement.GetProperty("exitRequest");
        Assert.Equal("stopped", exitRequest.GetProperty("state").GetString());
        Assert.Equal("PERMISSION_DENIED", exitRequest.GetProperty("lastError").GetProperty("grpcStatus").GetString());
        Assert.Equal("NOT_AN_EXIT_CLIENT", exitRequest.GetProperty("lastError").GetProperty("reason").GetString());
        Assert.Equal("not a client", exitRequest.GetProperty("lastError").GetProperty("detail").GetString());
        Assert.Equal(JsonValueKind.Null, exitRequest.GetProperty("nextAttemptAt").ValueKind);
    }

    [Fact]
    public async Task Client_that_holds_an_exit_asks_for_none()
    {
        var (superNode, settings) = await StartAsync("client");
        superNode.ExitAssignmentId = "assign-0";
        await HoldExitAsync(settings, "assign-0");
        var agent = await StartAgentAsync(settings);

        var stream = await superNode.NextStreamAsync(Patience);

        await AssertSaysNothingBeforePongAsync(stream);
        Assert.Empty(superNode.ExitRequests);
        Assert.Equal(ExitRequestState.Idle, agent.Status.Current.ExitRequest.State);
        Assert.Equal("assign-0", agent.Tunnel.Current.Exit?.AssignmentId);
    }

    [Fact]
    public async Task Client_drops_an_exit_its_session_no_longer_holds_and_asks_again()
    {
        var (superNode, settings) = await StartAsync("client");
        await HoldExitAsync(settings, "assign-0");
        var agent = await StartAgentAsync(settings);

        var stream = await superNode.NextStreamAsync(Patience);

        await stream.ReceiveAsync(PayloadCase.ExitRequest, Patience);
        Assert.Null(agent.Tunnel.Current.Exit);
        using var reopened = TunnelStateStore.Open(settings.StateDir);
        Assert.Null(reopened.Current.Exit);
    }

    private static async Task HoldExitAsync(PeerSettings settings, string assignmentId)
    {
        using var store = TunnelStateStore.Open(settings.StateDir);
        await store.UpdateAsync(s => s with
        {
            Exit = new ClientExit(assignmentId, "exit-9", ExitRegion, Convert.ToBase64String(new byte[32]), "198.51.100.9:51820",
                ["0.0.0.0/0"], 25, ["100.96.0.2/32"], DateTimeOffset.UtcNow),
        });
    }

    [Fact]
    public async Task Client_whose_exit_went_away_asks_for_another()
    {
        var (superNode, settings) = await StartAsync("client");
        var agent = await StartAgentAsync(settings);
        var stream = await superNode.NextStreamAsync(Patience);
        await stream.ReceiveAsync(PayloadCase.ExitRequest, Patience);
        await AssignExitAsync(stream, "setup-1", "assign-1");

        stream.SendCommand(new Command
        {
            CommandId = "remove-1",
            RemoveExit = new RemoveExit { AssignmentId = "assign-1", Side = ExitSide.Client, Reason = "the exit went offline" },
        });

        Assert.Equal(CommandResult.BodyOneofCase.Done, (await stream.ReceiveAsync(PayloadCase.CommandResponse, Patience)).CommandResponse.Result.BodyCase);
        await PumpAsync(stream.ReceiveAsync(PayloadCase.ExitRequest, Patience));
        Assert.Null(agent.Tunnel.Current.Exit);
        Assert.Equal(2, superNode.ExitRequests.Count);
    }

    [Fact]
    public async Task Disconnect_drops_the_exit_and_stops_the_requests_until_the_agent_restarts()
    {
        var (superNode, settings) = await StartAsync("client");
        var agent = await StartAgentAsync(settings);
        var stream = await superNode.NextStreamAsync(Patience);
        await stream.ReceiveAsync(PayloadCase.ExitRequest, Patience);
        await AssignExitAsync(stream, "setup-1", "assign-1");

        stream.SendCommand(new Command { CommandId = "disconnect-1", Disconnect = new Disconnect { Reason = "operator" } });

        Assert.Equal(CommandResult.BodyOneofCase.Done, (await stream.ReceiveAsync(PayloadCase.CommandResponse, Patience)).CommandResponse.Result.BodyCase);
        await AwaitAssertAsync(() => Assert.Equal(ExitRequestState.Stopped, agent.Status.Current.ExitRequest.State), Patience);
        Assert.Null(agent.Tunnel.Current.Exit);
        stream.Close();
        await AssertSaysNothingBeforePongAsync(await PumpAsync(superNode.NextStreamAsync(Patience)));
        Assert.Single(superNode.ExitRequests);

        await agent.DisposeAsync();
        await StartAgentAsync(settings);
        await (await superNode.NextStreamAsync(Patience)).ReceiveAsync(PayloadCase.ExitRequest, Patience);
    }

    [Fact]
    public async Task RotatePeer_moves_the_client_to_another_exit_and_the_status_says_when_why_and_from_which()
    {
        var (superNode, settings) = await StartAsync("client");
        var agent = await StartAgentAsync(settings);
        var stream = await superNode.NextStreamAsync(Patience);
        await stream.ReceiveAsync(PayloadCase.ExitRequest, Patience);
        await AssignExitAsync(stream, "setup-1", "assign-1");
        var oldKey = Convert.FromBase64String(agent.Tunnel.Current.Exit!.PublicKey);

        stream.SendCommand(TunnelCommandHandlerTests.Rotate("rotate-1", "assign-2", oldKey));

        Assert.Equal(CommandResult.BodyOneofCase.Done, (await stream.ReceiveAsync(PayloadCase.CommandResponse, Patience)).CommandResponse.Result.BodyCase);
        Assert.Equal("assign-2", agent.Tunnel.Current.Exit?.AssignmentId);
        using var document = await ReadStatusAsync(settings);
        var root = document.RootElement;
        Assert.Equal("exit-2", root.GetProperty("exit").GetProperty("peerId").GetString());
        Assert.Equal(["100.96.1.2/32"], root.GetProperty("tunnelAddresses").EnumerateArray().Select(e => e.GetString()));
        var rotation = root.GetProperty("lastRotation");
        Assert.Equal("exit exit-1 lost: its stream ended", rotation.GetProperty("reason").GetString());
        Assert.Equal("assign-1", rotation.GetProperty("from").GetProperty("assignmentId").GetString());
        Assert.Equal("exit-1", rotation.GetProperty("from").GetProperty("peerId").GetString());
        Assert.Equal(["100.96.0.2/32"], rotation.GetProperty("from").GetProperty("tunnelAddresses").EnumerateArray().Select(e => e.GetString()));
        Assert.True(rotation.GetProperty("at").TryGetDateTimeOffset(out _));
        Assert.Equal("idle", root.GetProperty("exitRequest").GetProperty("state").GetString());
        Assert.Single(superNode.ExitRequests);
    }

    [Fact]
    public async Task Clean_stop_gives_the_exit_back_before_the_stream_closes()
    {
        var (superNode, settings) = await StartAsync("client");
        var agent = await StartAgentAsync(settings);
        var stream = await superNode.NextStreamAsync(Patience);
        await stream.ReceiveAsync(PayloadCase.ExitRequest, Patience);
        await AssignExitAsync(stream, "setup-1", "assign-1");

        await agent.DisposeAsync();

        var release = (await stream.ReceiveAsync(PayloadCase.ExitRelease, Patience)).ExitRelease;
        Assert.Equal("assign-1", release.AssignmentId);
        using var store = TunnelStateStore.Open(settings.StateDir);
        Assert.Null(store.Current.Exit);
    }

    [Fact]
    public async Task Exit_offers_its_capacity_and_answers_setup_exit_with_its_wireguard_key()
    {
        var (superNode, settings) = await StartAsync("exit", exitRegion: null, maxClients: 7, publicEndpoint: "203.0.113.5:51000", wgPort: 51000);
        var agent = await StartAgentAsync(settings);
        var stream = await superNode.NextStreamAsync(Patience);

        Assert.Equal(7u, stream.Auth.ExitOffer?.MaxClients);
        await AssertSaysNothingBeforePongAsync(stream);
        stream.SendCommand(TunnelCommandHandlerTests.ServeClient("serve-1", "assign-7", WireGuardKey.Generate().PublicKey));
        var answer = (await stream.ReceiveAsync(PayloadCase.CommandResponse, Patience)).CommandResponse;

        Assert.Equal(agent.WireGuardKey.PublicKey, answer.Result.SetupExit.PublicKey.ToByteArray());
        Assert.Equal("203.0.113.5:51000", answer.Result.SetupExit.Endpoint);
        Assert.Equal(51000u, answer.Result.SetupExit.ListenPort);
        Assert.Empty(superNode.ExitRequests);
        using var document = await ReadStatusAsync(settings);
        var root = document.RootElement;
        Assert.Equal("exit", root.GetProperty("role").GetString());
        var client = Assert.Single(root.GetProperty("clients").EnumerateArray());
        Assert.Equal("assign-7", client.GetProperty("assignmentId").GetString());
        Assert.Equal("client-1", client.GetProperty("peerId").GetString());
        Assert.Equal("100.96.0.2/32", Assert.Single(client.GetProperty("allowedIps").EnumerateArray()).GetString());
        Assert.Equal(["100.96.0.1/24"], root.GetProperty("tunnelAddresses").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(JsonValueKind.Null, root.GetProperty("exit").ValueKind);
        Assert.Equal("none", root.GetProperty("path").GetString());
        Assert.Equal(JsonValueKind.Null, root.GetProperty("exitRequest").GetProperty("region").ValueKind);
    }

    [Fact]
    public async Task State_directory_and_everything_the_agent_keeps_in_it_are_its_owners_alone()
    {
        if (OperatingSystem.IsWindows())
            return; // Unix file modes only.
        var (superNode, settings) = await StartAsync("client");
        await using var agent = await StartAgentAsync(settings);
        var stream = await superNode.NextStreamAsync(Patience);
        await stream.ReceiveAsync(PayloadCase.ExitRequest, Patience);
        await AssignExitAsync(stream, "setup-1", "assign-1");
        using var _ = await ReadStatusAsync(settings);

        var entries = Directory.GetFileSystemEntries(settings.StateDir).Select(Path.GetFileName).ToHashSet();
        Assert.Superset(new HashSet<string?>
        {
            StatusSocket.FileName, TunnelStateStore.FileName, CommandLog.FileName, AppliedCommandStore.FileName, PeerHost.WireGuardKeyFileName,
        }, entries);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(settings.StateDir));
        foreach (var entry in Directory.GetFileSystemEntries(settings.StateDir))
            Assert.True(File.GetUnixFileMode(entry) == (UnixFileMode.UserRead | UnixFileMode.UserWrite), $"{entry} is {File.GetUnixFileMode(entry)}");
    }

    [Fact]
    public async Task Status_socket_answers_one_document_with_the_stream_and_the_exit_and_goes_away_with_the_agent()
    {
        var (superNode, settings) = await StartAsync("client");
        var socketPath = StatusSocket.PathIn(settings.StateDir);
        // Left by an agent that died: replaced.
        await File.WriteAllTextAsync(socketPath, "");
        var agent = await StartAgentAsync(settings);
        var stream = await superNode.NextStreamAsync(Patience);
        await stream.ReceiveAsync(PayloadCase.ExitRequest, Patience);
        await AssignExitAsync(stream, "setup-1", "assign-1");

        using var document = await ReadStatusAsync(settings);

        var root = document.RootElement;
        Assert.Equal(PeerId, root.GetProperty("peerId").GetString());
        Assert.Equal("client", root.GetProperty("role").GetString());
        Assert.Equal(Region, root.GetProperty("region").GetString());
        Assert.Equal(agent.WireGuardKey.PublicKeyBase64, root.GetProperty("wireguardPublicKey").GetString());
        var streamStatus = root.GetProperty("stream");
        Assert.Equal("connected", streamStatus.GetProperty("state").GetString());
        Assert.Equal("super-1", streamStatus.GetProperty("superNodeId").GetString());
        Assert.Equal(stream.SessionId, streamStatus.GetProperty("sessionId").GetString());
        Assert.Equal(superNode.Id, streamStatus.GetProperty("superNodeId").GetString());
        Assert.Equal(1, streamStatus.GetProperty("authentications").GetInt32());
        Assert.True(streamStatus.GetProperty("attempts").GetInt32() >= 1);
        Assert.True(streamStatus.TryGetProperty("endpoint", out _));
        Assert.True(streamStatus.TryGetProperty("lastProblem", out _));
        var exit = root.GetProperty("exit");
        Assert.Equal("assign-1", exit.GetProperty("assignmentId").GetString());
        Assert.Equal("exit-1", exit.GetProperty("peerId").GetString());
        Assert.Equal("eu-west", exit.GetProperty("region").GetString());
        Assert.Equal("198.51.100.7:51820", exit.GetProperty("endpoint").GetString());
        Assert.Equal(32, Convert.FromBase64String(exit.GetProperty("publicKey").GetString()!).Length);
        Assert.Equal("0.0.0.0/0", Assert.Single(exit.GetProperty("allowedIps").EnumerateArray()).GetString());
        Assert.True(exit.GetProperty("since").TryGetDateTimeOffset(out _));
        Assert.Equal(["100.96.0.2/32"], root.GetProperty("tunnelAddresses").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal("direct", root.GetProperty("path").GetString());
        Assert.Equal(JsonValueKind.Null, root.GetProperty("lastHandshake").ValueKind);
        Assert.Equal(JsonValueKind.Null, root.GetProperty("rxBytes").ValueKind);
        Assert.Equal(JsonValueKind.Null, root.GetProperty("txBytes").ValueKind);
        var exitRequest = root.GetProperty("exitRequest");
        Assert.Equal(ExitRegion, exitRequest.GetProperty("region").GetString());
        Assert.Equal("idle", exitRequest.GetProperty("state").GetString());
        Assert.Equal(JsonValueKind.Null, exitRequest.GetProperty("lastError").ValueKind);
        Assert.Empty(root.GetProperty("clients").EnumerateArray());
        if (!OperatingSystem.IsWindows())
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(socketPath));

        await agent.DisposeAsync();

        Assert.False(File.Exists(socketPath));
    }

    private static async Task<CommandResponse> AssignExitAsync(TestStream stream, string commandId, string assignmentId)
    {
        stream.SendCommand(TunnelCommandHandlerTests.UseExit(commandId, assignmentId, "198.51.100.7:51820"));
        var response = (await stream.ReceiveAsync(PayloadCase.CommandResponse, Patience)).CommandResponse;
        Assert.Equal(commandId, response.CommandId);
        return response;
    }

    /// <summary>
    /// Pings the peer and checks the pong is the first thing it sends: an ExitRequest the peer sent on authenticating
    /// would be queued before it.
    /// </summary>
    private static async Task AssertSaysNothingBeforePongAsync(TestStream stream)
    {
        stream.Send(new ControlMessage { Ping = new Ping { Sequence = 77 } });
        var first = await stream.ReceiveAsync(Patience);
        Assert.Equal(PayloadCase.Pong, first.PayloadCase);
        Assert.Equal(77ul, first.Pong.Sequence);
    }

    private static async Task<JsonDocument> ReadStatusAsync(PeerSettings settings)
    {
        var bytes = await StatusSocket.ReadAsync(StatusSocket.PathIn(settings.StateDir), Patience, CancellationToken.None);
        return JsonDocument.Parse(bytes);
    }

    private async Task<(TestSuperNode SuperNode, PeerSettings Settings)> StartAsync(string role, string? exitRegion = ExitRegion,
        int? maxClients = null, string? publicEndpoint = null, int? wgPort = null)
    {
        var superNode = new TestSuperNode("super-1");
        superNode.Enroll(PeerId, Key.PublicKey);
        var server = await StartServerAsync(superNode);
        var settings = new PeerOptions
        {
            // In-process agents share this host: never let them drive a WireGuard interface here.
            DataPlane = "none",
            Role = role,
            Id = PeerId,
            Region = Region,
            Key = KeyFile,
            Ca = Pki.CaFile,
            Supernode = [server.Address.ToString()],
            ExitRegion = exitRegion,
            MaxClients = maxClients,
            PublicEndpoint = publicEndpoint,
            WgPort = wgPort,
            StateDir = Temp.Sub("state"),
        }.Validate() with
        { Timings = FastExits };
        return (superNode, settings);
    }
}
