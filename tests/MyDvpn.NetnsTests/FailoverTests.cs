using System.Diagnostics;
using MyDvpn.Cli.Demo;
using MyDvpn.Protocol.SuperNode;
using MyDvpn.Testbed;
using Xunit.Abstractions;

namespace MyDvpn.NetnsTests;

/// <summary>
/// Exit failover on the real data plane (issue 12): region us-east has two exits, each behind its own NAT, and the client's
/// tunnel moves from the one it holds to the other — drained by the operator (make-before-break: no ping lost) or crashed
/// (kill -9: traffic comes back through the other exit). The numbers go to the test output.
/// </summary>
[Collection(DataPlaneCollection.Name)]
public sealed class FailoverTests(ITestOutputHelper output)
{
    /// <summary>Pings 0.2 s apart while the exit is drained or killed: 30 s, much longer than a rotation takes.</summary>
    private const int PingCount = 150;

    /// <summary>
    /// Pings a drain may lose: none is the aim (the new exit's peer takes the full tunnel before the old one goes), one is
    /// allowed for a reply in flight through the old exit at the moment its peer is removed.
    /// </summary>
    private const int LostPingsAllowed = 1;

    /// <summary>How long after the exit's agent is killed the client's traffic must leave through the other exit.</summary>
    private static readonly TimeSpan RecoveryBound = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Drain_moves_the_client_to_the_other_exit_while_it_pings_and_no_ping_is_lost()
    {
        await RunAsync(async (network, cancel) =>
        {
            var (from, to) = await ExitsAsync(network, cancel);
            Assert.Equal(from.NatPublic.ToString(), await EchoedAddressAsync(network, TimeSpan.FromSeconds(5), cancel));
            var clientKey = (await network.StatusAsync(TestbedNetwork.ClientId, cancel)).GetProperty("wireguardPublicKey").GetString()!;

            var pinging = PingThroughTheTunnelAsync(network, cancel);
            // The drain starts once the tunnel carries pings, so the rotation happens in the middle of them.
            await network.UntilAsync(() => Task.FromResult(pinging.Replies > 0 || pinging.Completion.IsCompleted), "the first ping is answered", cancel);
            var drainStarted = pinging.Elapsed;
            var drained = await network.Admin.DrainExitAsync(new DrainExitRequest
            {
                Region = TestbedNetwork.ExitRegion,
                ExitPeerId = from.PeerId,
                WaitSeconds = 30,
            }, cancellationToken: cancel);
            var drainEnded = pinging.Elapsed;
            output.WriteLine($"drain of {from.PeerId}: {drained}, from {drainStarted.TotalSeconds:0.0} s to {drainEnded.TotalSeconds:0.0} s of the ping run");
            Assert.True(drained.Complete, $"the drain moved every client: {drained}");
            Assert.Equal(to.PeerId, drained.Clients.Single(c => c.ClientPeerId == TestbedNetwork.ClientId).ToExitPeerId);
            Assert.False(pinging.Completion.IsCompleted, "the pings ran on after the drain (a longer ping run is needed on this machine)");

            var ping = await pinging.Completion;
            output.WriteLine($"pings through the tunnel during the drain: {ping.Transmitted} sent, {ping.Received} answered, " +
                             $"{ping.Lost} lost{(ping.Lost == 0 ? "" : $" (icmp_seq {string.Join(", ", ping.LostSequences)})")}");
            Assert.True(ping.Lost <= LostPingsAllowed, $"{ping.Lost} pings lost while the client moved (at most {LostPingsAllowed}):\n{ping.Output}");

            var client = await network.StatusAsync(TestbedNetwork.ClientId, cancel);
            Assert.Equal(to.PeerId, client.GetProperty("exit").GetProperty("peerId").GetString());
            var rotation = client.GetProperty("lastRotation");
            output.WriteLine($"client's last rotation: {rotation}");
            Assert.Equal(from.PeerId, rotation.GetProperty("from").GetProperty("peerId").GetString());
            Assert.Equal(to.PeerId, rotation.GetProperty("to").GetProperty("peerId").GetString());
            Assert.Equal(to.NatPublic.ToString(), await EchoedAddressAsync(network, TimeSpan.FromSeconds(5), cancel));
            // The assignment the client left is released: the drained exit no longer has it as a WireGuard peer.
            await network.UntilAsync(async () =>
            {
                var shown = await network.WgShowAsync(from.Role, from.Interface, cancel);
                return !shown.Succeeded || !shown.StandardOutput.Contains(clientKey, StringComparison.Ordinal);
            }, $"{from.PeerId} no longer has the client as a WireGuard peer", cancel);
        });
    }

    [Fact]
    public async Task A_killed_exit_agent_moves_the_client_to_the_other_exit_and_traffic_flows_through_it()
    {
        await RunAsync(async (network, cancel) =>
        {
            var (from, to) = await ExitsAsync(network, cancel);
            Assert.Equal(from.NatPublic.ToString(), await EchoedAddressAsync(network, TimeSpan.FromSeconds(5), cancel));
            var killed = false;
            try
            {
                var pinging = PingThroughTheTunnelAsync(network, cancel);
                await network.UntilAsync(() => Task.FromResult(pinging.Replies > 0 || pinging.Completion.IsCompleted), "the first ping is answered", cancel);
                // SIGKILL to the agent and its wireguard-go: the exit is gone as a host crash takes it, nothing torn down.
                var sinceKill = Stopwatch.StartNew();
                network.KillPeer(from.PeerId);
                killed = true;
                await network.UntilAsync(async () => await EchoedAddressAsync(network, TimeSpan.FromSeconds(1), cancel) == to.NatPublic.ToString(),
                    $"the client's traffic leaves through {to.PeerId}", cancel, RecoveryBound);
                var recovered = sinceKill.Elapsed;
                output.WriteLine($"kill -9 of {from.PeerId}'s agent → traffic through {to.PeerId}'s NAT ({to.NatPublic}) after {recovered.TotalSeconds:0.0} s");
                Assert.Empty(await WireGuardGoPidsAsync(network.Testbed.Namespaces.Name(from.Role)));

                var ping = await pinging.Completion;
                output.WriteLine($"pings through the tunnel across the kill: {ping.Transmitted} sent, {ping.Received} answered, {ping.Lost} lost " +
                                 $"(≈ {ping.Lost * 0.2:0.0} s without traffic; icmp_seq {string.Join(", ", ping.LostSequences)})");
                Assert.DoesNotContain(ping.Transmitted, ping.LostSequences);

                var client = await network.StatusAsync(TestbedNetwork.ClientId, cancel);
                Assert.Equal(to.PeerId, client.GetProperty("exit").GetProperty("peerId").GetString());
                output.WriteLine($"client's last rotation: {client.GetProperty("lastRotation")}");
                Assert.Equal(from.PeerId, client.GetProperty("lastRotation").GetProperty("from").GetProperty("peerId").GetString());
                var after = await network.Testbed.PingAsync(TestbedRoles.Client, TestbedAddresses.Router.ToString(), 5, cancel);
                Assert.Equal(5, after.Received);
            }
            finally
            {
                // The killed wireguard-go could not remove its UAPI socket (an agent started again would: a crashed agent's
                // leftovers go first); the file is host-wide, so it goes here.
                if (killed)
                    File.Delete($"/var/run/wireguard/{from.Interface}.sock");
            }
        });
    }

    [Fact]
    public async Task An_exit_whose_data_plane_goes_dark_while_its_control_stream_lives_is_found_stale_by_its_client_and_left()
    {
        await RunAsync(async (network, cancel) =>
        {
            var (from, to) = await ExitsAsync(network, cancel);
            Assert.Equal(from.NatPublic.ToString(), await EchoedAddressAsync(network, TimeSpan.FromSeconds(5), cancel));
            var pinging = PingThroughTheTunnelAsync(network, cancel);
            await network.UntilAsync(() => Task.FromResult(pinging.Replies > 0 || pinging.Completion.IsCompleted), "the first ping is answered", cancel);

            // No UDP reaches or leaves the serving exit's NAT: neither the client nor a relay leg reaches its WireGuard, while
            // its agent's control stream (TCP) lives on and it keeps announcing itself.
            var sinceDark = Stopwatch.StartNew();
            await network.Testbed.DropUdpOfAsync(from.NatPublic, cancel);
            try
            {
                await network.UntilAsync(async () => await EchoedAddressAsync(network, TimeSpan.FromSeconds(1), cancel) == to.NatPublic.ToString(),
                    $"the client's traffic leaves through {to.PeerId}", cancel, TimeSpan.FromSeconds(60));
                output.WriteLine($"{from.PeerId}'s UDP dropped → traffic through {to.PeerId} after {sinceDark.Elapsed.TotalSeconds:0.0} s");
            }
            finally
            {
                await network.Testbed.AllowUdpBetweenNatsAsync(cancel);
            }
            await pinging.StopAsync();

            var region = NetworkRun.Log(network, "sn-us-1");
            Assert.Contains($"Exit {from.PeerId} is stale", region, StringComparison.Ordinal);
            var pool = await network.Admin.ListExitsAsync(new ListExitsRequest { Region = TestbedNetwork.ExitRegion }, cancellationToken: cancel);
            Assert.Equal("stale", pool.Exits.Single(e => e.PeerId == from.PeerId).State);
            var client = await network.StatusAsync(TestbedNetwork.ClientId, cancel);
            Assert.Equal(to.PeerId, client.GetProperty("exit").GetProperty("peerId").GetString());
            Assert.Contains("is stale", client.GetProperty("lastRotation").GetProperty("reason").GetString(), StringComparison.Ordinal);
        });
    }

    [Fact]
    public async Task A_killed_exit_no_other_exit_replaces_gives_its_client_no_exit_available_and_nothing_is_left_half_set_up()
    {
        // One exit only: the region has no spare.
        await NetworkRun.RunAsync(output, async (network, cancel) =>
        {
            var exit = network.ExitHostOf(TestbedNetwork.ExitId);
            Assert.Equal(exit.NatPublic.ToString(), await EchoedAddressAsync(network, TimeSpan.FromSeconds(5), cancel));
            try
            {
                // The client keeps sending through its tunnel: its path test then finds the exit silent.
                var pinging = PingThroughTheTunnelAsync(network, cancel);
                await network.UntilAsync(() => Task.FromResult(pinging.Replies > 0 || pinging.Completion.IsCompleted), "the first ping is answered", cancel);
                var sinceKill = Stopwatch.StartNew();
                network.KillPeer(exit.PeerId);

                await network.UntilAsync(async () => (await network.StatusAsync(TestbedNetwork.ClientId, cancel)).GetProperty("exit").ValueKind
                                                     == System.Text.Json.JsonValueKind.Null,
                    "the client holds no exit", cancel, RecoveryBound);
                output.WriteLine($"kill -9 of the only exit → the client gave its exit up after {sinceKill.Elapsed.TotalSeconds:0.0} s");
                var session = NetworkRun.Log(network, "sn-eu-1");
                Assert.Contains("no other exit of region us-east took the client, and the client hears nothing from it", session, StringComparison.Ordinal);
                // It asks again, and hears that no exit is there for now (and keeps asking, with its backoff).
                await network.UntilAsync(() => Task.FromResult(NetworkRun.Log(network, TestbedNetwork.ClientId).Contains("No exit in region us-east for now", StringComparison.Ordinal)),
                    "the client asked again and was told no exit is available", cancel);
                Assert.Contains("NO_EXIT_AVAILABLE", NetworkRun.Log(network, TestbedNetwork.ClientId), StringComparison.Ordinal);

                // Nothing half set up: no assignment in the pool or the client's session, no WireGuard peer on the client.
                await network.UntilAsync(async () =>
                {
                    var pool = await network.Admin.ListExitsAsync(new ListExitsRequest { Region = TestbedNetwork.ExitRegion }, cancellationToken: cancel);
                    var sessions = await network.Admin.ListSessionsAsync(new Protocol.Admin.ListSessionsRequest { Region = TestbedNetwork.ClientRegion },
                        cancellationToken: cancel);
                    return pool.Assignments.Count == 0 && sessions.Sessions.Single(s => s.PeerId == TestbedNetwork.ClientId).Assignments.Count == 0;
                }, "neither the exit pool nor the client's session holds an assignment", cancel);
                var dump = await network.WgShowAsync(TestbedRoles.Client, network.ClientInterface, cancel);
                Assert.Empty(dump.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries).Skip(1));
                await pinging.StopAsync();
            }
            finally
            {
                File.Delete($"/var/run/wireguard/{exit.Interface}.sock");
            }
        });
    }

    private Task RunAsync(Func<TestbedNetwork, CancellationToken, Task> test) => NetworkRun.RunAsync(output, test, secondExit: true);

    /// <summary>The exit the client holds and the other one.</summary>
    private async Task<(ExitHost From, ExitHost To)> ExitsAsync(TestbedNetwork network, CancellationToken cancel)
    {
        var (from, to) = await network.ClientExitsAsync(cancel);
        output.WriteLine($"the client holds {from.PeerId} (NAT {from.NatPublic}); the other exit is {to.PeerId} (NAT {to.NatPublic})");
        return (from, to);
    }

    /// <summary>The wireguard-go processes running in a namespace.</summary>
    private static async Task<IReadOnlyList<int>> WireGuardGoPidsAsync(string ns)
    {
        var found = new List<int>();
        foreach (var pid in await NetnsTestHelpers.PidsInAsync(ns))
        {
            try
            {
                if ((await File.ReadAllTextAsync($"/proc/{pid}/comm")).Trim() == "wireguard-go")
                    found.Add(pid);
            }
            catch (IOException)
            {
                // Gone meanwhile.
            }
        }
        return found;
    }

    private static async Task<string> EchoedAddressAsync(TestbedNetwork network, TimeSpan timeout, CancellationToken cancel) =>
        (await network.Testbed.HttpGetAsync(TestbedRoles.Client, network.Testbed.EchoUrl, timeout, cancel)).Trim();

    /// <summary>
    /// 150 pings 0.2 s apart from the client to the router (through the tunnel) in the background (see <see cref="BackgroundPing"/>):
    /// ping sends until 150 are answered or its deadline (40 s) passes, so a loss shows as more sent than answered.
    /// </summary>
    private static BackgroundPing PingThroughTheTunnelAsync(TestbedNetwork network, CancellationToken cancel) =>
        BackgroundPing.Start(network.Testbed, TestbedRoles.Client, TestbedAddresses.Router.ToString(), PingCount, TimeSpan.FromSeconds(0.2), cancel);
}
