using Akka.Actor;
using MyDvpn.DataPlane.Os;
using MyDvpn.HostOs;
using MyDvpn.Security;
using Xunit.Abstractions;

namespace MyDvpn.DataPlane.Tests.Unit;

/// <summary>The actor's decisions against an in-memory host and device (the real OS is in <c>Netns/</c>).</summary>
public sealed class WireGuardActorLogicTests : Akka.TestKit.Xunit2.TestKit
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);

    private readonly FakeHostNetwork host = new();
    private readonly FakeDeviceFactory devices;
    private readonly TestOutputLogger logger;
    private readonly ManualTimeProvider clock = new();
    private readonly WireGuardKey own = WireGuardKey.Generate();
    private readonly WireGuardKey peerB = WireGuardKey.Generate();
    private readonly WireGuardKey peerC = WireGuardKey.Generate();

    public WireGuardActorLogicTests(ITestOutputHelper output)
        : base("akka.loglevel = INFO", nameof(WireGuardActorLogicTests), output)
    {
        devices = new FakeDeviceFactory(host);
        logger = new TestOutputLogger(output);
    }

    private IActorRef Start(WireGuardActorOptions? options = null) =>
        Sys.ActorOf(WireGuardActor.Props(host, devices, logger, clock,
            options ?? new WireGuardActorOptions { ReconcileInterval = TimeSpan.FromMinutes(10), RestartBackoffMin = TimeSpan.FromMilliseconds(50) }));

    private InterfaceSpec Spec(params PeerSpec[] peers) =>
        new("wgt0", own.PrivateKey, 51820, ["10.60.0.1/24"], [.. peers], null, null);

    private PeerSpec B(string allowed = "10.60.0.2/32") => new(peerB.PublicKey, "192.0.2.2:51820", [allowed], 25);

    private PeerSpec C() => new(peerC.PublicKey, null, ["10.60.0.3/32", "10.61.0.0/24"], 0);

    private async Task<InterfaceReading> ReconcileAsync(IActorRef actor, InterfaceSpec? spec)
    {
        actor.Tell(new Reconcile(spec), TestActor);
        var answer = await ExpectMsgAsync<object>(Patience);
        return answer switch
        {
            Reconciled { Reading: { } reading } => reading,
            ReconcileFailed failed => throw new Xunit.Sdk.XunitException($"reconcile failed: {failed.Reason}"),
            _ => throw new Xunit.Sdk.XunitException($"unexpected answer {answer}"),
        };
    }

    [Fact]
    public async Task Reconcile_creates_the_device_brings_the_link_up_and_answers_with_the_reading()
    {
        var actor = Start();

        var reading = await ReconcileAsync(actor, Spec(B(), C()));

        Assert.Equal("wgt0", reading.Name);
        Assert.Equal(own.PublicKey, reading.PublicKey);
        Assert.Equal([peerB.PublicKeyBase64, peerC.PublicKeyBase64], reading.Peers.Select(p => Convert.ToBase64String(p.PublicKey)));
        host.Locked(h =>
        {
            Assert.Equal(new LinkReading(1420, true), h.Links["wgt0"]);
            Assert.Equal(["10.60.0.1/24"], h.Addresses["wgt0"]);
            // 10.60.0.x is inside the interface's own subnet; only C's 10.61.0.0/24 needs a route.
            Assert.Equal(["10.61.0.0/24"], h.Routes["wgt0"]);
        });
        Assert.Single(devices.Created);
    }

    [Fact]
    public async Task Adding_a_peer_changes_only_that_peer_and_keeps_the_others_handshake()
    {
        var actor = Start();
        await ReconcileAsync(actor, Spec(B()));
        var handshake = new DateTimeOffset(2030, 1, 1, 12, 0, 0, TimeSpan.Zero);
        devices.Current.Handshake(peerB.PublicKey, handshake);

        var reading = await ReconcileAsync(actor, Spec(B(), C()));

        var second = devices.Current.Applied[^1];
        Assert.Equal([peerC.PublicKeyBase64], second.AddedPeers.Select(p => p.Key));
        Assert.Empty(second.RemovedPeers);
        Assert.Empty(second.ChangedPeers);
        Assert.Null(second.PrivateKey);
        Assert.Equal(handshake, reading.Peers.Single(p => p.PublicKey.SequenceEqual(peerB.PublicKey)).LastHandshake);
    }

    [Fact]
    public async Task Removing_a_peer_removes_only_that_peer()
    {
        var actor = Start();
        await ReconcileAsync(actor, Spec(B(), C()));

        var reading = await ReconcileAsync(actor, Spec(B()));

        var change = devices.Current.Applied[^1];
        Assert.Equal([peerC.PublicKeyBase64], change.RemovedPeers.Select(Convert.ToBase64String));
        Assert.Empty(change.AddedPeers);
        Assert.Empty(change.ChangedPeers);
        Assert.Equal([peerB.PublicKeyBase64], reading.Peers.Select(p => Convert.ToBase64String(p.PublicKey)));
        host.Locked(h => Assert.Empty(h.Routes["wgt0"]));
    }

    [Fact]
    public async Task A_peer_replaced_by_another_with_its_allowed_ips_goes_in_the_same_change()
    {
        var actor = Start();
        await ReconcileAsync(actor, Spec(B("10.70.0.0/16")));

        var reading = await ReconcileAsync(actor, Spec(new PeerSpec(peerC.PublicKey, "192.0.2.3:51820", ["10.70.0.0/16"], 25)));

        // One reconcile, one change: the new peer added and the old one removed (the device applies the removal last).
        Assert.Equal(2, devices.Current.Applied.Count);
        var change = devices.Current.Applied[^1];
        Assert.Equal([peerC.PublicKeyBase64], change.AddedPeers.Select(p => p.Key));
        Assert.Equal([peerB.PublicKeyBase64], change.RemovedPeers.Select(Convert.ToBase64String));
        var peer = Assert.Single(reading.Peers);
        Assert.Equal(peerC.PublicKey, peer.PublicKey);
        Assert.Equal(["10.70.0.0/16"], peer.AllowedIps.AsEnumerable());
    }

    [Fact]
    public async Task Changed_allowed_ips_update_the_peer_in_place()
    {
        var actor = Start();
        await ReconcileAsync(actor, Spec(B()));

        await ReconcileAsync(actor, Spec(B("10.60.0.9/32")));

        var change = devices.Current.Applied[^1];
        var update = Assert.Single(change.ChangedPeers);
        Assert.Equal(["10.60.0.9/32"], update.AllowedIps!.Value.AsEnumerable());
        Assert.Null(update.Endpoint);
        Assert.Null(update.PersistentKeepalive);
        Assert.Empty(change.AddedPeers);
        Assert.Empty(change.RemovedPeers);
    }

    [Fact]
    public async Task Reconciling_an_unchanged_spec_touches_nothing()
    {
        var actor = Start();
        await ReconcileAsync(actor, Spec(B(), C()));
        var changes = host.Locked(h => h.Changes.Count);
        var applied = devices.Current.Applied.Count;

        await ReconcileAsync(actor, Spec(B(), C()));

        Assert.Equal(changes, host.Locked(h => h.Changes.Count));
        Assert.Equal(applied, devices.Current.Applied.Count);
    }

    [Fact]
    public async Task Invalid_spec_is_refused_without_touching_the_host()
    {
        var actor = Start();

        actor.Tell(new Reconcile(Spec(B()) with { PrivateKey = new byte[5], Addresses = ["not-an-address"] }), TestActor);

        var failed = await ExpectMsgAsync<ReconcileFailed>(Patience);
        Assert.Contains("private key must be 32 bytes", failed.Reason);
        Assert.Contains("not-an-address", failed.Reason);
        Assert.Empty(host.Locked(h => h.Changes.ToList()));
        Assert.Empty(devices.Created);
    }

    [Fact]
    public async Task A_second_interface_name_is_refused_until_the_first_is_absent()
    {
        var actor = Start();
        await ReconcileAsync(actor, Spec(B()));

        actor.Tell(new Reconcile(Spec(B()) with { Name = "wgt1" }), TestActor);
        Assert.Contains("owns interface wgt0", (await ExpectMsgAsync<ReconcileFailed>(Patience)).Reason);

        actor.Tell(new Reconcile(null), TestActor);
        Assert.Null((await ExpectMsgAsync<Reconciled>(Patience)).Reading);
        var reading = await ReconcileAsync(actor, Spec(B()) with { Name = "wgt1" });
        Assert.Equal("wgt1", reading.Name);
    }

    [Fact]
    public async Task A_host_failure_is_reported_and_the_timer_retries_until_the_host_matches()
    {
        var actor = Start(new WireGuardActorOptions { ReconcileInterval = TimeSpan.FromMilliseconds(200) });
        host.Locked(h => h.FailOnce["addr add"] = new HostCommandException(new CommandResult("ip", ["addr", "add"], 2, "", "RTNETLINK answers: Permission denied")));

        actor.Tell(new Reconcile(Spec(B())), TestActor);

        var failed = await ExpectMsgAsync<ReconcileFailed>(Patience);
        Assert.Contains("Permission denied", failed.Reason);
        await AwaitAssertAsync(() => host.Locked(h => Assert.Contains("10.60.0.1/24", h.Addresses["wgt0"])), Patience);
    }

    [Fact]
    public async Task Drift_is_repaired_by_the_periodic_reconciliation()
    {
        var actor = Start(new WireGuardActorOptions { ReconcileInterval = TimeSpan.FromMilliseconds(200) });
        await ReconcileAsync(actor, Spec(B()) with { FullTunnel = new FullTunnelSpec() });

        host.Locked(h =>
        {
            h.Addresses["wgt0"].Clear();
            h.Rules.Clear();
            h.Links["wgt0"] = h.Links["wgt0"] with { Up = false };
        });

        await AwaitAssertAsync(() => host.Locked(h =>
        {
            Assert.Contains("10.60.0.1/24", h.Addresses["wgt0"]);
            Assert.Equal(2, h.Rules.Count);
            Assert.True(h.Links["wgt0"].Up);
        }), Patience);
    }

    [Fact]
    public async Task Newer_desired_states_are_coalesced_and_every_sender_gets_the_newest_answer()
    {
        var actor = Start();
        var first = CreateTestProbe();
        var second = CreateTestProbe();
        var third = CreateTestProbe();
        devices.ApplyGate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);

        actor.Tell(new Reconcile(Spec(B())), first.Ref);
        Assert.True(await devices.ApplyStarted.WaitAsync(Patience), "the first reconciliation never reached the device");
        actor.Tell(new Reconcile(Spec(C())), second.Ref);
        actor.Tell(new Reconcile(Spec(B(), C())), third.Ref);
        devices.ApplyGate.SetResult();

        var one = await first.ExpectMsgAsync<Reconciled>(Patience);
        Assert.Single(one.Reading!.Peers);
        var two = await second.ExpectMsgAsync<Reconciled>(Patience);
        var three = await third.ExpectMsgAsync<Reconciled>(Patience);
        Assert.Equal(2, two.Reading!.Peers.Count);
        Assert.Equal(2, three.Reading!.Peers.Count);
        // Spec(C()) alone was never applied: the device saw B, then B and C.
        Assert.Equal(2, devices.Current.Applied.Count);
        Assert.Equal([peerC.PublicKeyBase64], devices.Current.Applied[1].AddedPeers.Select(p => p.Key));
    }

    [Fact]
    public async Task An_exited_device_is_started_again_and_reconciled()
    {
        var actor = Start();
        await ReconcileAsync(actor, Spec(B(), C()));
        var first = devices.Current;

        first.Kill();

        await AwaitAssertAsync(() =>
        {
            Assert.Equal(2, devices.Created.Count);
            Assert.Equal(2, devices.Current.State.Peers.Count);
            host.Locked(h => Assert.Equal(["10.60.0.1/24"], h.Addresses["wgt0"]));
        }, Patience);
        actor.Tell(ReadInterface.Instance, TestActor);
        Assert.Equal(2, (await ExpectMsgAsync<InterfaceRead>(Patience)).Reading!.Peers.Count);
    }

    [Fact]
    public async Task A_restart_waits_for_the_backoff()
    {
        var actor = Start(new WireGuardActorOptions
        {
            ReconcileInterval = TimeSpan.FromMilliseconds(100),
            RestartBackoffMin = TimeSpan.FromSeconds(2),
            RestartBackoffMax = TimeSpan.FromSeconds(2),
        });
        await ReconcileAsync(actor, Spec(B()));
        Assert.True(await devices.Creations.WaitAsync(Patience));

        devices.Current.Kill();

        // The periodic reconciliation keeps ticking every 100 ms but does not start the device before the backoff ends.
        Assert.False(await devices.Creations.WaitAsync(TimeSpan.FromMilliseconds(1000)), "the device was started again before the backoff");
        Assert.True(await devices.Creations.WaitAsync(Patience), "the device was never started again");
        Assert.Equal(2, devices.Created.Count);
    }

    [Theory]
    [InlineData(0, 500)]
    [InlineData(1, 1000)]
    [InlineData(3, 4000)]
    [InlineData(10, 30000)]
    public void Restart_backoff_doubles_up_to_its_maximum(int attempt, int milliseconds) =>
        Assert.Equal(TimeSpan.FromMilliseconds(milliseconds),
            WireGuardActor.RestartDelay(attempt, TimeSpan.FromMilliseconds(500), TimeSpan.FromSeconds(30)));

    [Fact]
    public async Task Full_tunnel_and_exit_nat_are_set_up_and_teardown_undoes_all_of_it()
    {
        var actor = Start();
        var spec = Spec(B()) with
        {
            FullTunnel = new FullTunnelSpec(),
            ExitNat = new ExitNatSpec(["10.60.0.0/24"], null),
        };

        await ReconcileAsync(actor, spec);

        host.Locked(h =>
        {
            Assert.Equal("1", h.Sysctls[Reconciliation.InterfaceReconciler.IpForward]);
            Assert.Equal("1", h.Sysctls[Reconciliation.InterfaceReconciler.SrcValidMark]);
            Assert.Equal("wgt0", h.TableDefaults[FullTunnelSpec.DefaultTable]);
            Assert.Equal(2, h.Rules.Count);
            // The uplink was detected from the default route.
            Assert.Contains("\"eth0\"", h.NftTables["mydvpn_wgt0"]);
        });
        Assert.Equal(FullTunnelSpec.DefaultFirewallMark, devices.Current.State.FirewallMark);

        actor.Tell(Teardown.Instance, TestActor);
        Assert.Empty((await ExpectMsgAsync<TornDown>(Patience)).Problems);

        host.Locked(h =>
        {
            Assert.Equal("0", h.Sysctls[Reconciliation.InterfaceReconciler.IpForward]);
            Assert.Equal("0", h.Sysctls[Reconciliation.InterfaceReconciler.SrcValidMark]);
            Assert.Empty(h.TableDefaults);
            Assert.Empty(h.Rules);
            Assert.Empty(h.NftTables);
            Assert.Empty(h.Links);
        });
    }

    [Fact]
    public async Task Rules_and_sysctls_that_were_there_before_are_left_alone()
    {
        host.Locked(h =>
        {
            h.Sysctls[Reconciliation.InterfaceReconciler.IpForward] = "1";
            foreach (var rule in PolicyRule.For(new FullTunnelSpec()))
                h.Rules.Add(FakeHostNetwork.ToReading(rule));
        });
        var actor = Start();
        await ReconcileAsync(actor, Spec(B()) with { FullTunnel = new FullTunnelSpec(), ExitNat = new ExitNatSpec(["10.60.0.0/24"], "eth9") });

        actor.Tell(Teardown.Instance, TestActor);
        await ExpectMsgAsync<TornDown>(Patience);

        host.Locked(h =>
        {
            Assert.Equal(2, h.Rules.Count);
            Assert.Equal("1", h.Sysctls[Reconciliation.InterfaceReconciler.IpForward]);
            Assert.DoesNotContain(h.Changes, c => c.StartsWith("rule add", StringComparison.Ordinal));
        });
    }

    [Fact]
    public async Task Dropping_the_full_tunnel_from_the_spec_removes_its_rules_and_restores_src_valid_mark()
    {
        var actor = Start();
        await ReconcileAsync(actor, Spec(B()) with { FullTunnel = new FullTunnelSpec() });

        await ReconcileAsync(actor, Spec(B()));

        host.Locked(h =>
        {
            Assert.Empty(h.Rules);
            Assert.Empty(h.TableDefaults);
            Assert.Equal("0", h.Sysctls[Reconciliation.InterfaceReconciler.SrcValidMark]);
        });
        Assert.Equal(0, devices.Current.State.FirewallMark);
    }

    [Fact]
    public async Task Stopping_the_actor_removes_what_it_created()
    {
        var actor = Start();
        await ReconcileAsync(actor, Spec(B()) with { ExitNat = new ExitNatSpec(["10.60.0.0/24"], "eth0") });

        Watch(actor);
        Sys.Stop(actor);
        await ExpectTerminatedAsync(actor, Patience);

        host.Locked(h =>
        {
            Assert.Empty(h.Links);
            Assert.Empty(h.NftTables);
            Assert.Equal("0", h.Sysctls[Reconciliation.InterfaceReconciler.IpForward]);
        });
        Assert.True(devices.Current.Destroyed);
    }

    [Fact]
    public async Task Read_without_an_interface_answers_null()
    {
        var actor = Start();

        actor.Tell(ReadInterface.Instance, TestActor);

        Assert.Null((await ExpectMsgAsync<InterfaceRead>(Patience)).Reading);
    }

    [Fact]
    public async Task Teardown_supersedes_a_waiting_reconcile()
    {
        var actor = Start();
        var waiting = CreateTestProbe();
        devices.ApplyGate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        actor.Tell(new Reconcile(Spec(B())), TestActor);
        Assert.True(await devices.ApplyStarted.WaitAsync(Patience));

        actor.Tell(new Reconcile(Spec(B(), C())), waiting.Ref);
        actor.Tell(Teardown.Instance, TestActor);
        devices.ApplyGate.SetResult();

        Assert.Contains("superseded", (await waiting.ExpectMsgAsync<ReconcileFailed>(Patience)).Reason);
        await ExpectMsgAsync<Reconciled>(Patience);
        await ExpectMsgAsync<TornDown>(Patience);
        host.Locked(h => Assert.Empty(h.Links));
    }

    [Fact]
    public void Options_that_make_no_sense_are_refused_when_props_are_made()
    {
        var error = Assert.Throws<ArgumentException>(() =>
            WireGuardActor.Props(HostCommand.Host, logger, null, new WireGuardActorOptions { RestartBackoffMax = TimeSpan.FromMilliseconds(1) }));
        Assert.Contains("RestartBackoffMax", error.Message);
    }
}
