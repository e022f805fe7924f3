using System.Text.Json;
using MyDvpn.Cli.Demo;
using MyDvpn.Protocol.Admin;
using MyDvpn.Protocol.SuperNode;
using MyDvpn.Testbed;
using Xunit.Abstractions;
using Command = MyDvpn.Protocol.Control.Command;
using Disconnect = MyDvpn.Protocol.Control.Disconnect;

namespace MyDvpn.NetnsTests;

/// <summary>
/// The data plane end to end: every node a real <c>mydvpn</c> process in its namespace of a <see cref="NetnsTestbed"/>,
/// the exit and the client behind their own NAT routers, WireGuard through wireguard-go, read back with wireguard-tools.
/// </summary>
[Collection(DataPlaneCollection.Name)]
public sealed class DataPlaneTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Http = TimeSpan.FromSeconds(5);

    [Fact]
    public async Task Client_traffic_leaves_through_the_exit_and_wireguard_tools_see_both_keys()
    {
        await RunAsync(async (network, cancel) =>
        {
            var testbed = network.Testbed;
            Assert.Equal(TestbedAddresses.ExitNatPublic.ToString(), await EchoedAddressAsync(network, cancel));

            var client = await network.StatusAsync(TestbedNetwork.ClientId, cancel);
            var exit = await network.StatusAsync(TestbedNetwork.ExitId, cancel);
            var clientKey = client.GetProperty("wireguardPublicKey").GetString()!;
            var exitKey = exit.GetProperty("wireguardPublicKey").GetString()!;
            var clientSeen = WgPeer(await network.WgShowAsync(TestbedRoles.Client, network.ClientInterface, cancel), exitKey);
            var exitSeen = WgPeer(await network.WgShowAsync(TestbedRoles.Exit, network.ExitInterface, cancel), clientKey);
            Assert.True(clientSeen.LatestHandshake > DateTimeOffset.UtcNow.AddMinutes(-2), $"client's handshake with the exit: {clientSeen.LatestHandshake}");
            Assert.True(exitSeen.LatestHandshake > DateTimeOffset.UtcNow.AddMinutes(-2), $"exit's handshake with the client: {exitSeen.LatestHandshake}");
            Assert.Equal($"{TestbedAddresses.ExitNatPublic}:51820", clientSeen.Endpoint);
            // The client's packets reach the exit from the client NAT's public address.
            Assert.StartsWith($"{TestbedAddresses.ClientNatPublic}:", exitSeen.Endpoint, StringComparison.Ordinal);

            // The agents read the same from their interfaces.
            await network.UntilAsync(async () =>
            {
                var status = await network.StatusAsync(TestbedNetwork.ClientId, cancel);
                return status.GetProperty("path").GetString() == "direct"
                       && status.GetProperty("lastHandshake").ValueKind == JsonValueKind.String
                       && status.GetProperty("rxBytes").GetUInt64() > 0;
            }, "mydvpn status shows the handshake and bytes", cancel);

            // The control stream stays outside the tunnel: sn-eu-1 sees the client from its own NAT, not the exit's.
            var sessions = await network.Admin.ListSessionsAsync(new ListSessionsRequest { Region = TestbedNetwork.ClientRegion }, cancellationToken: cancel);
            Assert.Equal(TestbedAddresses.ClientNatPublic.ToString(), sessions.Sessions.Single(s => s.PeerId == TestbedNetwork.ClientId).RemoteAddress);
            var ping = await testbed.PingAsync(TestbedRoles.Client, TestbedAddresses.Router.ToString(), 3, cancel);
            Assert.Equal(3, ping.Received);
        });
    }

    [Fact]
    public async Task Disconnect_removes_the_peer_on_both_sides_and_traffic_leaves_through_the_client_NAT_again()
    {
        await RunAsync(async (network, cancel) =>
        {
            Assert.Equal(TestbedAddresses.ExitNatPublic.ToString(), await EchoedAddressAsync(network, cancel));
            var clientKey = (await network.StatusAsync(TestbedNetwork.ClientId, cancel)).GetProperty("wireguardPublicKey").GetString()!;

            var answer = await network.Admin.IssueCommandAsync(new AdminCommandRequest
            {
                Region = TestbedNetwork.ClientRegion,
                Request = new IssueCommandRequest
                {
                    PeerId = TestbedNetwork.ClientId,
                    Command = new Command { Disconnect = new Disconnect { Reason = "netns test" } },
                    Wait = true,
                },
            }, cancellationToken: cancel);
            Assert.Equal(IssueCommandResponse.OutcomeOneofCase.Response, answer.OutcomeCase);

            await network.UntilAsync(async () =>
            {
                var shown = await network.WgShowAsync(TestbedRoles.Exit, network.ExitInterface, cancel);
                // No client left: the exit's interface goes away altogether.
                return !shown.Succeeded || !shown.StandardOutput.Contains(clientKey, StringComparison.Ordinal);
            }, "the exit no longer has the client as a WireGuard peer", cancel);
            var clientLink = await network.Testbed.For(TestbedRoles.Client).RunAsync("ip", ["link", "show", network.ClientInterface], cancellationToken: cancel);
            Assert.False(clientLink.Succeeded, $"the client's interface is gone: {clientLink.StandardOutput}");
            Assert.Equal(TestbedAddresses.ClientNatPublic.ToString(), await EchoedAddressAsync(network, cancel));
        });
    }

    [Fact]
    public async Task A_killed_wireguard_go_on_the_exit_is_restarted_and_traffic_resumes()
    {
        await RunAsync(async (network, cancel) =>
        {
            Assert.Equal(TestbedAddresses.ExitNatPublic.ToString(), await EchoedAddressAsync(network, cancel));
            var pid = await WireGuardGoPidAsync(network.Testbed.Namespaces.Exit);
            await MyDvpn.HostOs.HostCommand.Host.RunCheckedAsync("kill", ["-9", pid.ToString(System.Globalization.CultureInfo.InvariantCulture)], cancellationToken: cancel);

            await network.UntilAsync(async () => await WireGuardGoPidAsync(network.Testbed.Namespaces.Exit) is var again && again != pid && again != 0,
                "the exit's WireGuardActor starts wireguard-go again", cancel);
            await network.UntilAsync(async () => await EchoedAddressAsync(network, cancel) == TestbedAddresses.ExitNatPublic.ToString(),
                "the client's traffic leaves through the exit again", cancel, TimeSpan.FromSeconds(90));
        });
    }

    private Task RunAsync(Func<TestbedNetwork, CancellationToken, Task> test) => NetworkRun.RunAsync(output, test);

    private static async Task<string> EchoedAddressAsync(TestbedNetwork network, CancellationToken cancel) =>
        (await network.Testbed.HttpGetAsync(TestbedRoles.Client, network.Testbed.EchoUrl, Http, cancel)).Trim();

    private static async Task<int> WireGuardGoPidAsync(string ns)
    {
        foreach (var pid in await NetnsTestHelpers.PidsInAsync(ns))
        {
            try
            {
                if ((await File.ReadAllTextAsync($"/proc/{pid}/comm")).Trim() == "wireguard-go")
                    return pid;
            }
            catch (IOException)
            {
                // Gone meanwhile.
            }
        }
        return 0;
    }

    private sealed record WgShown(string Endpoint, DateTimeOffset LatestHandshake);

    /// <summary>The peer's line of <c>wg show IFACE dump</c>: public key, preshared key, endpoint, allowed ips, latest handshake, rx, tx, keepalive.</summary>
    private static WgShown WgPeer(MyDvpn.HostOs.CommandResult dump, string publicKey)
    {
        Assert.True(dump.Succeeded, dump.StandardError);
        var line = dump.StandardOutput.Split('\n').Skip(1).Select(l => l.Split('\t')).FirstOrDefault(f => f[0] == publicKey);
        Assert.True(line is not null, $"wg show lists no peer {publicKey}:\n{dump.StandardOutput}");
        return new WgShown(line[2], DateTimeOffset.FromUnixTimeSeconds(long.Parse(line[4], System.Globalization.CultureInfo.InvariantCulture)));
    }
}

/// <summary>The end-to-end data-plane tests run one at a time: each runs a whole network of processes.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class DataPlaneCollection
{
    public const string Name = "data plane end to end";
}
