using System.Text.Json;
using Google.Protobuf;
using MyDvpn.Protocol.Control;
using MyDvpn.Security;
using Xunit.Abstractions;

namespace MyDvpn.IntegrationTests;

/// <summary>
/// Cross-region exit allocation with real processes on loopback: a BaseNode, SuperNode A (region a), SuperNode B
/// (region b), exits in b and clients in a — real agents where the behaviour is the product's, raw peers where a
/// peer must misbehave (an exit that never acks, a client that fails its SetupExit).
/// </summary>
public sealed class ExitAllocationTests(ITestOutputHelper output)
{
    private const string ClientRegion = "a", ExitRegion = "b";

    [Fact]
    public async Task Exits_are_allocated_across_regions_until_full_and_a_disconnect_frees_a_place()
    {
        await using var network = new TestNetwork(output);
        var (baseNode, superA, superB) = await StartRegionsAsync(network);

        await StartAgentAsync(network, baseNode, superB, "exit-1", "exit", ExitRegion, "--max-clients", "1");
        await StartAgentAsync(network, baseNode, superB, "exit-2", "exit", ExitRegion, "--max-clients", "1");
        await Eventually.Async(async () => (await ExitsAsync(network, baseNode)).Count(e => e.GetProperty("online").GetBoolean()) == 2,
            "both exits are online in region b's pool", TimeSpan.FromSeconds(60));

        var client1 = await StartAgentAsync(network, baseNode, superA, "client-1", "client", ClientRegion, "--exit-region", ExitRegion);
        var client2 = await StartAgentAsync(network, baseNode, superA, "client-2", "client", ClientRegion, "--exit-region", ExitRegion);
        var exitOf1 = await ExitOfAsync(network, client1);
        var exitOf2 = await ExitOfAsync(network, client2);
        Assert.NotEqual(exitOf1.PeerId, exitOf2.PeerId);
        Assert.Equal(["exit-1", "exit-2"], new[] { exitOf1.PeerId, exitOf2.PeerId }.Order());
        Assert.NotEqual(exitOf1.Address, exitOf2.Address);

        // Both sides hold the same assignment: the client's session, the exit's session and the exit pool.
        var sessions = await SessionsAsync(network, baseNode);
        var clientSide = Assignment(sessions, "client-1");
        Assert.Equal(exitOf1.PeerId, clientSide.GetProperty("exitPeerId").GetString());
        Assert.Equal(exitOf1.Address, clientSide.GetProperty("clientAddress").GetString());
        Assert.Equal("active", clientSide.GetProperty("state").GetString());
        var exitSide = Assignment(sessions, exitOf1.PeerId);
        Assert.Equal("client-1", exitSide.GetProperty("clientPeerId").GetString());
        Assert.Equal(clientSide.GetProperty("assignmentId").GetString(), exitSide.GetProperty("assignmentId").GetString());
        Assert.Equal(exitOf1.Address, exitSide.GetProperty("clientAddress").GetString());
        var exitStatus = await StatusAsync(network, StateDir(network, exitOf1.PeerId));
        Assert.Equal("client-1", Assert.Single(exitStatus.GetProperty("clients").EnumerateArray()).GetProperty("peerId").GetString());

        // The third client finds every exit full and is told so.
        var client3 = await StartAgentAsync(network, baseNode, superA, "client-3", "client", ClientRegion, "--exit-region", ExitRegion);
        await Eventually.Async(async () =>
        {
            var status = await StatusAsync(network, client3);
            return status.GetProperty("exitRequest").GetProperty("lastError") is { ValueKind: JsonValueKind.Object } error
                   && error.GetProperty("grpcStatus").GetString() == "RESOURCE_EXHAUSTED"
                   && error.GetProperty("reason").GetString() == "NO_EXIT_AVAILABLE";
        }, "client-3 is refused with RESOURCE_EXHAUSTED / NO_EXIT_AVAILABLE", TimeSpan.FromSeconds(60));
        Assert.Equal(JsonValueKind.Null, (await StatusAsync(network, client3)).GetProperty("exit").ValueKind);

        // An operator disconnects client-1: both halves go, and client-3 gets the freed place.
        var (disconnected, text) = await network.RunAsync("admin", "--base", baseNode.Listen.ToString(), "--tls", network.AdminTls,
            "disconnect", "client-1", "--region", ClientRegion);
        Assert.True(disconnected == 0, text);
        var exitOf3 = await ExitOfAsync(network, client3, TimeSpan.FromSeconds(90));
        Assert.Equal(exitOf1.PeerId, exitOf3.PeerId);
        Assert.Equal(JsonValueKind.Null, (await StatusAsync(network, client1)).GetProperty("exit").ValueKind);
        await Eventually.Async(async () =>
        {
            var now = await SessionsAsync(network, baseNode);
            return Assignments(now, "client-1").Count == 0
                   && Assignments(now, exitOf1.PeerId).Select(a => a.GetProperty("clientPeerId").GetString()).SequenceEqual(["client-3"]);
        }, "client-1 holds nothing and its exit serves client-3 only");
        var pool = await ExitPoolAsync(network, baseNode);
        Assert.Equal(["client-2", "client-3"], pool.GetProperty("assignments").EnumerateArray()
            .Select(a => a.GetProperty("clientPeerId").GetString()).Order());
    }

    [Fact]
    public async Task An_exit_claiming_an_endpoint_elsewhere_gets_its_streams_address_and_one_warning()
    {
        await using var network = new TestNetwork(output);
        var (baseNode, superA, superB) = await StartRegionsAsync(network);
        // Not on loopback, where its stream comes from, and not in the network the operator vouches for.
        await StartAgentAsync(network, baseNode, superB, "exit-1", "exit", ExitRegion, "--public-endpoint", "203.0.113.50:53", "--wg-port", "51999");
        await Eventually.Async(async () => (await ExitsAsync(network, baseNode)).Any(e => e.GetProperty("online").GetBoolean()),
            "the exit is online", TimeSpan.FromSeconds(60));

        await using var client = await RawClient.ConnectAsync(network, baseNode, superA, "client-1");
        var setup = await client.RequestExitAsync();

        Assert.Equal("127.0.0.1:51999", setup.SetupExit.Peer.Endpoint);
        var warnings = superB.Process!.ReadLog().Split('\n')
            .Where(line => line.Contains("Security event: exit exit-1 claimed endpoint 203.0.113.50:53, not taken", StringComparison.Ordinal))
            .ToList();
        Assert.Single(warnings);
        Assert.Contains("its clients reach it at 127.0.0.1:51999", warnings[0], StringComparison.Ordinal);
        using var http = new HttpClient();
        var metrics = await http.GetStringAsync($"http://{superB.Metrics}/metrics");
        Assert.Contains($"mydvpn_exit_endpoints_refused_total{{region=\"{ExitRegion}\"}} 1", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_region_seen_before_is_still_reachable_while_the_BaseNode_is_down()
    {
        await using var network = new TestNetwork(output);
        var (baseNode, superA, superB) = await StartRegionsAsync(network);
        await StartAgentAsync(network, baseNode, superB, "exit-1", "exit", ExitRegion, "--max-clients", "5");
        await Eventually.Async(async () => (await ExitsAsync(network, baseNode)).Any(e => e.GetProperty("online").GetBoolean()),
            "the exit is online", TimeSpan.FromSeconds(60));
        var client1 = await StartAgentAsync(network, baseNode, superA, "client-1", "client", ClientRegion, "--exit-region", ExitRegion);
        await ExitOfAsync(network, client1);

        // client-2 enrolls while the directory is up (enrollment needs it), without asking for an exit yet.
        var client2 = await StartAgentAsync(network, baseNode, superA, "client-2", "client", ClientRegion);
        await Eventually.Async(async () => (await StatusAsync(network, client2)).GetProperty("stream").GetProperty("state").GetString() == "connected",
            "client-2 is connected");
        client2.Process!.Kill();

        baseNode.Process!.Kill();
        var arguments = client2.Arguments.ToList();
        arguments.RemoveRange(arguments.IndexOf("--token"), 2);
        await network.StartAsync(WithArguments(client2, [.. arguments, "--exit-region", ExitRegion]), waitUntilReady: false);
        var exitOf2 = await ExitOfAsync(network, client2, TimeSpan.FromSeconds(60));
        Assert.Equal("exit-1", exitOf2.PeerId);
        Assert.True(baseNode.Process.HasExited, "the BaseNode stayed down throughout");
    }

    [Fact]
    public async Task An_exit_that_never_acks_is_rolled_back_and_the_next_exit_serves_the_client()
    {
        await using var network = new TestNetwork(output);
        // The pool's ack timeout stays the product's (5 s): it is also the time the good exit, a real agent, has to
        // answer, and under load its first SetupExit took 0.85 s just to reach it (1 s here failed the good exit).
        var (baseNode, superA, superB) = await StartRegionsAsync(network);
        await StartAgentAsync(network, baseNode, superB, "good-exit", "exit", ExitRegion, "--max-clients", "2");
        await Eventually.Async(async () => (await ExitsAsync(network, baseNode)).Any(e => e.GetProperty("online").GetBoolean()),
            "the good exit is online", TimeSpan.FromSeconds(60));
        await using var first = await RawClient.ConnectAsync(network, baseNode, superA, "client-0");
        Assert.Equal("good-exit", (await first.RequestExitAsync()).SetupExit.CounterpartPeerId);

        // A silent exit joins: emptier than the good one (0/10 against 1/2), so it is picked first — and never answers.
        await using var silent = await RawExit.ConnectAsync(network, baseNode, superB, "silent-exit", capacity: 10);
        await Eventually.Async(async () => (await ExitsAsync(network, baseNode)).Count(e => e.GetProperty("online").GetBoolean()) == 2,
            "the silent exit is online");
        await using var second = await RawClient.ConnectAsync(network, baseNode, superA, "client-1");
        var setup = await second.RequestExitAsync();
        Assert.Equal("good-exit", setup.SetupExit.CounterpartPeerId);

        // The silent exit was asked, then told to remove the same assignment: nothing of it is left anywhere.
        var silentCommands = await silent.CommandsAsync(2);
        Assert.Equal(Command.BodyOneofCase.SetupExit, silentCommands[0].BodyCase);
        Assert.Equal(Command.BodyOneofCase.RemoveExit, silentCommands[1].BodyCase);
        Assert.Equal(silentCommands[0].SetupExit.AssignmentId, silentCommands[1].RemoveExit.AssignmentId);
        Assert.Equal(setup.SetupExit.AssignmentId, silentCommands[0].SetupExit.AssignmentId);
        var pool = await ExitPoolAsync(network, baseNode);
        Assert.All(pool.GetProperty("assignments").EnumerateArray(), a => Assert.Equal("good-exit", a.GetProperty("exitPeerId").GetString()));
        Assert.Equal(2, pool.GetProperty("assignments").GetArrayLength());
        var sessions = await SessionsAsync(network, baseNode);
        Assert.Empty(Assignments(sessions, "silent-exit"));

        // Now the good exit is full: the silent one, though within its failure cooldown, is the last resort and is tried
        // again; it fails, and the client hears why.
        await using var third = await RawClient.ConnectAsync(network, baseNode, superA, "client-2");
        var failed = await third.RequestExitExpectingFailureAsync();
        Assert.Equal((int)Grpc.Core.StatusCode.Unavailable, failed.GrpcStatus);
        Assert.Equal(RefusalReason.ExitSetupFailed, failed.Reason);
        Assert.Contains("silent-exit", failed.Detail, StringComparison.Ordinal);
        await Eventually.Async(async () =>
        {
            var now = await SessionsAsync(network, baseNode);
            return Assignments(now, "client-2").Count == 0 && Assignments(now, "silent-exit").Count == 0
                   && (await ExitPoolAsync(network, baseNode)).GetProperty("assignments").GetArrayLength() == 2;
        }, "no half-made assignment is left for client-2");
    }

    [Fact]
    public async Task A_client_that_fails_its_SetupExit_leaves_nothing_behind_on_either_side()
    {
        await using var network = new TestNetwork(output);
        var (baseNode, superA, superB) = await StartRegionsAsync(network);
        var exit = await StartAgentAsync(network, baseNode, superB, "exit-1", "exit", ExitRegion, "--max-clients", "1");
        await Eventually.Async(async () => (await ExitsAsync(network, baseNode)).Any(e => e.GetProperty("online").GetBoolean()),
            "the exit is online", TimeSpan.FromSeconds(60));

        await using var client = await RawClient.ConnectAsync(network, baseNode, superA, "client-1");
        var setup = await client.RequestExitAsync(answer: command => CommandResponses(command.CommandId, new CommandFailure
        {
            Code = CommandError.Dataplane,
            Reason = "cannot create the interface (test)",
        }));
        var assignmentId = setup.SetupExit.AssignmentId;

        var (failure, commands) = await client.ReadUntilFailureAsync();
        Assert.Equal(RefusalReason.ExitSetupFailed, failure.Reason);
        Assert.Contains("cannot create the interface", failure.Detail, StringComparison.Ordinal);
        await Eventually.Async(async () =>
        {
            commands.AddRange(await client.DrainCommandsAsync(TimeSpan.FromMilliseconds(500)));
            return commands.Any(c => c.RemoveExit?.AssignmentId == assignmentId && c.RemoveExit.Side == ExitSide.Client);
        }, "the client is told to remove its half");

        // The exit applied its half and then removed it; the pool and both sessions hold nothing.
        await Eventually.Async(async () =>
        {
            var status = await StatusAsync(network, exit);
            var sessions = await SessionsAsync(network, baseNode);
            var pool = await ExitPoolAsync(network, baseNode);
            return status.GetProperty("clients").GetArrayLength() == 0
                   && Assignments(sessions, "client-1").Count == 0 && Assignments(sessions, "exit-1").Count == 0
                   && pool.GetProperty("assignments").GetArrayLength() == 0;
        }, "nothing half-done is left");
        Assert.Contains(assignmentId, File.ReadAllText(Path.Combine(StateDir(network, "exit-1"), "commands.jsonl")), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_client_of_an_exit_killed_moves_to_another_exit_and_the_lost_exit_takes_no_clients()
    {
        await using var network = new TestNetwork(output);
        var (baseNode, superA, superB) = await StartRegionsAsync(network);
        var exit1 = await StartAgentAsync(network, baseNode, superB, "exit-1", "exit", ExitRegion, "--max-clients", "5");
        var exit2 = await StartAgentAsync(network, baseNode, superB, "exit-2", "exit", ExitRegion, "--max-clients", "5");
        await Eventually.Async(async () => (await ExitsAsync(network, baseNode)).Count(e => e.GetProperty("online").GetBoolean()) == 2,
            "both exits are online", TimeSpan.FromSeconds(60));
        var client = await StartAgentAsync(network, baseNode, superA, "client-1", "client", ClientRegion, "--exit-region", ExitRegion);
        var first = await ExitOfAsync(network, client);
        var (killed, survivor) = first.PeerId == "exit-1" ? (exit1, "exit-2") : (exit2, "exit-1");

        killed.Process!.Kill();

        // Its stream ended at once; after the pool's grace the exit is lost and its client is moved, make-before-break.
        var moved = default(JsonElement);
        await Eventually.Async(async () =>
        {
            moved = await StatusAsync(network, client);
            return moved.GetProperty("exit") is { ValueKind: JsonValueKind.Object } exit && exit.GetProperty("peerId").GetString() == survivor;
        }, $"client-1 moved to {survivor}", TimeSpan.FromSeconds(60));
        var rotation = moved.GetProperty("lastRotation");
        Assert.Equal(first.PeerId, rotation.GetProperty("from").GetProperty("peerId").GetString());
        Assert.Equal(survivor, rotation.GetProperty("to").GetProperty("peerId").GetString());
        Assert.Contains("lost", rotation.GetProperty("reason").GetString(), StringComparison.Ordinal);
        await Eventually.Async(async () =>
        {
            var pool = await ExitPoolAsync(network, baseNode);
            var assignments = pool.GetProperty("assignments").EnumerateArray().ToList();
            var lost = pool.GetProperty("exits").EnumerateArray().Single(e => e.GetProperty("peerId").GetString() == killed.Name);
            return lost.GetProperty("state").GetString() == "lost"
                   && assignments.Count == 1 && assignments[0].GetProperty("exitPeerId").GetString() == survivor
                   && assignments[0].GetProperty("clientPeerId").GetString() == "client-1";
        }, "the pool holds client-1 on the survivor only and shows the killed exit lost");
        var sessions = await SessionsAsync(network, baseNode);
        Assert.Equal(survivor, Assignment(sessions, "client-1").GetProperty("exitPeerId").GetString());
    }

    [Fact]
    public async Task A_drained_exit_has_its_clients_moved_takes_no_new_ones_and_takes_them_again_when_undrained()
    {
        await using var network = new TestNetwork(output);
        var (baseNode, superA, superB) = await StartRegionsAsync(network);
        await StartAgentAsync(network, baseNode, superB, "exit-1", "exit", ExitRegion, "--max-clients", "5");
        await Eventually.Async(async () => (await ExitsAsync(network, baseNode)).Count(e => e.GetProperty("online").GetBoolean()) == 1,
            "exit-1 is online", TimeSpan.FromSeconds(60));
        var client1 = await StartAgentAsync(network, baseNode, superA, "client-1", "client", ClientRegion, "--exit-region", ExitRegion);
        var client2 = await StartAgentAsync(network, baseNode, superA, "client-2", "client", ClientRegion, "--exit-region", ExitRegion);
        Assert.Equal("exit-1", (await ExitOfAsync(network, client1)).PeerId);
        Assert.Equal("exit-1", (await ExitOfAsync(network, client2)).PeerId);
        await StartAgentAsync(network, baseNode, superB, "exit-2", "exit", ExitRegion, "--max-clients", "5");
        await Eventually.Async(async () => (await ExitsAsync(network, baseNode)).Count(e => e.GetProperty("online").GetBoolean()) == 2,
            "exit-2 is online", TimeSpan.FromSeconds(60));

        var (code, text) = await network.RunAsync("admin", "--base", baseNode.Listen.ToString(), "--tls", network.AdminTls,
            "drain", "exit-1", "--json");

        Assert.True(code == 0, text);
        var drained = JsonDocument.Parse(text).RootElement;
        Assert.True(drained.GetProperty("complete").GetBoolean(), text);
        Assert.Equal(["client-1", "client-2"], drained.GetProperty("clients").EnumerateArray().Select(c => c.GetProperty("clientPeerId").GetString()).Order());
        Assert.All(drained.GetProperty("clients").EnumerateArray(), c => Assert.Equal("exit-2", c.GetProperty("toExitPeerId").GetString()));
        Assert.Equal("exit-2", (await ExitOfAsync(network, client1)).PeerId);
        Assert.Equal("exit-2", (await ExitOfAsync(network, client2)).PeerId);
        // The drained exit dropped both clients' halves; a new client goes elsewhere, though exit-1 is the emptier.
        await Eventually.Async(async () => (await StatusAsync(network, StateDir(network, "exit-1"))).GetProperty("clients").GetArrayLength() == 0,
            "exit-1 serves nobody");
        var client3 = await StartAgentAsync(network, baseNode, superA, "client-3", "client", ClientRegion, "--exit-region", ExitRegion);
        Assert.Equal("exit-2", (await ExitOfAsync(network, client3)).PeerId);
        Assert.Equal("drained", (await ExitsAsync(network, baseNode)).Single(e => e.GetProperty("peerId").GetString() == "exit-1").GetProperty("state").GetString());

        (code, text) = await network.RunAsync("admin", "--base", baseNode.Listen.ToString(), "--tls", network.AdminTls, "undrain", "exit-1");
        Assert.True(code == 0, text);
        Assert.Contains("takes new clients again", text, StringComparison.Ordinal);
        var client4 = await StartAgentAsync(network, baseNode, superA, "client-4", "client", ClientRegion, "--exit-region", ExitRegion);
        Assert.Equal("exit-1", (await ExitOfAsync(network, client4)).PeerId);
    }

    [Fact]
    public async Task An_operator_moves_one_client_to_another_exit()
    {
        await using var network = new TestNetwork(output);
        var (baseNode, superA, superB) = await StartRegionsAsync(network);
        await StartAgentAsync(network, baseNode, superB, "exit-1", "exit", ExitRegion, "--max-clients", "5");
        await StartAgentAsync(network, baseNode, superB, "exit-2", "exit", ExitRegion, "--max-clients", "5");
        await Eventually.Async(async () => (await ExitsAsync(network, baseNode)).Count(e => e.GetProperty("online").GetBoolean()) == 2,
            "both exits are online", TimeSpan.FromSeconds(60));
        var client = await StartAgentAsync(network, baseNode, superA, "client-1", "client", ClientRegion, "--exit-region", ExitRegion);
        var first = await ExitOfAsync(network, client);

        var (code, text) = await network.RunAsync("admin", "--base", baseNode.Listen.ToString(), "--tls", network.AdminTls,
            "rotate", "client-1", "--region", ClientRegion, "--json");

        Assert.True(code == 0, text);
        var result = JsonDocument.Parse(text).RootElement;
        Assert.True(result.GetProperty("moved").GetBoolean(), text);
        Assert.Equal(first.PeerId, result.GetProperty("fromExitPeerId").GetString());
        var other = first.PeerId == "exit-1" ? "exit-2" : "exit-1";
        Assert.Equal(other, result.GetProperty("toExitPeerId").GetString());
        Assert.Equal(other, (await ExitOfAsync(network, client)).PeerId);
        // The old exit's half goes once the client moved.
        await Eventually.Async(async () => (await StatusAsync(network, StateDir(network, first.PeerId))).GetProperty("clients").GetArrayLength() == 0,
            $"{first.PeerId} serves nobody");
    }

    [Fact]
    public async Task A_client_of_a_lost_exit_with_no_other_exit_keeps_it_and_moves_when_another_exit_comes()
    {
        await using var network = new TestNetwork(output);
        var (baseNode, superA, superB) = await StartRegionsAsync(network);
        var exit = await StartAgentAsync(network, baseNode, superB, "exit-1", "exit", ExitRegion, "--max-clients", "5");
        await Eventually.Async(async () => (await ExitsAsync(network, baseNode)).Any(e => e.GetProperty("online").GetBoolean()),
            "exit-1 is online", TimeSpan.FromSeconds(60));
        var client = await StartAgentAsync(network, baseNode, superA, "client-1", "client", ClientRegion, "--exit-region", ExitRegion);
        var first = await ExitOfAsync(network, client);

        exit.Process!.Kill();

        // Lost, but no other exit takes the client: it keeps its exit (its stream's end does not prove its data plane died).
        await Eventually.Async(async () => (await ExitsAsync(network, baseNode)).Single().GetProperty("state").GetString() == "lost",
            "exit-1 is lost");
        var kept = await StatusAsync(network, client);
        Assert.Equal("exit-1", kept.GetProperty("exit").GetProperty("peerId").GetString());
        Assert.Equal(first.Address, kept.GetProperty("tunnelAddresses")[0].GetString());
        Assert.False(kept.TryGetProperty("exitRequest", out var request) && request.TryGetProperty("lastError", out var error)
                     && error.ValueKind == JsonValueKind.Object, $"client-1 was told of no error: {kept}");

        // Another exit comes: the pool asks again and the client moves to it.
        await StartAgentAsync(network, baseNode, superB, "exit-2", "exit", ExitRegion, "--max-clients", "5");
        await Eventually.Async(async () => (await StatusAsync(network, client)).GetProperty("exit") is { ValueKind: JsonValueKind.Object } now
                                           && now.GetProperty("peerId").GetString() == "exit-2",
            "client-1 moved to exit-2", TimeSpan.FromSeconds(60));
        await Eventually.Async(async () =>
        {
            var assignments = (await ExitPoolAsync(network, baseNode)).GetProperty("assignments").EnumerateArray().ToList();
            return assignments.Count == 1 && assignments[0].GetProperty("exitPeerId").GetString() == "exit-2";
        }, "the pool holds client-1 on exit-2 only");
    }

    [Fact]
    public async Task A_SuperNode_at_its_stream_limit_refuses_and_names_the_other_SuperNodes_of_its_region()
    {
        await using var network = new TestNetwork(output);
        var baseNode = network.BaseNode();
        await network.StartAsync(baseNode);
        var full = network.SuperNode("sn-b1", ExitRegion, baseNode);
        full = WithArguments(full, [.. full.Arguments, "--max-streams", "1"]);
        // A second SuperNode of the region, as the directory lists it (on SQLite it runs as a cluster of its own;
        // what counts here is that the directory, and so the full SuperNode's cache, knows it).
        var other = network.SuperNode("sn-b2", ExitRegion, baseNode);
        await Task.WhenAll(network.StartAsync(full), network.StartAsync(other));
        await Eventually.Async(() => Task.FromResult(CacheKnows(network, "sn-b1", "sn-b2")), "sn-b1's directory cache knows sn-b2", TimeSpan.FromSeconds(60));

        await using var first = await RawClient.ConnectAsync(network, baseNode, full, "holder", ExitRegion);
        var (status, reason, detail) = await RefusedAsync(network, baseNode, full);
        Assert.Equal(Grpc.Core.StatusCode.ResourceExhausted, status);
        Assert.Equal("AT_CAPACITY", reason);
        Assert.Contains($"sn-b2 at {other.Listen}", detail, StringComparison.Ordinal);
    }

    private static async Task<(Grpc.Core.StatusCode Status, string Reason, string Detail)> RefusedAsync(TestNetwork network, TestNetwork.Node baseNode,
        TestNetwork.Node super)
    {
        try
        {
            await using var refused = await RawPeer.OpenAsync(super.Listen, network.CaFile);
            Assert.Fail("the SuperNode at its limit opened a stream");
        }
        catch (Grpc.Core.RpcException ex)
        {
            return (ex.StatusCode, ex.Trailers.GetValue("mydvpn-reason") ?? "(none)", ex.Status.Detail);
        }
        throw new InvalidOperationException("unreachable");
    }

    // ---- the network ----

    private static Task<(TestNetwork.Node Base, TestNetwork.Node A, TestNetwork.Node B)> StartRegionsAsync(
        TestNetwork network, Action<TestNetwork.Node>? configureB = null) =>
        network.StartRegionsAsync(ClientRegion, ExitRegion, configureB: configureB);

    /// <summary>Whether <paramref name="superNode"/>'s directory cache (what it routes exit requests by) lists <paramref name="other"/>.</summary>
    private static bool CacheKnows(TestNetwork network, string superNode, string other)
    {
        var cache = Path.Combine(network.Root, superNode, "directory-cache.json");
        try
        {
            return File.Exists(cache) && File.ReadAllText(cache).Contains($"\"{other}\"", StringComparison.Ordinal);
        }
        catch (IOException)
        {
            return false;
        }
    }

    private static string StateDir(TestNetwork network, string peerId) => network.PeerStateDir(peerId);

    private static Task<TestNetwork.Node> StartAgentAsync(TestNetwork network, TestNetwork.Node baseNode, TestNetwork.Node super,
        string peerId, string role, string region, params string[] extra) =>
        network.StartAgentAsync(baseNode, super, peerId, role, region, extra);

    private static TestNetwork.Node WithArguments(TestNetwork.Node node, string[] arguments) =>
        new(node.Name, node.Listen, node.Metrics, arguments);

    private static Task<JsonElement> StatusAsync(TestNetwork network, TestNetwork.Node agent) =>
        StatusAsync(network, StateDir(network, agent.Name));

    private static async Task<JsonElement> StatusAsync(TestNetwork network, string stateDir)
    {
        JsonElement status = default;
        await Eventually.Async(async () =>
        {
            var (exitCode, text) = await network.RunAsync("status", "--state-dir", stateDir, "--json");
            if (exitCode != 0)
                return false;
            status = JsonDocument.Parse(text).RootElement.Clone();
            return true;
        }, $"mydvpn status answers for {stateDir}", TimeSpan.FromSeconds(30));
        return status;
    }

    private static async Task<(string PeerId, string Address)> ExitOfAsync(TestNetwork network, TestNetwork.Node agent, TimeSpan? within = null)
    {
        JsonElement exit = default;
        JsonElement status = default;
        await Eventually.Async(async () =>
        {
            status = await StatusAsync(network, agent);
            exit = status.GetProperty("exit");
            return exit.ValueKind == JsonValueKind.Object;
        }, $"{agent.Name} holds an exit", within ?? TimeSpan.FromSeconds(60));
        Assert.Equal(ExitRegion, exit.GetProperty("region").GetString());
        Assert.Equal("direct", status.GetProperty("path").GetString());
        return (exit.GetProperty("peerId").GetString()!, status.GetProperty("tunnelAddresses")[0].GetString()!);
    }

    private static async Task<JsonElement> SessionsAsync(TestNetwork network, TestNetwork.Node baseNode)
    {
        var (exitCode, text) = await network.RunAsync("admin", "--base", baseNode.Listen.ToString(), "--tls", network.AdminTls, "sessions", "--json");
        Assert.True(exitCode == 0, text);
        return JsonDocument.Parse(text).RootElement.GetProperty("sessions").Clone();
    }

    private static List<JsonElement> Assignments(JsonElement sessions, string peerId) =>
        [.. sessions.EnumerateArray().Where(s => s.GetProperty("peerId").GetString() == peerId)
            .SelectMany(s => s.TryGetProperty("assignments", out var a) ? a.EnumerateArray() : Enumerable.Empty<JsonElement>())];

    private static JsonElement Assignment(JsonElement sessions, string peerId) => Assert.Single(Assignments(sessions, peerId));

    private static async Task<JsonElement> ExitPoolAsync(TestNetwork network, TestNetwork.Node baseNode)
    {
        var (exitCode, text) = await network.RunAsync("admin", "--base", baseNode.Listen.ToString(), "--tls", network.AdminTls,
            "exits", "--region", ExitRegion, "--json");
        Assert.True(exitCode == 0, text);
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    private static async Task<List<JsonElement>> ExitsAsync(TestNetwork network, TestNetwork.Node baseNode)
    {
        var pool = await ExitPoolAsync(network, baseNode);
        return pool.TryGetProperty("exits", out var exits) ? [.. exits.EnumerateArray()] : [];
    }

    private static CommandResponse CommandResponses(string commandId, CommandFailure failure) =>
        new() { CommandId = commandId, Failure = failure };

    /// <summary>A client speaking the protocol itself, so a test can make it fail its half.</summary>
    private sealed class RawClient(RawPeer peer, string peerId) : IAsyncDisposable
    {
        private readonly byte[] wireGuardKey = WireGuardKey.Generate().PublicKey;

        public static async Task<RawClient> ConnectAsync(TestNetwork network, TestNetwork.Node baseNode, TestNetwork.Node super, string peerId,
            string region = ClientRegion)
        {
            var token = await network.CreateTokenAsync(baseNode, "client", region);
            var peer = await RawPeer.OpenAsync(super.Listen, network.CaFile);
            await peer.SendAsync(peer.SignedRequest(IdentityKey.Generate(), peerId, PeerRole.Client, region, token));
            Assert.Equal(ControlMessage.PayloadOneofCase.AuthResponse, (await peer.ReadAsync()).PayloadCase);
            return new RawClient(peer, peerId);
        }

        /// <summary>Asks for an exit in b and answers the SetupExit that comes (done, unless <paramref name="answer"/> says otherwise).</summary>
        public async Task<Command> RequestExitAsync(Func<Command, CommandResponse>? answer = null)
        {
            await peer.SendAsync(new ControlMessage { ExitRequest = new ExitRequest { Region = ExitRegion, WireguardPublicKey = ByteString.CopyFrom(wireGuardKey) } });
            while (true)
            {
                var message = await peer.ReadAsync(TimeSpan.FromSeconds(60));
                if (message.PayloadCase == ControlMessage.PayloadOneofCase.ExitRequestFailed)
                    Assert.Fail($"{peerId}: exit request failed: {message.ExitRequestFailed}");
                if (await AnswerAsync(message, answer) is { BodyCase: Command.BodyOneofCase.SetupExit } setup)
                {
                    Assert.Equal(ExitSide.Client, setup.SetupExit.Side);
                    Assert.Equal(ExitRegion, setup.SetupExit.CounterpartRegion);
                    Assert.Equal(32, setup.SetupExit.Peer.PublicKey.Length);
                    return setup;
                }
            }
        }

        public async Task<Protocol.Control.ExitRequestFailed> RequestExitExpectingFailureAsync()
        {
            await peer.SendAsync(new ControlMessage { ExitRequest = new ExitRequest { Region = ExitRegion, WireguardPublicKey = ByteString.CopyFrom(wireGuardKey) } });
            return (await ReadUntilFailureAsync()).Failure;
        }

        public async Task<(Protocol.Control.ExitRequestFailed Failure, List<Command> Commands)> ReadUntilFailureAsync()
        {
            var commands = new List<Command>();
            while (true)
            {
                var message = await peer.ReadAsync(TimeSpan.FromSeconds(60));
                if (message.PayloadCase == ControlMessage.PayloadOneofCase.ExitRequestFailed)
                    return (message.ExitRequestFailed, commands);
                if (await AnswerAsync(message, null) is { } command)
                    commands.Add(command);
            }
        }

        /// <summary>Reads (and answers) what arrives within <paramref name="quiet"/>.</summary>
        public async Task<List<Command>> DrainCommandsAsync(TimeSpan quiet)
        {
            var commands = new List<Command>();
            try
            {
                while (true)
                {
                    if (await AnswerAsync(await peer.ReadAsync(quiet), null) is { } command)
                        commands.Add(command);
                }
            }
            catch (OperationCanceledException)
            {
                return commands;
            }
            catch (Grpc.Core.RpcException ex) when (ex.StatusCode == Grpc.Core.StatusCode.Cancelled)
            {
                return commands;
            }
        }

        private async Task<Command?> AnswerAsync(ControlMessage message, Func<Command, CommandResponse>? answer)
        {
            switch (message.PayloadCase)
            {
                case ControlMessage.PayloadOneofCase.Ping:
                    await peer.SendAsync(new ControlMessage { Pong = new Pong { Sequence = message.Ping.Sequence, PingSentAt = message.Ping.SentAt } });
                    return null;
                case ControlMessage.PayloadOneofCase.Command:
                    var response = message.Command.BodyCase == Command.BodyOneofCase.SetupExit && answer is not null
                        ? answer(message.Command)
                        : new CommandResponse { CommandId = message.Command.CommandId, Result = new CommandResult { Done = new Empty() } };
                    await peer.SendAsync(new ControlMessage { CommandResponse = response });
                    return message.Command;
                default:
                    return null;
            }
        }

        public ValueTask DisposeAsync() => peer.DisposeAsync();
    }

    /// <summary>An exit that answers pings but never a command: it records what it was sent.</summary>
    private sealed class RawExit : IAsyncDisposable
    {
        private readonly RawPeer peer;
        private readonly List<Command> commands = [];
        private readonly CancellationTokenSource stop = new();
        private readonly Task reading;

        private RawExit(RawPeer peer)
        {
            this.peer = peer;
            reading = Task.Run(ReadAsync);
        }

        public static async Task<RawExit> ConnectAsync(TestNetwork network, TestNetwork.Node baseNode, TestNetwork.Node super, string peerId, int capacity)
        {
            var token = await network.CreateTokenAsync(baseNode, "exit", ExitRegion);
            var peer = await RawPeer.OpenAsync(super.Listen, network.CaFile);
            var request = peer.SignedRequest(IdentityKey.Generate(), peerId, PeerRole.Exit, ExitRegion, token, exitOffer: (uint)capacity);
            await peer.SendAsync(request);
            Assert.Equal(ControlMessage.PayloadOneofCase.AuthResponse, (await peer.ReadAsync()).PayloadCase);
            return new RawExit(peer);
        }

        private async Task ReadAsync()
        {
            while (!stop.IsCancellationRequested)
            {
                ControlMessage message;
                try
                {
                    message = await peer.ReadAsync(TimeSpan.FromMinutes(5));
                }
                catch (Exception)
                {
                    return;
                }
                if (message.PayloadCase == ControlMessage.PayloadOneofCase.Ping)
                    await peer.SendAsync(new ControlMessage { Pong = new Pong { Sequence = message.Ping.Sequence, PingSentAt = message.Ping.SentAt } });
                else if (message.PayloadCase == ControlMessage.PayloadOneofCase.Command)
                {
                    lock (commands)
                    {
                        if (commands.All(c => c.CommandId != message.Command.CommandId))
                            commands.Add(message.Command);
                    }
                }
            }
        }

        /// <summary>The distinct commands received, once at least <paramref name="count"/> arrived.</summary>
        public async Task<List<Command>> CommandsAsync(int count)
        {
            await Eventually.Async(() =>
            {
                lock (commands)
                    return Task.FromResult(commands.Count >= count);
            }, $"the silent exit received {count} commands");
            lock (commands)
                return [.. commands];
        }

        public async ValueTask DisposeAsync()
        {
            await stop.CancelAsync();
            await peer.DisposeAsync();
            try
            {
                await reading.WaitAsync(TimeSpan.FromSeconds(5));
            }
            catch (TimeoutException)
            {
            }
            stop.Dispose();
        }
    }
}
