using System.Text.Json;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using MyDvpn.Common;
using MyDvpn.DataPlane;
using MyDvpn.Peer.Commands;
using MyDvpn.Peer.Tunnel;
using MyDvpn.Protocol.Control;
using MyDvpn.Security;

namespace MyDvpn.Peer.Tests;

/// <summary>The handler with its real tunnel-state file and command log in a temporary state directory.</summary>
public sealed class TunnelCommandHandlerTests : IDisposable
{
    private static readonly WireGuardKey OwnKey = WireGuardKey.Generate();
    private static readonly byte[] ClientKeyA = WireGuardKey.Generate().PublicKey;
    private static readonly byte[] ClientKeyB = WireGuardKey.Generate().PublicKey;
    private static readonly byte[] ClientKeyC = WireGuardKey.Generate().PublicKey;
    private static readonly byte[] ExitKey = WireGuardKey.Generate().PublicKey;
    private static readonly byte[] NewExitKey = WireGuardKey.Generate().PublicKey;

    private readonly TempDirectory temp = new();
    private readonly ManualTimeProvider time = new();
    private readonly List<TunnelStateStore> stores = [];

    public void Dispose()
    {
        foreach (var store in stores)
            store.Dispose();
        temp.Dispose();
    }

    [Fact]
    public async Task Each_command_is_recorded_as_one_json_line_and_acknowledged_done()
    {
        var handler = Handler(PeerRole.Client);
        var deadline = new DateTimeOffset(2030, 1, 2, 3, 4, 5, TimeSpan.Zero);

        var relay = await handler.HandleAsync(new Command
        {
            CommandId = "cmd-1",
            Deadline = Timestamp.FromDateTimeOffset(deadline),
            RelaySetup = new RelaySetup { AssignmentId = "a-1", PeerPublicKey = ByteString.CopyFrom(1, 2, 3), RelayEndpoint = "198.51.100.1:40001" },
        }, CancellationToken.None);
        var disconnect = await handler.HandleAsync(new Command { CommandId = "cmd-2", Disconnect = new Disconnect { Reason = "drain" } }, CancellationToken.None);

        Assert.Equal(CommandResult.BodyOneofCase.Done, relay.Result.BodyCase);
        Assert.Equal(CommandResult.BodyOneofCase.Done, disconnect.Result.BodyCase);
        var lines = File.ReadAllLines(Path.Combine(temp.Path, CommandLog.FileName));
        Assert.Equal(2, lines.Length);
        using var first = JsonDocument.Parse(lines[0]);
        var root = first.RootElement;
        Assert.Equal("cmd-1", root.GetProperty("command_id").GetString());
        Assert.Equal("relay_setup", root.GetProperty("kind").GetString());
        Assert.Equal(deadline, root.GetProperty("deadline").GetDateTimeOffset());
        Assert.True(root.GetProperty("received_at").TryGetDateTimeOffset(out _));
        Assert.Equal("198.51.100.1:40001", root.GetProperty("body").GetProperty("relay_endpoint").GetString());
        Assert.Equal("AQID", root.GetProperty("body").GetProperty("peer_public_key").GetString());
        Assert.Equal("done", root.GetProperty("answer").GetString());
        using var second = JsonDocument.Parse(lines[1]);
        Assert.Equal("disconnect", second.RootElement.GetProperty("kind").GetString());
        Assert.Equal("drain", second.RootElement.GetProperty("body").GetProperty("reason").GetString());
    }

    [Fact]
    public async Task Exit_side_SetupExit_adds_the_client_and_answers_with_the_wireguard_key_public_endpoint_and_port()
    {
        var store = Store();
        var handler = Handler(PeerRole.Exit, store: store, publicEndpoint: new HostPort("203.0.113.9", 51999), listenPort: 51999);

        var answer = await handler.HandleAsync(ServeClient("cmd-1", "a-1", ClientKeyA), CancellationToken.None);

        var result = answer.Result.SetupExit;
        Assert.Equal(OwnKey.PublicKey, result.PublicKey.ToByteArray());
        Assert.Equal("203.0.113.9:51999", result.Endpoint);
        Assert.Equal(51999u, result.ListenPort);
        var client = Assert.Single(store.Current.Clients);
        Assert.Equal(new ServedClient("a-1", "client-1", "eu-west", Convert.ToBase64String(ClientKeyA), ["100.96.0.2/32"], time.GetUtcNow()), client);
        Assert.Equal<string>(["100.96.0.1/24"], store.Current.ExitAddresses);
        Assert.Null(store.Current.Exit);
        using var line = JsonDocument.Parse(Assert.Single(File.ReadAllLines(handler.Path)));
        Assert.Equal(OwnKey.PublicKeyBase64, line.RootElement.GetProperty("result").GetProperty("public_key").GetString());
    }

    [Fact]
    public async Task Exit_without_a_public_endpoint_answers_an_empty_endpoint_and_the_default_port()
    {
        var handler = Handler(PeerRole.Both);

        var answer = await handler.HandleAsync(ServeClient("cmd-1", "a-1", ClientKeyA), CancellationToken.None);

        Assert.Equal("", answer.Result.SetupExit.Endpoint);
        Assert.Equal((uint)PeerOptions.DefaultWireGuardPort, answer.Result.SetupExit.ListenPort);
    }

    [Fact]
    public async Task Client_side_SetupExit_sets_the_exit_and_a_newer_assignment_replaces_it()
    {
        var store = Store();
        var handler = Handler(PeerRole.Client, store: store);

        var first = await handler.HandleAsync(UseExit("cmd-1", "a-1", "198.51.100.7:51820"), CancellationToken.None);
        var since = time.GetUtcNow();
        time.Advance(TimeSpan.FromMinutes(1));
        var second = await handler.HandleAsync(UseExit("cmd-2", "a-2", "198.51.100.8:51820"), CancellationToken.None);

        Assert.Equal(CommandResult.BodyOneofCase.Done, first.Result.BodyCase);
        Assert.Equal(CommandResult.BodyOneofCase.Done, second.Result.BodyCase);
        var exit = store.Current.Exit;
        Assert.NotNull(exit);
        Assert.Equal(new ClientExit("a-2", "exit-1", "eu-west", Convert.ToBase64String(ExitKey), "198.51.100.8:51820",
            ["0.0.0.0/0"], 25, ["100.96.0.2/32"], since + TimeSpan.FromMinutes(1)), exit);
        Assert.Equal<string>(["100.96.0.2/32"], store.Current.TunnelAddresses);
        Assert.Empty(store.Current.Clients);
    }

    [Fact]
    public async Task Tunnel_state_is_read_back_after_reopening_the_state_directory()
    {
        var handler = Handler(PeerRole.Both);
        await handler.HandleAsync(UseExit("cmd-1", "a-1", "[2001:db8::7]:51820"), CancellationToken.None);
        await handler.HandleAsync(ServeClient("cmd-2", "a-2", ClientKeyA), CancellationToken.None);
        var before = stores[0].Current;
        stores[0].Dispose();
        stores.Clear();

        var reopened = Store();

        Assert.Equal(before, reopened.Current);
        Assert.Equal("[2001:db8::7]:51820", reopened.Current.Exit?.Endpoint);
        Assert.Single(reopened.Current.Clients);
        Assert.False(File.Exists(TunnelStateStore.PathIn(temp.Path) + ".tmp"));
    }

    [Fact]
    public async Task Exit_serves_at_most_max_clients_and_refuses_more_with_capacity()
    {
        var store = Store();
        var handler = Handler(PeerRole.Exit, store: store, maxClients: 2);
        await handler.HandleAsync(ServeClient("cmd-1", "a-1", ClientKeyA), CancellationToken.None);
        await handler.HandleAsync(ServeClient("cmd-2", "a-2", ClientKeyB), CancellationToken.None);

        var third = await handler.HandleAsync(ServeClient("cmd-3", "a-3", ClientKeyC), CancellationToken.None);
        var again = await handler.HandleAsync(ServeClient("cmd-4", "a-2", ClientKeyB), CancellationToken.None);

        Assert.Equal(CommandError.Capacity, third.Failure.Code);
        Assert.Contains("--max-clients", third.Failure.Reason, StringComparison.Ordinal);
        Assert.Equal(CommandResponse.OutcomeOneofCase.Result, again.OutcomeCase);
        Assert.Equal(["a-1", "a-2"], store.Current.Clients.Select(c => c.AssignmentId));
    }

    [Fact]
    public async Task Applying_the_same_assignment_again_changes_nothing()
    {
        var store = Store();
        var handler = Handler(PeerRole.Both, store: store);
        await handler.HandleAsync(ServeClient("cmd-1", "a-1", ClientKeyA), CancellationToken.None);
        await handler.HandleAsync(UseExit("cmd-2", "a-2", "198.51.100.7:51820"), CancellationToken.None);
        var before = store.Current;
        var written = File.GetLastWriteTimeUtc(store.Path);
        File.SetLastWriteTimeUtc(store.Path, written - TimeSpan.FromHours(1));
        time.Advance(TimeSpan.FromMinutes(5));

        var serve = await handler.HandleAsync(ServeClient("cmd-3", "a-1", ClientKeyA), CancellationToken.None);
        var use = await handler.HandleAsync(UseExit("cmd-4", "a-2", "198.51.100.7:51820"), CancellationToken.None);

        Assert.Equal(OwnKey.PublicKey, serve.Result.SetupExit.PublicKey.ToByteArray());
        Assert.Equal(CommandResult.BodyOneofCase.Done, use.Result.BodyCase);
        Assert.Equal(before, store.Current);
        Assert.Equal(written - TimeSpan.FromHours(1), File.GetLastWriteTimeUtc(store.Path));
    }

    [Fact]
    public async Task A_new_assignment_for_a_served_clients_key_replaces_the_old_one()
    {
        var store = Store();
        var handler = Handler(PeerRole.Exit, store: store, maxClients: 1);
        await handler.HandleAsync(ServeClient("cmd-1", "a-1", ClientKeyA), CancellationToken.None);

        var answer = await handler.HandleAsync(ServeClient("cmd-2", "a-2", ClientKeyA), CancellationToken.None);

        Assert.Equal(CommandResponse.OutcomeOneofCase.Result, answer.OutcomeCase);
        Assert.Equal("a-2", Assert.Single(store.Current.Clients).AssignmentId);
    }

    public static TheoryData<string, PeerRole, Command, string> InvalidCommands => new()
    {
        { "no assignment", PeerRole.Both, With(UseExit("c", "a", "198.51.100.7:51820"), s => s.AssignmentId = ""), "assignment_id is empty" },
        { "short key", PeerRole.Both, With(UseExit("c", "a", "198.51.100.7:51820"), s => s.Peer.PublicKey = ByteString.CopyFrom(new byte[31])), "31 bytes" },
        { "no side", PeerRole.Both, With(UseExit("c", "a", "198.51.100.7:51820"), s => s.Side = ExitSide.Unspecified), "side" },
        { "bad endpoint", PeerRole.Client, UseExit("c", "a", "exit-without-port"), "peer.endpoint" },
        { "empty endpoint", PeerRole.Client, UseExit("c", "a", ""), "peer.endpoint" },
        { "bad allowed ip", PeerRole.Client, With(UseExit("c", "a", "198.51.100.7:51820"), s => s.Peer.AllowedIps[0] = "0.0.0.0/33"), "peer.allowed_ips" },
        { "no allowed ips", PeerRole.Client, With(UseExit("c", "a", "198.51.100.7:51820"), s => s.Peer.AllowedIps.Clear()), "peer.allowed_ips is empty" },
        { "bad tunnel address", PeerRole.Client, With(UseExit("c", "a", "198.51.100.7:51820"), s => s.TunnelAddresses[0] = "100.96.2/32"), "tunnel_addresses" },
        { "keepalive", PeerRole.Client, With(UseExit("c", "a", "198.51.100.7:51820"), s => s.Peer.PersistentKeepaliveSeconds = 70000), "persistent_keepalive" },
        { "exit uses no exit", PeerRole.Exit, UseExit("c", "a", "198.51.100.7:51820"), "only a client" },
        { "client serves no one", PeerRole.Client, ServeClient("c", "a", ClientKeyA), "only an exit" },
        { "bad client address", PeerRole.Exit, With(ServeClient("c", "a", ClientKeyA), s => s.Peer.AllowedIps[0] = "fe80::1%eth0/128"), "peer.allowed_ips" },
        { "bad own address", PeerRole.Exit, With(ServeClient("c", "a", ClientKeyA), s => s.TunnelAddresses.Clear()), "tunnel_addresses is empty" },
        { "remove without assignment", PeerRole.Both, new Command { CommandId = "c", RemoveExit = new RemoveExit { Side = ExitSide.Client } }, "assignment_id is empty" },
        { "exit rotates no exit", PeerRole.Exit, Rotate("c", "a-2", ExitKey), "only a client" },
        { "rotate without assignment", PeerRole.Client, WithRotate(Rotate("c", "a-2", ExitKey), r => r.AssignmentId = ""), "assignment_id is empty" },
        { "rotate without new peer", PeerRole.Client, WithRotate(Rotate("c", "a-2", ExitKey), r => r.NewPeer = null), "new_peer is missing" },
        { "rotate to a short key", PeerRole.Client, WithRotate(Rotate("c", "a-2", ExitKey), r => r.NewPeer.PublicKey = ByteString.CopyFrom(new byte[31])), "new_peer.public_key is 31 bytes" },
        { "rotate from no key", PeerRole.Client, Rotate("c", "a-2", []), "old_peer_public_key is 0 bytes" },
        { "rotate to a bad endpoint", PeerRole.Client, WithRotate(Rotate("c", "a-2", ExitKey), r => r.NewPeer.Endpoint = "exit-without-port"), "new_peer.endpoint" },
        { "rotate to a bad address", PeerRole.Client, WithRotate(Rotate("c", "a-2", ExitKey), r => r.TunnelAddresses[0] = "100.96.1/32"), "tunnel_addresses" },
        { "rotate holding no exit", PeerRole.Client, Rotate("c", "a-2", ExitKey), "holds no exit and does not use assignment a-2: nothing to rotate" },
        { "split tunnel", PeerRole.Client, With(UseExit("c", "a", "198.51.100.7:51820"), s => s.Peer.AllowedIps[0] = "10.0.0.0/8"), "exactly the full tunnel" },
        { "loopback exit", PeerRole.Client, UseExit("c", "a", "127.0.0.1:51820"), "loopback" },
        { "no subnet", PeerRole.Client, With(UseExit("c", "a", "198.51.100.7:51820"), s => s.TunnelSubnet = ""), "tunnel_subnet is empty" },
        { "address outside the subnet", PeerRole.Client, With(UseExit("c", "a", "198.51.100.7:51820"), s => s.TunnelAddresses[0] = "192.168.1.2/32"), "outside the tunnel subnet" },
        { "client address not a host", PeerRole.Client, With(UseExit("c", "a", "198.51.100.7:51820"), s => s.TunnelAddresses[0] = "100.96.0.2/24"), "not a host route" },
        { "exit routes everything to a client", PeerRole.Exit, With(ServeClient("c", "a", ClientKeyA), s => s.Peer.AllowedIps[0] = "0.0.0.0/0"), "not a host route" },
        { "exit masquerades everything", PeerRole.Exit, With(ServeClient("c", "a", ClientKeyA), s => s.TunnelAddresses[0] = "100.96.0.1/0"), "masquerade" },
        { "rotate to a multicast exit", PeerRole.Client, WithRotate(Rotate("c", "a-2", ExitKey), r => r.NewPeer.Endpoint = "224.0.0.5:51820"), "multicast" },
        { "rotate to a split tunnel", PeerRole.Client, WithRotate(Rotate("c", "a-2", ExitKey), r => r.NewPeer.AllowedIps.Add("::/0")), "exactly the full tunnel" },
        { "rotate outside the subnet", PeerRole.Client, WithRotate(Rotate("c", "a-2", ExitKey), r => r.TunnelSubnet = "100.96.2.0/24"), "outside the tunnel subnet 100.96.2.0/24" },
        { "relay to the unspecified address", PeerRole.Client, Relay("c", "a-1", "0.0.0.0:40001"), "unspecified" },
        { "relay to broadcast", PeerRole.Client, Relay("c", "a-1", "255.255.255.255:40001"), "broadcast" },
    };

    /// <summary>A command refused by the rules leaves a tunnel in use as it was: state, file and host alike.</summary>
    public static TheoryData<string, Command, string> RefusedOnATunnelInUse => new()
    {
        { "exit side: a client's allowed ips swallow the exit's traffic", With(ServeClient("c-bad", "a-9", ClientKeyB), s => s.Peer.AllowedIps[0] = "0.0.0.0/0"), "peer.allowed_ips" },
        { "exit side: its own address on the host's LAN", With(ServeClient("c-bad", "a-9", ClientKeyB), s => s.TunnelAddresses[0] = "192.168.1.1/24"), "tunnel_addresses" },
        { "client side: a loopback exit", UseExit("c-bad", "a-9", "[::1]:51820"), "peer.endpoint" },
        { "rotation to a split tunnel", WithRotate(Rotate("c-bad", "a-9", ExitKey), r => r.NewPeer.AllowedIps[0] = "10.0.0.0/8"), "new_peer.allowed_ips" },
        { "relay to a multicast leg", Relay("c-bad", "a-1", "239.1.2.3:40001"), "multicast" },
    };

    [Theory]
    [MemberData(nameof(RefusedOnATunnelInUse))]
    public async Task Refused_command_leaves_the_tunnel_in_use_unchanged(string why, Command command, string reason)
    {
        var store = Store();
        var applied = new List<TunnelState>();
        store.UseDataPlane((state, _) =>
        {
            applied.Add(state);
            return Task.CompletedTask;
        });
        var handler = Handler(PeerRole.Both, store: store);
        await handler.HandleAsync(UseExit("cmd-1", "a-1", "198.51.100.7:51820"), CancellationToken.None);
        await handler.HandleAsync(ServeClient("cmd-2", "a-2", ClientKeyA), CancellationToken.None);
        var before = store.Current;
        var file = File.ReadAllText(store.Path);
        var hostChanges = applied.Count;
        var changes = handler.Changes.Count;

        var answer = await handler.HandleAsync(command, CancellationToken.None);

        Assert.True(answer.OutcomeCase == CommandResponse.OutcomeOneofCase.Failure, why);
        Assert.Equal(CommandError.Invalid, answer.Failure.Code);
        Assert.Contains(reason, answer.Failure.Reason, StringComparison.Ordinal);
        Assert.Equal(before, store.Current);
        Assert.Equal(file, File.ReadAllText(store.Path));
        Assert.Equal(hostChanges, applied.Count);
        Assert.Equal(changes, handler.Changes.Count);
        Assert.Equal(before, Store().Current);
    }

    [Theory]
    [MemberData(nameof(InvalidCommands))]
    public async Task Invalid_command_is_refused_saying_what_is_wrong_and_changes_nothing(string why, PeerRole role, Command command, string reason)
    {
        var store = Store();
        var handler = Handler(role, store: store);

        var answer = await handler.HandleAsync(command, CancellationToken.None);

        Assert.True(answer.OutcomeCase == CommandResponse.OutcomeOneofCase.Failure, why);
        Assert.Equal(CommandError.Invalid, answer.Failure.Code);
        Assert.Contains(reason, answer.Failure.Reason, StringComparison.Ordinal);
        Assert.Equal(TunnelState.Empty, store.Current);
        Assert.False(File.Exists(store.Path));
        Assert.Contains("COMMAND_ERROR_INVALID", Assert.Single(File.ReadAllLines(handler.Path)), StringComparison.Ordinal);
    }

    [Fact]
    public async Task RemoveExit_removes_the_half_of_its_assignment_and_an_unknown_one_is_done_already()
    {
        var store = Store();
        var handler = Handler(PeerRole.Both, store: store);
        await handler.HandleAsync(UseExit("cmd-1", "a-1", "198.51.100.7:51820"), CancellationToken.None);
        await handler.HandleAsync(ServeClient("cmd-2", "a-2", ClientKeyA), CancellationToken.None);
        await handler.HandleAsync(ServeClient("cmd-3", "a-3", ClientKeyB), CancellationToken.None);

        var unknown = await handler.HandleAsync(Remove("cmd-4", "a-9", ExitSide.Client), CancellationToken.None);
        var wrongSide = await handler.HandleAsync(Remove("cmd-5", "a-1", ExitSide.Exit), CancellationToken.None);
        Assert.NotNull(store.Current.Exit);
        var client = await handler.HandleAsync(Remove("cmd-6", "a-2", ExitSide.Exit), CancellationToken.None);
        var exit = await handler.HandleAsync(Remove("cmd-7", "a-1", ExitSide.Client), CancellationToken.None);
        var again = await handler.HandleAsync(Remove("cmd-8", "a-1", ExitSide.Client), CancellationToken.None);

        Assert.All([unknown, wrongSide, client, exit, again], answer => Assert.Equal(CommandResult.BodyOneofCase.Done, answer.Result.BodyCase));
        Assert.Null(store.Current.Exit);
        Assert.Equal("a-3", Assert.Single(store.Current.Clients).AssignmentId);
    }

    [Fact]
    public async Task Disconnect_drops_the_exit_and_keeps_the_served_clients()
    {
        var store = Store();
        var handler = Handler(PeerRole.Both, store: store);
        await handler.HandleAsync(UseExit("cmd-1", "a-1", "198.51.100.7:51820"), CancellationToken.None);
        await handler.HandleAsync(ServeClient("cmd-2", "a-2", ClientKeyA), CancellationToken.None);

        var answer = await handler.HandleAsync(new Command { CommandId = "cmd-3", Disconnect = new Disconnect { Reason = "operator" } }, CancellationToken.None);

        Assert.Equal(CommandResult.BodyOneofCase.Done, answer.Result.BodyCase);
        Assert.Null(store.Current.Exit);
        Assert.Single(store.Current.Clients);
    }

    [Fact]
    public async Task Command_without_a_body_is_answered_invalid()
    {
        var handler = Handler(PeerRole.Client);

        var answer = await handler.HandleAsync(new Command { CommandId = "cmd-1" }, CancellationToken.None);

        Assert.Equal(CommandError.Invalid, answer.Failure.Code);
    }

    [Fact]
    public void Every_kind_of_command_has_a_handler_in_the_agent()
    {
        var handled = Handler(PeerRole.Both).Kinds;

        foreach (var kind in System.Enum.GetValues<Command.BodyOneofCase>().Where(k => k != Command.BodyOneofCase.None))
            Assert.True(handled.Contains(kind), $"the agent has no handler for {kind}: add one to AgentCommands.Handlers");
    }

    [Fact]
    public async Task RotatePeer_moves_the_client_to_the_new_exit_in_one_change_and_records_why()
    {
        var store = Store();
        var applied = new List<TunnelState>();
        store.UseDataPlane((state, _) =>
        {
            applied.Add(state);
            return Task.CompletedTask;
        });
        var handler = Handler(PeerRole.Client, store: store);
        await handler.HandleAsync(UseExit("cmd-1", "a-1", "198.51.100.7:51820"), CancellationToken.None);
        await handler.HandleAsync(new Command
        {
            CommandId = "cmd-2",
            RelaySetup = new RelaySetup { AssignmentId = "a-1", PeerPublicKey = ByteString.CopyFrom(ExitKey), RelayEndpoint = "198.51.100.1:40001" },
        }, CancellationToken.None);
        var old = store.Current.Exit!;
        time.Advance(TimeSpan.FromMinutes(3));
        applied.Clear();

        var answer = await handler.HandleAsync(Rotate("cmd-3", "a-2", ExitKey), CancellationToken.None);

        Assert.Equal(CommandResult.BodyOneofCase.Done, answer.Result.BodyCase);
        var now = time.GetUtcNow();
        var exit = new ClientExit("a-2", "exit-2", "us-east", Convert.ToBase64String(NewExitKey), "198.51.100.8:51820", ["0.0.0.0/0"], 25,
            ["100.96.1.2/32"], now);
        // One change reaches the data plane: the new exit in place of the old one, no relay leg carried over.
        var reconciled = Assert.Single(applied);
        Assert.Equal(exit, reconciled.Exit);
        Assert.Equal(exit, store.Current.Exit);
        Assert.Null(store.Current.Exit!.RelayEndpoint);
        Assert.Equal<string>(["100.96.1.2/32"], store.Current.TunnelAddresses);
        var spec = TunnelSpec.For(reconciled, new DataPlaneSettings("mydvpn0", null, null, 10, 51820, DataPlaneMode.WireGuard), OwnKey)!;
        var peer = Assert.Single(spec.Peers);
        Assert.Equal(NewExitKey, peer.PublicKey);
        Assert.Equal(["0.0.0.0/0"], peer.AllowedIps.AsEnumerable());
        Assert.NotNull(spec.FullTunnel);
        Assert.Equal(new ExitRotation(now, "exit exit-1 lost: its stream ended",
            new RotationEnd("a-1", "exit-1", "eu-west", ["100.96.0.2/32"]),
            new RotationEnd("a-2", "exit-2", "us-east", ["100.96.1.2/32"])), store.Current.LastRotation);
        Assert.Equal(new ExitChanged.Rotated("a-1", old.PeerId, "a-2", "exit-2", "us-east", "198.51.100.8:51820", "exit exit-1 lost: its stream ended"),
            handler.Changes[^1]);
        using var reopened = TunnelStateStore.Open(temp.Path);
        Assert.Equal(store.Current, reopened.Current);
    }

    [Fact]
    public async Task A_redelivered_RotatePeer_is_applied_once()
    {
        var store = Store();
        var handler = Handler(PeerRole.Client, store: store);
        await handler.HandleAsync(UseExit("cmd-1", "a-1", "198.51.100.7:51820"), CancellationToken.None);
        await handler.HandleAsync(Rotate("cmd-2", "a-2", ExitKey), CancellationToken.None);
        var rotated = store.Current;
        var changes = handler.Changes.Count;
        time.Advance(TimeSpan.FromMinutes(1));

        // The same rotation under another command id: the old key is gone, the assignment is in use.
        var again = await handler.HandleAsync(Rotate("cmd-3", "a-2", ExitKey), CancellationToken.None);

        Assert.Equal(CommandResult.BodyOneofCase.Done, again.Result.BodyCase);
        Assert.Equal(rotated, store.Current);
        Assert.Equal(changes, handler.Changes.Count);
    }

    [Fact]
    public async Task RotatePeer_from_an_exit_the_client_does_not_hold_is_refused()
    {
        var store = Store();
        var handler = Handler(PeerRole.Both, store: store);
        await handler.HandleAsync(UseExit("cmd-1", "a-1", "198.51.100.7:51820"), CancellationToken.None);
        var before = store.Current;

        var answer = await handler.HandleAsync(Rotate("cmd-2", "a-2", ClientKeyA), CancellationToken.None);

        Assert.Equal(CommandError.Invalid, answer.Failure.Code);
        Assert.Contains("this peer's exit is exit-1 (assignment a-1)", answer.Failure.Reason, StringComparison.Ordinal);
        Assert.Equal(before, store.Current);
    }

    [Fact]
    public async Task RotatePeer_the_data_plane_cannot_take_fails_and_leaves_the_old_exit()
    {
        var store = Store();
        var handler = Handler(PeerRole.Client, store: store);
        await handler.HandleAsync(UseExit("cmd-1", "a-1", "198.51.100.7:51820"), CancellationToken.None);
        var before = store.Current;
        store.UseDataPlane((state, _) =>
            state.Exit?.AssignmentId == "a-2" ? throw new DataPlaneException("WireGuard interface mydvpn0: no such device") : Task.CompletedTask);

        var answer = await handler.HandleAsync(Rotate("cmd-2", "a-2", ExitKey), CancellationToken.None);

        Assert.Equal(CommandError.Dataplane, answer.Failure.Code);
        Assert.Contains("no such device", answer.Failure.Reason, StringComparison.Ordinal);
        Assert.Equal(before, store.Current);
        Assert.Null(store.Current.LastRotation);
        Assert.DoesNotContain(handler.Changes, c => c is ExitChanged.Rotated);
        Assert.Contains("COMMAND_ERROR_DATAPLANE", File.ReadAllLines(handler.Path)[^1], StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_relay_teardown_points_the_client_back_at_the_direct_endpoint_where_only_a_new_handshake_counts()
    {
        var store = Store();
        var handler = Handler(PeerRole.Client, store: store);
        await handler.HandleAsync(UseExit("cmd-1", "a-1", "198.51.100.7:51820"), CancellationToken.None);
        await handler.HandleAsync(Relay("cmd-2", "a-1", "198.51.100.1:40001"), CancellationToken.None);
        Assert.Equal(new ExitChanged.PathChanged("a-1", Relayed: true), handler.Changes[^1]);
        time.Advance(TimeSpan.FromMinutes(2));

        var answer = await handler.HandleAsync(Teardown("cmd-3", "a-1"), CancellationToken.None);

        Assert.Equal(CommandResult.BodyOneofCase.Done, answer.Result.BodyCase);
        var movedAt = time.GetUtcNow();
        Assert.Null(store.Current.Exit!.RelayEndpoint);
        Assert.Equal(movedAt, store.Current.Exit.DirectPathSince);
        Assert.Equal(new ExitChanged.PathChanged("a-1", Relayed: false), handler.Changes[^1]);
        var peer = Assert.Single(TunnelSpec.For(store.Current, new DataPlaneSettings("mydvpn0", null, null, 10, 51820, DataPlaneMode.WireGuard), OwnKey)!.Peers);
        Assert.Equal(("198.51.100.7:51820", movedAt), (peer.Endpoint, peer.HandshakeNotBefore));

        // Another teardown while direct moves nothing: the session already on trial is not restarted again.
        time.Advance(TimeSpan.FromSeconds(30));
        await handler.HandleAsync(Teardown("cmd-4", "a-1"), CancellationToken.None);
        Assert.Equal(movedAt, store.Current.Exit.DirectPathSince);
        // Relayed again: the relay leg's endpoint carries no such condition.
        await handler.HandleAsync(Relay("cmd-5", "a-1", "198.51.100.1:40001"), CancellationToken.None);
        Assert.Null(Assert.Single(TunnelSpec.For(store.Current, new DataPlaneSettings("mydvpn0", null, null, 10, 51820, DataPlaneMode.WireGuard), OwnKey)!.Peers)
            .HandshakeNotBefore);
    }

    [Fact]
    public async Task An_exit_pointed_at_a_relay_leg_keeps_its_client_peer_alive_and_restarts_it_once_per_new_leg()
    {
        // A relay leg sends to the exit only after the exit sent to it: the exit's WireGuard must speak first.
        var store = Store();
        var handler = Handler(PeerRole.Exit, store: store);
        var settings = new DataPlaneSettings("mydvpn0", null, null, 10, 51820, DataPlaneMode.WireGuard);
        await handler.HandleAsync(ServeClient("cmd-1", "a-1", ClientKeyA), CancellationToken.None);
        var direct = Assert.Single(TunnelSpec.For(store.Current, settings, OwnKey, servesClients: true)!.Peers);
        Assert.Equal((0, (DateTimeOffset?)null), (direct.PersistentKeepalive, direct.HandshakeNotBefore));

        time.Advance(TimeSpan.FromSeconds(10));
        var pointedAt = time.GetUtcNow();
        await handler.HandleAsync(new Command
        {
            CommandId = "cmd-2",
            RelaySetup = new RelaySetup { AssignmentId = "a-1", PeerPublicKey = ByteString.CopyFrom(ClientKeyA), RelayEndpoint = "198.51.100.1:40002" },
        }, CancellationToken.None);
        var relayed = Assert.Single(TunnelSpec.For(store.Current, settings, OwnKey, servesClients: true)!.Peers);
        Assert.Equal(("198.51.100.1:40002", TunnelSpec.RelayedClientKeepaliveSeconds, (DateTimeOffset?)pointedAt),
            (relayed.Endpoint, relayed.PersistentKeepalive, relayed.HandshakeNotBefore));

        // The same leg again (a redelivery) keeps the time; another leg (a hand-over) restarts the peer again.
        time.Advance(TimeSpan.FromSeconds(10));
        await handler.HandleAsync(new Command
        {
            CommandId = "cmd-3",
            RelaySetup = new RelaySetup { AssignmentId = "a-1", PeerPublicKey = ByteString.CopyFrom(ClientKeyA), RelayEndpoint = "198.51.100.1:40002" },
        }, CancellationToken.None);
        Assert.Equal(pointedAt, Assert.Single(store.Current.Clients).RelaySince);
        await handler.HandleAsync(new Command
        {
            CommandId = "cmd-4",
            RelaySetup = new RelaySetup { AssignmentId = "a-1", PeerPublicKey = ByteString.CopyFrom(ClientKeyA), RelayEndpoint = "198.51.100.2:40007" },
        }, CancellationToken.None);
        Assert.Equal(time.GetUtcNow(), Assert.Single(store.Current.Clients).RelaySince);

        await handler.HandleAsync(new Command
        {
            CommandId = "cmd-5",
            RelayTeardown = new RelayTeardown { AssignmentId = "a-1", PeerPublicKey = ByteString.CopyFrom(ClientKeyA) },
        }, CancellationToken.None);
        var back = Assert.Single(TunnelSpec.For(store.Current, settings, OwnKey, servesClients: true)!.Peers);
        Assert.Equal((0, (DateTimeOffset?)null), (back.PersistentKeepalive, back.HandshakeNotBefore));
    }

    [Fact]
    public async Task A_relay_teardown_on_the_exit_side_only_unpins_the_client_and_tells_no_exit_change()
    {
        var store = Store();
        var handler = Handler(PeerRole.Exit, store: store);
        await handler.HandleAsync(ServeClient("cmd-1", "a-1", ClientKeyA), CancellationToken.None);
        await handler.HandleAsync(new Command
        {
            CommandId = "cmd-2",
            RelaySetup = new RelaySetup { AssignmentId = "a-1", PeerPublicKey = ByteString.CopyFrom(ClientKeyA), RelayEndpoint = "198.51.100.1:40002" },
        }, CancellationToken.None);
        Assert.Equal("198.51.100.1:40002", Assert.Single(store.Current.Clients).RelayEndpoint);
        var changes = handler.Changes.Count;

        var answer = await handler.HandleAsync(new Command
        {
            CommandId = "cmd-3",
            RelayTeardown = new RelayTeardown { AssignmentId = "a-1", PeerPublicKey = ByteString.CopyFrom(ClientKeyA) },
        }, CancellationToken.None);

        Assert.Equal(CommandResult.BodyOneofCase.Done, answer.Result.BodyCase);
        Assert.Null(Assert.Single(store.Current.Clients).RelayEndpoint);
        Assert.Equal(changes, handler.Changes.Count);
    }

    [Fact]
    public async Task Command_of_a_kind_without_a_handler_is_answered_unsupported_naming_the_kind_and_changes_nothing()
    {
        var store = Store();
        var handler = Handler(PeerRole.Both, store: store, without: Command.BodyOneofCase.RelaySetup);
        await handler.HandleAsync(UseExit("cmd-1", "a-1", "198.51.100.7:51820"), CancellationToken.None);
        var before = store.Current;

        var answer = await handler.HandleAsync(new Command
        {
            CommandId = "cmd-2",
            RelaySetup = new RelaySetup { AssignmentId = "a-1", PeerPublicKey = ByteString.CopyFrom(ExitKey), RelayEndpoint = "198.51.100.1:40001" },
        }, CancellationToken.None);

        Assert.Equal(CommandError.Unsupported, answer.Failure.Code);
        Assert.Contains("relay_setup", answer.Failure.Reason, StringComparison.Ordinal);
        Assert.Equal(before, store.Current);
        Assert.Contains("COMMAND_ERROR_UNSUPPORTED", File.ReadAllLines(handler.Path)[^1], StringComparison.Ordinal);
    }

    [Fact]
    public void A_registry_takes_one_handler_per_kind()
    {
        var store = Store();
        var local = new TunnelSettings(PeerRole.Both, OwnKey, 1, null, PeerOptions.DefaultWireGuardPort);
        var handlers = AgentCommands.Handlers(local, store, time);

        var problem = Assert.Throws<ArgumentException>(() => new CommandRegistry([.. handlers, handlers[0]]));

        Assert.Contains("two handlers for setup_exit", problem.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task What_a_command_changed_of_the_exit_is_told_with_its_answer()
    {
        var handler = Handler(PeerRole.Both);

        await handler.HandleAsync(ServeClient("cmd-1", "a-9", ClientKeyA), CancellationToken.None);
        await handler.HandleAsync(UseExit("cmd-2", "a-1", "198.51.100.7:51820"), CancellationToken.None);
        await handler.HandleAsync(Remove("cmd-3", "a-9", ExitSide.Exit), CancellationToken.None);
        await handler.HandleAsync(Remove("cmd-4", "a-1", ExitSide.Client), CancellationToken.None);
        await handler.HandleAsync(new Command { CommandId = "cmd-5", Disconnect = new Disconnect { Reason = "operator" } }, CancellationToken.None);

        Assert.Equal<ExitChanged>(
        [
            new ExitChanged.Assigned("a-1", "exit-1", "eu-west", "198.51.100.7:51820"),
            new ExitChanged.Removed("a-1", "test"),
            new ExitChanged.Disconnected("operator"),
        ], handler.Changes);
    }

    [Fact]
    public void Damaged_tunnel_state_is_refused_when_opened()
    {
        File.WriteAllText(TunnelStateStore.PathIn(temp.Path), "{ not json");

        var problem = Assert.Throws<InvalidDataException>(() => TunnelStateStore.Open(temp.Path));

        Assert.Contains(TunnelStateStore.FileName, problem.Message, StringComparison.Ordinal);
    }

    internal static Command ServeClient(string commandId, string assignmentId, byte[] clientKey) => new()
    {
        CommandId = commandId,
        SetupExit = new SetupExit
        {
            AssignmentId = assignmentId,
            Side = ExitSide.Exit,
            Peer = new WireGuardPeer { PublicKey = ByteString.CopyFrom(clientKey), AllowedIps = { "100.96.0.2/32" } },
            TunnelAddresses = { "100.96.0.1/24" },
            TunnelSubnet = "100.96.0.0/24",
            CounterpartPeerId = "client-1",
            CounterpartRegion = "eu-west",
        },
    };

    internal static Command UseExit(string commandId, string assignmentId, string endpoint) => new()
    {
        CommandId = commandId,
        SetupExit = new SetupExit
        {
            AssignmentId = assignmentId,
            Side = ExitSide.Client,
            Peer = new WireGuardPeer
            {
                PublicKey = ByteString.CopyFrom(ExitKey),
                Endpoint = endpoint,
                AllowedIps = { "0.0.0.0/0" },
                PersistentKeepaliveSeconds = 25,
            },
            TunnelAddresses = { "100.96.0.2/32" },
            TunnelSubnet = "100.96.0.0/24",
            CounterpartPeerId = "exit-1",
            CounterpartRegion = "eu-west",
        },
    };

    /// <summary>From the exit with <paramref name="oldKey"/> (<see cref="UseExit"/>'s) to exit-2 of us-east at 198.51.100.8:51820.</summary>
    internal static Command Rotate(string commandId, string assignmentId, byte[] oldKey) => new()
    {
        CommandId = commandId,
        RotatePeer = new RotatePeer
        {
            AssignmentId = assignmentId,
            NewPeer = new WireGuardPeer
            {
                PublicKey = ByteString.CopyFrom(NewExitKey),
                Endpoint = "198.51.100.8:51820",
                AllowedIps = { "0.0.0.0/0" },
                PersistentKeepaliveSeconds = 25,
            },
            OldPeerPublicKey = ByteString.CopyFrom(oldKey),
            TunnelAddresses = { "100.96.1.2/32" },
            TunnelSubnet = "100.96.1.0/24",
            CounterpartPeerId = "exit-2",
            CounterpartRegion = "us-east",
            PreviousAssignmentId = "a-1",
            Reason = "exit exit-1 lost: its stream ended",
        },
    };

    private static Command Relay(string commandId, string assignmentId, string relayEndpoint) => new()
    {
        CommandId = commandId,
        RelaySetup = new RelaySetup { AssignmentId = assignmentId, PeerPublicKey = ByteString.CopyFrom(ExitKey), RelayEndpoint = relayEndpoint },
    };

    private static Command Teardown(string commandId, string assignmentId) => new()
    {
        CommandId = commandId,
        RelayTeardown = new RelayTeardown { AssignmentId = assignmentId, PeerPublicKey = ByteString.CopyFrom(ExitKey), DirectEndpoint = "198.51.100.7:51820" },
    };

    private static Command WithRotate(Command command, Action<RotatePeer> change)
    {
        change(command.RotatePeer);
        return command;
    }

    private static Command Remove(string commandId, string assignmentId, ExitSide side) => new()
    {
        CommandId = commandId,
        RemoveExit = new RemoveExit { AssignmentId = assignmentId, Side = side, Reason = "test" },
    };

    private static Command With(Command command, Action<SetupExit> change)
    {
        change(command.SetupExit);
        return command;
    }

    private TunnelStateStore Store()
    {
        var store = TunnelStateStore.Open(temp.Path);
        stores.Add(store);
        return store;
    }

    private AgentHandler Handler(PeerRole role, TunnelStateStore? store = null, int maxClients = PeerOptions.DefaultMaxClients,
        HostPort? publicEndpoint = null, int listenPort = PeerOptions.DefaultWireGuardPort, Command.BodyOneofCase? without = null)
    {
        var local = new TunnelSettings(role, OwnKey, maxClients, publicEndpoint, listenPort);
        var handlers = AgentCommands.Handlers(local, store ?? Store(), time).Where(h => h.Kind != without);
        return new AgentHandler(new CommandRegistry(handlers, new CommandLog(temp.Path, time)));
    }

    /// <summary>The agent's registry as these tests read it: the answer, and every exit change kept in <see cref="Changes"/>.</summary>
    private sealed class AgentHandler(CommandRegistry registry)
    {
        public List<ExitChanged> Changes { get; } = [];

        public string Path => registry.LogPath!;

        public IReadOnlyCollection<Command.BodyOneofCase> Kinds => registry.Kinds;

        public async Task<CommandResponse> HandleAsync(Command command, CancellationToken cancellationToken)
        {
            var applied = await registry.HandleAsync(command, cancellationToken);
            if (applied.Change is { } change)
                Changes.Add(change);
            return applied.Response;
        }
    }
}
