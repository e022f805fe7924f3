using System.Diagnostics;
using System.Text.Json;
using Akka.Actor;
using MyDvpn.DataPlane.Os;
using MyDvpn.HostOs;
using MyDvpn.Security;
using Xunit.Abstractions;

namespace MyDvpn.DataPlane.Tests.Netns;

/// <summary>
/// The WireGuardActor against the real OS: wireguard-go (this host has no WireGuard kernel module, so the backend
/// choice falls back to it), iproute2 and nftables in network namespaces created per test. wireguard-tools'
/// <c>wg show</c> reads the devices independently of our UAPI client.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class WireGuardActorNetnsTests : Akka.TestKit.Xunit2.TestKit, IAsyncLifetime
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    private static readonly WireGuardActorOptions Options = new()
    {
        ReconcileInterval = TimeSpan.FromSeconds(1),
        RestartBackoffMin = TimeSpan.FromMilliseconds(200),
        RestartBackoffMax = TimeSpan.FromSeconds(2),
    };

    private readonly NetnsLab lab = new();
    private readonly TestOutputLogger logger;
    private readonly ITestOutputHelper output;

    public WireGuardActorNetnsTests(NetnsRequirements requirements, ITestOutputHelper output)
        : base("akka.loglevel = INFO", nameof(WireGuardActorNetnsTests), output)
    {
        _ = requirements;
        this.output = output;
        logger = new TestOutputLogger(output);
    }

    Task IAsyncLifetime.InitializeAsync() => Task.CompletedTask;

    /// <summary>The actors stop first (removing what they created, in live namespaces), then the lab goes.</summary>
    async Task IAsyncLifetime.DisposeAsync()
    {
        try
        {
            await Sys.Terminate().WaitAsync(TimeSpan.FromSeconds(60));
        }
        finally
        {
            await lab.DisposeAsync();
        }
    }

    // ── A pair of namespaces with one interface each, each the other's peer ─────────────────────────────────────────

    private sealed record Side(HostCommand Ns, string Interface, WireGuardKey Key, IActorRef Actor, InterfaceSpec Spec);

    private async Task<(Side A, Side B)> PairAsync()
    {
        var nsA = await lab.NamespaceAsync("a");
        var nsB = await lab.NamespaceAsync("b");
        await lab.VethAsync(nsA, "10.77.0.1/24", nsB, "10.77.0.2/24");
        var (keyA, keyB) = (WireGuardKey.Generate(), WireGuardKey.Generate());
        var (ifA, ifB) = (lab.Interface("a"), lab.Interface("b"));
        var specA = new InterfaceSpec(ifA, keyA.PrivateKey, 51820, ["10.78.0.1/24"],
            [new PeerSpec(keyB.PublicKey, "10.77.0.2:51821", ["10.78.0.2/32"], 0)], null, null);
        var specB = new InterfaceSpec(ifB, keyB.PrivateKey, 51821, ["10.78.0.2/24"],
            [new PeerSpec(keyA.PublicKey, "10.77.0.1:51820", ["10.78.0.1/32"], 0)], null, null);
        var a = new Side(nsA, ifA, keyA, Start(nsA), specA);
        var b = new Side(nsB, ifB, keyB, Start(nsB), specB);

        var readingA = await ReconcileAsync(a.Actor, specA);
        var readingB = await ReconcileAsync(b.Actor, specB);
        Assert.Equal("wireguard-go", readingA.Backend);
        Assert.Equal(keyA.PublicKey, readingA.PublicKey);
        Assert.Equal(51820, readingA.ListenPort);
        Assert.Equal(keyA.PublicKey, Assert.Single(readingB.Peers).PublicKey);
        return (a, b);
    }

    private IActorRef Start(HostCommand ns) => Sys.ActorOf(WireGuardActor.Props(ns, logger, null, Options));

    private async Task<InterfaceReading> ReconcileAsync(IActorRef actor, InterfaceSpec spec)
    {
        actor.Tell(new Reconcile(spec), TestActor);
        var answer = await ExpectMsgAsync<object>(Patience);
        return answer switch
        {
            Reconciled { Reading: { } reading } => reading,
            ReconcileFailed failed => throw new Xunit.Sdk.XunitException($"reconcile of {spec.Name} failed: {failed.Reason}"),
            _ => throw new Xunit.Sdk.XunitException($"unexpected answer {answer}"),
        };
    }

    private async Task<InterfaceReading?> ReadAsync(IActorRef actor)
    {
        actor.Tell(ReadInterface.Instance, TestActor);
        return (await ExpectMsgAsync<InterfaceRead>(Patience)).Reading;
    }

    private async Task TeardownAsync(IActorRef actor)
    {
        actor.Tell(Teardown.Instance, TestActor);
        var done = await ExpectMsgAsync<TornDown>(Patience);
        Assert.True(done.Problems.IsEmpty, "teardown problems: " + string.Join("; ", done.Problems));
    }

    /// <summary><c>wg show NAME dump</c> in the namespace: wireguard-tools reading the device on its own.</summary>
    private static async Task<Dictionary<string, string[]>> WgPeersAsync(HostCommand ns, string name)
    {
        var dump = await ns.RunCheckedAsync("wg", ["show", name, "dump"]);
        return dump.Split('\n', StringSplitOptions.RemoveEmptyEntries).Skip(1).Select(l => l.Split('\t')).ToDictionary(f => f[0]);
    }

    private static async Task<string> SysctlAsync(HostCommand ns, string key) => (await ns.RunCheckedAsync("sysctl", ["-n", key])).Trim();

    private static async Task<List<(string Family, string Name)>> NftTablesAsync(HostCommand ns)
    {
        using var json = JsonDocument.Parse(await ns.RunCheckedAsync("nft", ["-j", "list", "tables"]));
        return [.. json.RootElement.GetProperty("nftables").EnumerateArray().Where(e => e.TryGetProperty("table", out _))
            .Select(e => (e.GetProperty("table").GetProperty("family").GetString()!, e.GetProperty("table").GetProperty("name").GetString()!))];
    }

    private static async Task<List<int>> RulePrioritiesAsync(HostCommand ns)
    {
        using var json = JsonDocument.Parse(await ns.RunCheckedAsync("ip", ["-j", "-4", "rule", "show"]));
        return [.. json.RootElement.EnumerateArray().Select(r => r.GetProperty("priority").GetInt32())];
    }

    private static async Task<string> TableRoutesAsync(HostCommand ns, int table)
    {
        var result = await ns.RunAsync("ip", ["-4", "route", "show", "table", table.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        return result.Succeeded ? result.StandardOutput.Trim() : ""; // "FIB table does not exist": empty
    }

    /// <summary>Nothing of the interface is left in the namespace: link, wireguard-go, socket, nft table, our rules.</summary>
    private static async Task AssertCleanAsync(HostCommand ns, string name)
    {
        Assert.False((await ns.RunAsync("ip", ["link", "show", "dev", name])).Succeeded, $"link {name} is still there");
        Assert.Empty(WireGuardGoProcesses.FindAll(n => n == name));
        Assert.False(File.Exists(Path.Combine(NetnsLab.SocketDirectory, name + ".sock")), $"socket of {name} is still there");
        Assert.DoesNotContain(await NftTablesAsync(ns), t => t.Name.StartsWith("mydvpn_", StringComparison.Ordinal));
        var priorities = await RulePrioritiesAsync(ns);
        Assert.DoesNotContain(FullTunnelSpec.SuppressRulePriority, priorities);
        Assert.DoesNotContain(FullTunnelSpec.TunnelRulePriority, priorities);
    }

    // ── Tests ─────────────────────────────────────────────────────────────────────────────────────────────────────────

    [Fact]
    public async Task Two_namespaces_ping_each_other_through_the_tunnel_and_wg_sees_the_handshake()
    {
        var clock = Stopwatch.StartNew();
        var (a, b) = await PairAsync();

        Assert.True(await NetnsLab.PingAsync(a.Ns, "10.78.0.2", Patience), "A cannot ping B through the tunnel");

        var peers = await WgPeersAsync(a.Ns, a.Interface);
        var peer = Assert.Single(peers).Value;
        Assert.Equal(b.Key.PublicKeyBase64, peer[0]);
        Assert.Equal("10.77.0.2:51821", peer[2]);
        var handshake = DateTimeOffset.FromUnixTimeSeconds(long.Parse(peer[4], System.Globalization.CultureInfo.InvariantCulture));
        Assert.InRange(handshake, DateTimeOffset.UtcNow.AddMinutes(-2), DateTimeOffset.UtcNow.AddMinutes(1));
        Assert.Equal(a.Key.PublicKeyBase64, Assert.Single(await WgPeersAsync(b.Ns, b.Interface)).Key);

        var reading = await ReadAsync(a.Actor);
        var mine = Assert.Single(reading!.Peers);
        Assert.NotNull(mine.LastHandshake);
        Assert.True(mine.RxBytes > 0 && mine.TxBytes > 0, $"rx {mine.RxBytes} tx {mine.TxBytes}");

        await TeardownAsync(a.Actor);
        await TeardownAsync(b.Actor);
        await AssertCleanAsync(a.Ns, a.Interface);
        await AssertCleanAsync(b.Ns, b.Interface);
        output.WriteLine($"took {clock.Elapsed.TotalSeconds:0.0} s");
    }

    [Fact]
    public async Task Adding_a_peer_keeps_the_others_handshake_and_removing_one_takes_it_off_the_device()
    {
        var (a, b) = await PairAsync();
        Assert.True(await NetnsLab.PingAsync(a.Ns, "10.78.0.2", Patience));
        var before = Assert.Single((await ReadAsync(a.Actor))!.Peers).LastHandshake;
        Assert.NotNull(before);

        var extra = WireGuardKey.Generate();
        var withExtra = a.Spec with { Peers = a.Spec.Peers.Add(new PeerSpec(extra.PublicKey, null, ["10.78.0.3/32"], 0)) };
        var reading = await ReconcileAsync(a.Actor, withExtra);

        Assert.Equal(2, reading.Peers.Count);
        Assert.Equal(before, reading.Peers.Single(p => p.PublicKey.SequenceEqual(b.Key.PublicKey)).LastHandshake);
        Assert.Equal(2, (await WgPeersAsync(a.Ns, a.Interface)).Count);

        var withoutB = a.Spec with { Peers = [new PeerSpec(extra.PublicKey, null, ["10.78.0.3/32"], 0)] };
        reading = await ReconcileAsync(a.Actor, withoutB);

        Assert.Equal(extra.PublicKey, Assert.Single(reading.Peers).PublicKey);
        var peers = await WgPeersAsync(a.Ns, a.Interface);
        Assert.DoesNotContain(b.Key.PublicKeyBase64, peers.Keys);
        Assert.Contains(extra.PublicKeyBase64, peers.Keys);
    }

    [Fact]
    public async Task A_peer_that_never_handshook_and_gets_a_new_endpoint_is_restarted_and_handshakes_there()
    {
        // A's first initiations go to an address where nothing answers (a direct path that cannot work); then the
        // control plane points the peer elsewhere (a relay leg; here B itself). The peer has no session, so it is
        // restarted in one UAPI set (remove, then added anew) and its keepalive starts a handshake on the new endpoint.
        var (a, b) = await PairAsync();
        var nowhere = a.Spec with { Peers = [a.Spec.Peers[0] with { Endpoint = "10.77.0.99:51821", PersistentKeepalive = 25 }] };
        await ReconcileAsync(a.Actor, nowhere);
        Assert.Null(Assert.Single((await ReadAsync(a.Actor))!.Peers).LastHandshake);

        var moved = DateTimeOffset.UtcNow;
        var reading = await ReconcileAsync(a.Actor, nowhere with { Peers = [nowhere.Peers[0] with { Endpoint = "10.77.0.2:51821" }] });

        Assert.Equal("10.77.0.2:51821", Assert.Single(reading.Peers).Endpoint);
        Assert.Equal(["10.78.0.2/32"], reading.Peers[0].AllowedIps.AsEnumerable());
        var handshake = await Eventually(async () => Assert.Single((await ReadAsync(a.Actor))!.Peers).LastHandshake, Patience);
        output.WriteLine($"first handshake on the new endpoint {(handshake - moved).TotalSeconds:0.00} s after the move (WireGuard's own retry: 5 s)");
        Assert.True(await NetnsLab.PingAsync(a.Ns, "10.78.0.2", Patience), "A cannot ping B after the move");
        _ = b;
    }

    /// <summary>Reads until <paramref name="read"/> gives a value, for at most <paramref name="within"/>.</summary>
    private static async Task<T> Eventually<T>(Func<Task<T?>> read, TimeSpan within)
        where T : struct
    {
        var until = DateTimeOffset.UtcNow + within;
        while (true)
        {
            if (await read() is { } value)
                return value;
            if (DateTimeOffset.UtcNow > until)
                throw new Xunit.Sdk.XunitException($"nothing within {within.TotalSeconds:0} s");
            await Task.Delay(100);
        }
    }

    [Fact]
    public async Task Killed_wireguard_go_is_started_again_and_the_tunnel_works_again()
    {
        var (a, _) = await PairAsync();
        Assert.True(await NetnsLab.PingAsync(a.Ns, "10.78.0.2", Patience));
        var old = Assert.Single(await WireGuardGoProcesses.FindAsync(a.Ns, a.Interface, CancellationToken.None));

        await HostCommand.Host.RunCheckedAsync("kill", ["-9", old.ToString(System.Globalization.CultureInfo.InvariantCulture)]);

        var clock = Stopwatch.StartNew();
        Assert.True(await NetnsLab.EventuallyAsync(async () =>
        {
            var now = await WireGuardGoProcesses.FindAsync(a.Ns, a.Interface, CancellationToken.None);
            return now.Length == 1 && now[0] != old;
        }, Patience), "wireguard-go was not started again");
        Assert.True(await NetnsLab.PingAsync(a.Ns, "10.78.0.2", Patience), "the tunnel did not come back after the restart");
        output.WriteLine($"tunnel back {clock.Elapsed.TotalSeconds:0.0} s after kill -9");
        Assert.Single((await ReadAsync(a.Actor))!.Peers);
        Assert.Contains("10.78.0.1/24", await a.Ns.RunCheckedAsync("ip", ["-4", "addr", "show", "dev", a.Interface]));
    }

    [Fact]
    public async Task Drift_is_repaired_by_the_periodic_reconciliation()
    {
        var (a, _) = await PairAsync();

        await a.Ns.RunCheckedAsync("ip", ["addr", "del", "10.78.0.1/24", "dev", a.Interface]);
        await a.Ns.RunCheckedAsync("ip", ["link", "set", a.Interface, "down"]);

        Assert.True(await NetnsLab.EventuallyAsync(async () =>
        {
            var link = await a.Ns.RunCheckedAsync("ip", ["-4", "addr", "show", "dev", a.Interface]);
            return link.Contains("10.78.0.1/24", StringComparison.Ordinal) && link.Contains(",UP", StringComparison.Ordinal);
        }, Patience), "the address and link state were not restored");
        Assert.True(await NetnsLab.PingAsync(a.Ns, "10.78.0.2", Patience));
    }

    [Fact]
    public async Task Exit_nat_creates_its_nft_table_and_forwarding_and_teardown_restores_them()
    {
        var exit = await lab.NamespaceAsync("e");
        var world = await lab.NamespaceAsync("w");
        var (uplink, _) = await lab.VethAsync(exit, "10.79.0.1/24", world, "10.79.0.2/24");
        await exit.RunCheckedAsync("ip", ["route", "add", "default", "via", "10.79.0.2"]);
        Assert.Equal("0", await SysctlAsync(exit, "net.ipv4.ip_forward"));
        var name = lab.Interface("e");
        var actor = Start(exit);

        await ReconcileAsync(actor, new InterfaceSpec(name, WireGuardKey.Generate().PrivateKey, 51820, ["10.78.0.1/24"], [],
            null, new ExitNatSpec(["10.78.0.0/24"], null)));

        Assert.Contains(("inet", "mydvpn_" + name), await NftTablesAsync(exit));
        Assert.Equal("1", await SysctlAsync(exit, "net.ipv4.ip_forward"));
        var table = await exit.RunCheckedAsync("nft", ["list", "table", "inet", "mydvpn_" + name]);
        Assert.Contains($"oifname \"{uplink}\"", table); // the uplink came from the default route
        Assert.Contains("ip saddr 10.78.0.0/24", table);
        Assert.Contains("masquerade", table);

        await TeardownAsync(actor);

        Assert.DoesNotContain(await NftTablesAsync(exit), t => t.Name == "mydvpn_" + name);
        Assert.Equal("0", await SysctlAsync(exit, "net.ipv4.ip_forward"));
        await AssertCleanAsync(exit, name);
    }

    [Fact]
    public async Task Full_tunnel_adds_the_policy_rules_and_table_route_and_teardown_removes_them()
    {
        var client = await lab.NamespaceAsync("c");
        var name = lab.Interface("c");
        var actor = Start(client);
        var spec = new InterfaceSpec(name, WireGuardKey.Generate().PrivateKey, 51821, ["10.78.0.2/32"],
            [new PeerSpec(WireGuardKey.Generate().PublicKey, "192.0.2.1:51820", ["0.0.0.0/0"], 25)], new FullTunnelSpec(), null);

        await ReconcileAsync(actor, spec);

        var rules = await client.RunCheckedAsync("ip", ["-4", "rule", "show"]);
        Assert.Contains($"{FullTunnelSpec.SuppressRulePriority}:\tfrom all lookup main suppress_prefixlength 0", rules);
        Assert.Contains($"{FullTunnelSpec.TunnelRulePriority}:\tnot from all fwmark 0xca6c lookup 51820", rules);
        Assert.Equal($"default dev {name} scope link", await TableRoutesAsync(client, FullTunnelSpec.DefaultTable));
        Assert.Equal("1", await SysctlAsync(client, "net.ipv4.conf.all.src_valid_mark"));
        Assert.Equal("0xca6c", (await client.RunCheckedAsync("wg", ["show", name, "fwmark"])).Trim());

        // Reconciling again changes nothing and adds no second copy of a rule.
        await ReconcileAsync(actor, spec);
        Assert.Single(await RulePrioritiesAsync(client), p => p == FullTunnelSpec.TunnelRulePriority);

        await TeardownAsync(actor);

        Assert.Equal("", await TableRoutesAsync(client, FullTunnelSpec.DefaultTable));
        Assert.Equal("0", await SysctlAsync(client, "net.ipv4.conf.all.src_valid_mark"));
        await AssertCleanAsync(client, name);
    }

    [Fact]
    public async Task Client_traffic_leaves_through_the_exit_masqueraded()
    {
        var client = await lab.NamespaceAsync("c");
        var exit = await lab.NamespaceAsync("e");
        var world = await lab.NamespaceAsync("w");
        await lab.VethAsync(client, "10.77.0.2/24", exit, "10.77.0.1/24");
        await lab.VethAsync(exit, "10.79.0.1/24", world, "10.79.0.2/24");
        await client.RunCheckedAsync("ip", ["route", "add", "default", "via", "10.77.0.1"]);
        await exit.RunCheckedAsync("ip", ["route", "add", "default", "via", "10.79.0.2"]);
        var (clientKey, exitKey) = (WireGuardKey.Generate(), WireGuardKey.Generate());
        var (clientName, exitName) = (lab.Interface("c"), lab.Interface("e"));
        var exitActor = Start(exit);
        var clientActor = Start(client);

        await ReconcileAsync(exitActor, new InterfaceSpec(exitName, exitKey.PrivateKey, 51820, ["10.78.0.1/24"],
            [new PeerSpec(clientKey.PublicKey, null, ["10.78.0.2/32"], 0)], null, new ExitNatSpec(["10.78.0.0/24"], null)));
        await ReconcileAsync(clientActor, new InterfaceSpec(clientName, clientKey.PrivateKey, 51821, ["10.78.0.2/32"],
            [new PeerSpec(exitKey.PublicKey, "10.77.0.1:51820", ["0.0.0.0/0"], 25)], new FullTunnelSpec(), null));

        // The world has no route back to the tunnel (nor to the client's own network): only masqueraded replies arrive.
        Assert.True(await NetnsLab.PingAsync(client, "10.79.0.2", Patience), "the client cannot reach the world through the exit");

        var served = Assert.Single((await ReadAsync(exitActor))!.Peers);
        Assert.True(served.RxBytes > 0, "the exit received nothing from the client through WireGuard");
        using var nat = JsonDocument.Parse(await exit.RunCheckedAsync("nft", ["-j", "list", "chain", "inet", "mydvpn_" + exitName, "postrouting"]));
        var packets = nat.RootElement.GetProperty("nftables").EnumerateArray()
            .Where(e => e.TryGetProperty("rule", out _))
            .SelectMany(e => e.GetProperty("rule").GetProperty("expr").EnumerateArray())
            .Where(x => x.TryGetProperty("counter", out _))
            .Sum(x => x.GetProperty("counter").GetProperty("packets").GetInt64());
        Assert.True(packets > 0, "the masquerade rule matched nothing");

        await TeardownAsync(clientActor);
        await TeardownAsync(exitActor);
        await AssertCleanAsync(client, clientName);
        await AssertCleanAsync(exit, exitName);
        Assert.Equal("0", await SysctlAsync(exit, "net.ipv4.ip_forward"));
    }

    [Fact]
    public async Task Stopping_the_actor_without_teardown_removes_everything()
    {
        var (a, _) = await PairAsync();
        await ReconcileAsync(a.Actor, a.Spec with { FullTunnel = new FullTunnelSpec(), ExitNat = new ExitNatSpec(["10.78.0.0/24"], "lo") });

        Watch(a.Actor);
        Sys.Stop(a.Actor);
        await ExpectTerminatedAsync(a.Actor, Patience);

        await AssertCleanAsync(a.Ns, a.Interface);
        Assert.Equal("0", await SysctlAsync(a.Ns, "net.ipv4.ip_forward"));
        Assert.Equal("0", await SysctlAsync(a.Ns, "net.ipv4.conf.all.src_valid_mark"));
    }

    [Fact]
    public async Task Leftovers_of_a_crashed_agent_are_removed_by_name()
    {
        var ns = await lab.NamespaceAsync("x");
        var name = lab.Interface("x");

        // What a crashed agent leaves: its wireguard-go, its nft table, its full-tunnel rules.
        using (var orphan = await StartOrphanAsync(ns, name))
        {
            await ns.RunCheckedAsync("nft", ["-j", "-f", "-"], NftExitNat.Document(name, "lo", ["10.78.0.0/24"]));
            foreach (var rule in PolicyRule.For(new FullTunnelSpec()))
                await ns.RunCheckedAsync("ip", ["-4", "rule", "add", .. rule.Arguments()]);

            var removed = await DataPlaneCleanup.RemoveLeftoversAsync(ns, name, new FullTunnelSpec());

            Assert.Contains(removed, r => r.StartsWith("wireguard-go pid", StringComparison.Ordinal));
            Assert.Contains(removed, r => r.StartsWith("nft table", StringComparison.Ordinal));
            Assert.Equal(2, removed.Count(r => r.StartsWith("rule", StringComparison.Ordinal)));
            Assert.True(orphan.WaitForExit(TimeSpan.FromSeconds(5)));
        }
        await AssertCleanAsync(ns, name);

        // An actor starting over a leftover of its name replaces it.
        using (var orphan = await StartOrphanAsync(ns, name))
        {
            var actor = Start(ns);
            var reading = await ReconcileAsync(actor, new InterfaceSpec(name, WireGuardKey.Generate().PrivateKey, 51820, ["10.78.0.1/24"], [], null, null));

            Assert.Equal("wireguard-go", reading.Backend);
            Assert.True(orphan.WaitForExit(TimeSpan.FromSeconds(5)), "the leftover wireguard-go still runs");
            Assert.DoesNotContain(orphan.Id, await WireGuardGoProcesses.FindAsync(ns, name, CancellationToken.None));
            await TeardownAsync(actor);
        }
        await AssertCleanAsync(ns, name);
    }

    [Fact]
    public async Task A_name_taken_by_another_kind_of_link_is_refused_and_left_alone()
    {
        var ns = await lab.NamespaceAsync("y");
        var name = lab.Interface("y");
        await ns.RunCheckedAsync("ip", ["link", "add", name, "type", "veth", "peer", "name", name + "p"]);
        lab.Foreign(name);
        lab.Foreign(name + "p");
        var actor = Start(ns);

        actor.Tell(new Reconcile(new InterfaceSpec(name, WireGuardKey.Generate().PrivateKey, 51820, ["10.78.0.1/24"], [], null, null)), TestActor);

        Assert.Contains("refusing to touch it", (await ExpectMsgAsync<ReconcileFailed>(Patience)).Reason);
        Assert.Contains("veth", await ns.RunCheckedAsync("ip", ["-d", "link", "show", "dev", name]));
        Assert.Empty(WireGuardGoProcesses.FindAll(n => n == name));
        actor.Tell(new Reconcile(null), TestActor);
        await ExpectMsgAsync<Reconciled>(Patience);
        Assert.Contains("veth", await ns.RunCheckedAsync("ip", ["-d", "link", "show", "dev", name]));
    }

    /// <summary>A wireguard-go started the way an agent would, then forgotten.</summary>
    private static async Task<Process> StartOrphanAsync(HostCommand ns, string name)
    {
        var start = ns.StartInfo("wireguard-go", ["-f", name]);
        start.Environment["WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD"] = "1";
        start.Environment["LOG_LEVEL"] = "silent";
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        var process = Process.Start(start)!;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        Assert.True(await NetnsLab.EventuallyAsync(() => Task.FromResult(File.Exists(Path.Combine(NetnsLab.SocketDirectory, name + ".sock"))), Patience),
            "the orphan wireguard-go did not start");
        return process;
    }
}
