using System.Globalization;
using System.Net;
using MyDvpn.Cli.Demo;
using MyDvpn.Protocol.Admin;
using MyDvpn.Protocol.SuperNode;
using MyDvpn.Testbed;
using Xunit.Abstractions;
using Command = MyDvpn.Protocol.Control.Command;
using Disconnect = MyDvpn.Protocol.Control.Disconnect;

namespace MyDvpn.NetnsTests;

/// <summary>
/// The relay end to end: with UDP between the exit's and the client's NAT routers dropped on the internet router, the
/// client's session chains a leg on sn-eu-1 to a leg on sn-us-1 and points both WireGuard peers at them.
/// </summary>
[Collection(DataPlaneCollection.Name)]
public sealed class RelayTests(ITestOutputHelper output)
{
    private const string PacketsToPartner = "mydvpn_relay_packets_total{direction=\"to_partner\"}";
    private const string LegsOpen = "mydvpn_relay_legs_open";

    [Theory]
    [InlineData(false)] // the SuperNodes' processes forward every datagram
    [InlineData(true)] // their kernels forward the established legs (Super:Relay:KernelOffload)
    public async Task With_UDP_between_the_NATs_dropped_the_client_reaches_the_internet_through_relay_legs_on_both_SuperNodes(bool kernelOffload)
    {
        await RunAsync(dropUdpBetweenNats: true, relayKernelOffload: kernelOffload, test: async (network, cancel) =>
        {
            await UntilRelayedAsync(network, cancel);

            var exitKey = (await network.StatusAsync(TestbedNetwork.ExitId, cancel)).GetProperty("wireguardPublicKey").GetString()!;
            var dump = await network.WgShowAsync(TestbedRoles.Client, network.ClientInterface, cancel);
            var exitLine = dump.StandardOutput.Split('\n').Skip(1).Select(l => l.Split('\t')).Single(f => f[0] == exitKey);
            Assert.StartsWith($"{TestbedAddresses.SnA}:", exitLine[2], StringComparison.Ordinal);
            // The agent writes its state once the change is made on the host: traffic can take the relay before the
            // status says so.
            System.Text.Json.JsonElement status = default;
            await network.UntilAsync(async () => (status = await network.StatusAsync(TestbedNetwork.ClientId, cancel)).GetProperty("path").GetString() == "relay",
                "the client's status shows the relay path", cancel, TimeSpan.FromSeconds(15));
            Assert.Equal("relay", status.GetProperty("path").GetString());

            // Both SuperNodes forwarded the tunnel's packets (what their kernels forward is counted at the next reading of
            // the kernel's counters), and the drop rule really dropped the direct attempts.
            await network.UntilAsync(async () => await MetricAsync(network, TestbedAddresses.SnA, PacketsToPartner, cancel) > 0
                                                 && await MetricAsync(network, TestbedAddresses.SnB, PacketsToPartner, cancel) > 0,
                "both SuperNodes' metrics count relayed packets", cancel, TimeSpan.FromSeconds(15));
            Assert.True(await network.Testbed.DroppedUdpBetweenNatsAsync(cancel) > 0, "direct WireGuard packets were dropped between the NATs");
            var sessions = await network.Admin.ListSessionsAsync(new ListSessionsRequest { Region = TestbedNetwork.ClientRegion }, cancellationToken: cancel);
            var assignment = Assert.Single(sessions.Sessions.Single(s => s.PeerId == TestbedNetwork.ClientId).Assignments);
            Assert.Equal("relay", assignment.Path);
            Assert.StartsWith($"{TestbedAddresses.SnA}:", assignment.ClientRelayLeg, StringComparison.Ordinal);
            Assert.StartsWith($"{TestbedAddresses.SnB}:", assignment.ExitRelayLeg, StringComparison.Ordinal);
            if (kernelOffload)
            {
                // Each SuperNode's kernel forwards its leg's datagrams once it is offloaded, which is after the leg learned
                // its peer from a first datagram: the few that set the path up may all have gone through user space (the
                // counters read 0 right after the first relayed request, then counted the next one). So traffic goes
                // through the tunnel until the relay tables counted some, or the deadline says they never will.
                var tables = new Dictionary<string, string>();
                var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
                do
                {
                    try
                    {
                        await network.Testbed.HttpGetAsync(TestbedRoles.Client, network.Testbed.EchoUrl, TimeSpan.FromSeconds(3), cancel);
                    }
                    catch (Exception ex) when (ex is TimeoutException or TestbedException)
                    {
                        // Only traffic: whether the kernel counted it is what the test looks at.
                        output.WriteLine($"a request through the tunnel failed: {ex.Message}");
                    }
                    foreach (var role in new[] { TestbedRoles.SnA, TestbedRoles.SnB })
                        tables[role] = await network.Testbed.For(role).RunCheckedAsync("nft", ["list", "table", "ip", "mydvpn_relay_40000"], cancellationToken: cancel);
                }
                while (tables.Values.Any(table => KernelForwarded(table) == 0) && DateTime.UtcNow < deadline);

                // Each SuperNode's kernel forwarded datagrams of its leg: its relay table's counters counted them.
                foreach (var (role, table) in tables)
                    Assert.True(KernelForwarded(table) > 0, $"the kernel in {role} forwarded nothing:\n{table}");
            }
        });
    }

    [Fact]
    public async Task Without_the_drop_rule_the_path_stays_direct_and_no_relay_leg_is_opened()
    {
        await RunAsync(dropUdpBetweenNats: false, async (network, cancel) =>
        {
            await UntilDirectAsync(network, cancel);
            Assert.Equal("direct", (await network.StatusAsync(TestbedNetwork.ClientId, cancel)).GetProperty("path").GetString());
            Assert.Equal(0, await MetricAsync(network, TestbedAddresses.SnA, LegsOpen, cancel));
            Assert.Equal(0, await MetricAsync(network, TestbedAddresses.SnB, LegsOpen, cancel));
            Assert.DoesNotContain("Relay leg", Log(network, "sn-us-1"), StringComparison.Ordinal);
        });
    }

    [Fact]
    public async Task A_direct_path_that_breaks_after_it_worked_is_relayed_and_the_tunnel_works_again()
    {
        await RunAsync(dropUdpBetweenNats: false, async (network, cancel) =>
        {
            await UntilDirectAsync(network, cancel);

            // The path between the NATs breaks; the client keeps sending (the requests below) and hears nothing back.
            await network.Testbed.DropUdpBetweenNatsAsync(cancel);
            var broken = System.Diagnostics.Stopwatch.StartNew();
            await UntilRelayedAsync(network, cancel);
            output.WriteLine($"the tunnel works again through the relay {broken.Elapsed.TotalSeconds:0.0} s after the path broke");

            // The client tested the silent path itself (a ping of the exit through the tunnel) and reported it at once.
            Assert.Contains("and its ping of the exit went unanswered", Log(network, "sn-eu-1"), StringComparison.Ordinal);
            Assert.Equal("relay", (await AssignmentAsync(network, cancel)).Path);
            Assert.True(await network.Testbed.DroppedUdpBetweenNatsAsync(cancel) > 0, "direct WireGuard packets were dropped between the NATs");
        });
    }

    [Fact]
    public async Task A_direct_path_that_breaks_is_relayed_tried_again_on_a_backoff_and_direct_again_once_healed_with_both_legs_closed()
    {
        // Tries every 5 s, then 10 s (60 s and up to 10 min by default), so that the test sees a failed try and a good one.
        var tries = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["MYDVPN__SUPER__EXITS__DIRECTRETRY"] = "00:00:05",
            ["MYDVPN__SUPER__EXITS__DIRECTRETRYMAX"] = "00:00:10",
        };
        await RunAsync(dropUdpBetweenNats: false, superNodeEnvironment: tries, test: async (network, cancel) =>
        {
            await UntilDirectAsync(network, cancel);
            await network.Testbed.DropUdpBetweenNatsAsync(cancel);
            await UntilRelayedAsync(network, cancel);
            Assert.Equal("relay", (await AssignmentAsync(network, cancel)).Path);

            // While UDP between the NATs is still dropped, a try fails and the chain carries the client again.
            await network.UntilAsync(() => Task.FromResult(Log(network, "sn-eu-1").Contains("back to the relay chain, next try of the direct path in 10 s",
                    StringComparison.Ordinal)),
                "a try of the direct path fails while UDP between the NATs is dropped", cancel, TimeSpan.FromSeconds(60));
            await UntilRelayedAsync(network, cancel);
            Assert.Equal("relay", (await AssignmentAsync(network, cancel)).Path);

            await network.Testbed.AllowUdpBetweenNatsAsync(cancel);
            var healed = System.Diagnostics.Stopwatch.StartNew();
            await network.UntilAsync(async () => (await AssignmentAsync(network, cancel)).Path == "direct",
                "the client's session goes back to the direct path", cancel, TimeSpan.FromSeconds(60));
            output.WriteLine($"direct again {healed.Elapsed.TotalSeconds:0.0} s after the drop was removed");
            Assert.Contains("works again", Log(network, "sn-eu-1"), StringComparison.Ordinal);

            // The legs are closed on both SuperNodes, the client's WireGuard sends to the exit's NAT, and traffic flows.
            await network.UntilAsync(async () => await MetricAsync(network, TestbedAddresses.SnA, LegsOpen, cancel) == 0
                                                 && await MetricAsync(network, TestbedAddresses.SnB, LegsOpen, cancel) == 0,
                "no relay leg is open on either SuperNode", cancel);
            var exitKey = (await network.StatusAsync(TestbedNetwork.ExitId, cancel)).GetProperty("wireguardPublicKey").GetString()!;
            var dump = await network.WgShowAsync(TestbedRoles.Client, network.ClientInterface, cancel);
            var exitLine = dump.StandardOutput.Split('\n').Skip(1).Select(l => l.Split('\t')).Single(f => f[0] == exitKey);
            Assert.Equal($"{TestbedAddresses.ExitNatPublic}:51820", exitLine[2]);
            Assert.Equal(TestbedAddresses.ExitNatPublic.ToString(),
                (await network.Testbed.HttpGetAsync(TestbedRoles.Client, network.Testbed.EchoUrl, TimeSpan.FromSeconds(5), cancel)).Trim());
            await network.UntilAsync(async () => (await network.StatusAsync(TestbedNetwork.ClientId, cancel)).GetProperty("path").GetString() == "direct",
                "the client's status shows the direct path", cancel, TimeSpan.FromSeconds(15));
        });
    }

    [Fact]
    public async Task After_a_disconnect_no_relay_leg_remains_on_either_SuperNode()
    {
        await RunAsync(dropUdpBetweenNats: true, async (network, cancel) =>
        {
            await UntilRelayedAsync(network, cancel);
            Assert.True(await MetricAsync(network, TestbedAddresses.SnA, LegsOpen, cancel) > 0);
            Assert.True(await MetricAsync(network, TestbedAddresses.SnB, LegsOpen, cancel) > 0);

            await network.Admin.IssueCommandAsync(new AdminCommandRequest
            {
                Region = TestbedNetwork.ClientRegion,
                Request = new IssueCommandRequest
                {
                    PeerId = TestbedNetwork.ClientId,
                    Command = new Command { Disconnect = new Disconnect { Reason = "relay teardown test" } },
                    Wait = true,
                },
            }, cancellationToken: cancel);

            await network.UntilAsync(async () => await MetricAsync(network, TestbedAddresses.SnA, LegsOpen, cancel) == 0
                                                 && await MetricAsync(network, TestbedAddresses.SnB, LegsOpen, cancel) == 0,
                "no relay leg is open on either SuperNode", cancel);
        });
    }

    [Theory]
    [InlineData("sn-us-1")] // holds the exit's leg: it tells the client's session, which chains a new exit leg
    [InlineData("sn-eu-1")] // holds the client's leg and session: the client comes back, its session finds no leg here
    public async Task A_SuperNode_restart_while_relayed_ends_with_a_new_chain_and_the_tunnel_working(string restarted)
    {
        await RunAsync(dropUdpBetweenNats: true, async (network, cancel) =>
        {
            await UntilRelayedAsync(network, cancel);
            var (restartedAddress, keptAddress) = restarted == "sn-us-1" ? (TestbedAddresses.SnB, TestbedAddresses.SnA) : (TestbedAddresses.SnA, TestbedAddresses.SnB);
            var keptBefore = await MetricAsync(network, keptAddress, PacketsToPartner, cancel);

            await network.RestartNodeAsync(restarted, cancel);

            await UntilRelayedAsync(network, cancel);
            var session = Log(network, "sn-eu-1");
            if (restarted == "sn-us-1")
            {
                // The stopping SuperNode told the session; the client's own path test (its leg went silent) may have started
                // the new chain first, and the news then found it under way.
                Assert.Contains("telling the sessions of 1 chains to move their exit leg", Log(network, "sn-us-1"), StringComparison.Ordinal);
                Assert.True(session.Contains("lets its leg of the chain go", StringComparison.Ordinal)
                            || session.Contains("and its ping of the exit went unanswered", StringComparison.Ordinal),
                    "the session set the chain up again on the SuperNode's news or on the client's failed path test");
            }
            else
            {
                Assert.Contains("is not open on this SuperNode", session, StringComparison.Ordinal);
            }
            // The restarted SuperNode's counters began at zero: its new leg carries the tunnel, and the other one's leg still does.
            Assert.True(await MetricAsync(network, restartedAddress, PacketsToPartner, cancel) > 0, $"{restarted} relays through a new leg");
            Assert.True(await MetricAsync(network, keptAddress, PacketsToPartner, cancel) > keptBefore, "the other SuperNode relays after the restart");
            Assert.Equal("relay", (await network.StatusAsync(TestbedNetwork.ClientId, cancel)).GetProperty("path").GetString());
        });
    }

    [Fact]
    public async Task A_stopping_SuperNode_hands_its_exit_leg_to_the_other_SuperNode_of_the_region_without_waiting_for_a_retry()
    {
        await RunAsync(dropUdpBetweenNats: true, exitRegionSuperNodes: 2, test: async (network, cancel) =>
        {
            await UntilRelayedAsync(network, cancel);
            var before = await AssignmentAsync(network, cancel);
            // The chain's exit leg is on whichever SuperNode of us-east answered OpenRelay first: that one stops.
            var (holder, other, otherAddress) = before.ExitRelayLeg.StartsWith($"{TestbedAddresses.SnB}:", StringComparison.Ordinal)
                ? ("sn-us-1", TestbedNetwork.SecondExitRegionSuperNode, TestbedAddresses.SnB2)
                : (TestbedNetwork.SecondExitRegionSuperNode, "sn-us-1", TestbedAddresses.SnB);
            output.WriteLine($"exit leg {before.ExitRelayLeg} on {holder}; stopping it");

            var stopping = System.Diagnostics.Stopwatch.StartNew();
            await network.StopNodeAsync(holder);
            await UntilRelayedAsync(network, cancel);
            output.WriteLine($"{holder} stopped and the tunnel works again {stopping.Elapsed.TotalSeconds:0.0} s after the SIGTERM");

            var after = await AssignmentAsync(network, cancel);
            output.WriteLine($"admin sessions: client leg {after.ClientRelayLeg}, exit leg {after.ExitRelayLeg}, path {after.Path}");
            Assert.StartsWith($"{otherAddress}:", after.ExitRelayLeg, StringComparison.Ordinal);
            Assert.Equal(before.ClientRelayLeg, after.ClientRelayLeg);
            Assert.Contains("telling the sessions of 1 chains to move their exit leg", Log(network, holder), StringComparison.Ordinal);
            var session = Log(network, "sn-eu-1");
            Assert.Contains($"SuperNode {holder} lets its leg of the chain go", session, StringComparison.Ordinal);
            // The region's other SuperNode took the leg at once: no attempt failed and waited for Super:Exits:RelayRetry.
            Assert.DoesNotContain("could not be set up", session, StringComparison.Ordinal);
            Assert.True(await MetricAsync(network, otherAddress, PacketsToPartner, cancel) > 0, $"{other} relays the chain");
        });
    }

    [Fact]
    public async Task A_SuperNode_killed_under_an_exit_leg_has_the_chain_rebuilt_through_another_SuperNode_of_the_region()
    {
        // Three SuperNodes: whichever one holds the leg, the other two are the majority and keep the region (of two, the
        // split-brain resolver keeps the side with the lowest address, so the crash of that one takes the other down too).
        await RunAsync(dropUdpBetweenNats: true, exitRegionSuperNodes: 3, test: async (network, cancel) =>
        {
            await UntilRelayedAsync(network, cancel);
            var before = await AssignmentAsync(network, cancel);
            var (victim, _, _) = TestbedNetwork.ExitRegionSuperNodes.Single(superNode =>
                before.ExitRelayLeg.StartsWith($"{superNode.Address}:", StringComparison.Ordinal));
            output.WriteLine($"exit leg {before.ExitRelayLeg} on {victim}; killing it");

            var killed = System.Diagnostics.Stopwatch.StartNew();
            network.KillNode(victim);
            await UntilRelayedAsync(network, cancel);
            output.WriteLine($"{victim} killed; the tunnel works again {killed.Elapsed.TotalSeconds:0.0} s later");

            var after = await AssignmentAsync(network, cancel);
            output.WriteLine($"admin sessions: client leg {after.ClientRelayLeg}, exit leg {after.ExitRelayLeg}, path {after.Path}");
            var (holder, _, holderAddress) = TestbedNetwork.ExitRegionSuperNodes.Single(superNode =>
                after.ExitRelayLeg.StartsWith($"{superNode.Address}:", StringComparison.Ordinal));
            Assert.NotEqual(victim, holder);
            Assert.Equal(before.ClientRelayLeg, after.ClientRelayLeg);
            // A survivor told the session from the region's membership. The client's own path test may have been first: both
            // are answers to the crash (whichever comes first sets the chain up; the other finds it under way or moved). When
            // the region's exit pool lived on the killed SuperNode, OpenRelay waits for it to be re-homed after the split-brain
            // resolver downed the node, and a later signal may set the chain up: the time is printed, not asserted.
            // (The client's path test can set the chain up before the failure detector finds the member unreachable: wait for
            // the survivor's news rather than expect it by then.)
            await network.UntilAsync(() => Task.FromResult(TestbedNetwork.ExitRegionSuperNodes.Where(superNode => superNode.Id != victim).Any(superNode =>
                    Log(network, superNode.Id).Contains("telling the sessions of 1 relay chains whose exit leg it held", StringComparison.Ordinal))),
                "a surviving SuperNode of the region tells the chain's session", cancel, TimeSpan.FromSeconds(30));
            // The process is gone and its host refuses its cluster port: a survivor downed it without waiting for the
            // split-brain resolver, so the region's exit pool and the killed node's shards moved within seconds.
            Assert.Contains(TestbedNetwork.ExitRegionSuperNodes.Where(superNode => superNode.Id != victim), superNode =>
                Log(network, superNode.Id).Contains("is gone: its host refused 2 connections in a row to its cluster port", StringComparison.Ordinal));
            var session = Log(network, "sn-eu-1");
            Assert.True(session.Contains($"SuperNode {victim} lets its leg of the chain go (SuperNode {victim} is unreachable", StringComparison.Ordinal)
                        || session.Contains($"SuperNode {victim} lets its leg of the chain go (SuperNode {victim} was downed", StringComparison.Ordinal)
                        || session.Contains("and its ping of the exit went unanswered", StringComparison.Ordinal),
                "the session set the chain up again on the survivor's news or on the client's failed path test");
            Assert.True(await MetricAsync(network, holderAddress, PacketsToPartner, cancel) > 0, $"{holder} relays the chain");
        });
    }

    /// <summary>The packets a relay table's named counters counted (<c>nft list table</c>).</summary>
    private static long KernelForwarded(string table) =>
        System.Text.RegularExpressions.Regex.Matches(table, @"packets (\d+)").Sum(m => long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture));

    private static async Task<ExitAssignment> AssignmentAsync(TestbedNetwork network, CancellationToken cancel)
    {
        var sessions = await network.Admin.ListSessionsAsync(new ListSessionsRequest { Region = TestbedNetwork.ClientRegion }, cancellationToken: cancel);
        return Assert.Single(sessions.Sessions.Single(s => s.PeerId == TestbedNetwork.ClientId).Assignments);
    }

    /// <summary>The session decides once the client reports its handshake (the decision is in sn-eu-1's log); traffic leaves through the exit.</summary>
    private static async Task UntilDirectAsync(TestbedNetwork network, CancellationToken cancel)
    {
        await network.UntilAsync(() => Task.FromResult(Log(network, "sn-eu-1").Contains("direct path to exit", StringComparison.OrdinalIgnoreCase)),
            "sn-eu-1 sees the direct path work", cancel);
        Assert.Equal(TestbedAddresses.ExitNatPublic.ToString(),
            (await network.Testbed.HttpGetAsync(TestbedRoles.Client, network.Testbed.EchoUrl, TimeSpan.FromSeconds(5), cancel)).Trim());
    }

    private static async Task UntilRelayedAsync(TestbedNetwork network, CancellationToken cancel) =>
        await network.UntilAsync(async () =>
                (await network.Testbed.HttpGetAsync(TestbedRoles.Client, network.Testbed.EchoUrl, TimeSpan.FromSeconds(3), cancel)).Trim()
                == TestbedAddresses.ExitNatPublic.ToString(),
            "the client's traffic leaves through the exit, relayed", cancel, TimeSpan.FromSeconds(90));

    /// <summary>A series of the SuperNode's /metrics (on its metrics port, read from the router's namespace); 0 when absent.</summary>
    private static async Task<double> MetricAsync(TestbedNetwork network, IPAddress superNode, string series, CancellationToken cancel)
    {
        var text = await network.Testbed.HttpGetAsync(TestbedRoles.Internet, $"http://{superNode}:9100/metrics", TimeSpan.FromSeconds(5), cancel);
        var line = text.Split('\n').FirstOrDefault(l => l.StartsWith(series + " ", StringComparison.Ordinal));
        return line is null ? 0 : double.Parse(line[(series.Length + 1)..], CultureInfo.InvariantCulture);
    }

    private static string Log(TestbedNetwork network, string node) => NetworkRun.Log(network, node);

    private Task RunAsync(bool dropUdpBetweenNats, Func<TestbedNetwork, CancellationToken, Task> test, int exitRegionSuperNodes = 1,
        bool relayKernelOffload = false, IReadOnlyDictionary<string, string>? superNodeEnvironment = null) =>
        NetworkRun.RunAsync(output, test, dropUdpBetweenNats, exitRegionSuperNodes, relayKernelOffload, superNodeEnvironment: superNodeEnvironment);
}
