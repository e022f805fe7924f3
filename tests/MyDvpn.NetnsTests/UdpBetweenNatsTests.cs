using System.Net;
using MyDvpn.Testbed;
using static MyDvpn.NetnsTests.NetnsTestHelpers;

namespace MyDvpn.NetnsTests;

public sealed class UdpBetweenNatsTests
{
    [Fact]
    public async Task Dropping_udp_between_the_nats_stops_udp_but_not_tcp_until_allowed_again()
    {
        await using var testbed = await CreateTestbedAsync();
        using var exit = testbed.CreateUdpSocket(TestbedRoles.Exit);
        exit.Bind(new IPEndPoint(TestbedAddresses.Exit, TestbedAddresses.ExitWireGuardPort));
        using var client = testbed.CreateUdpSocket(TestbedRoles.Client);
        client.Bind(new IPEndPoint(TestbedAddresses.Client, 0));
        var exitPublic = new IPEndPoint(TestbedAddresses.ExitNatPublic, TestbedAddresses.ExitWireGuardPort);

        await SendAsync(client, "before", exitPublic);
        var (before, from) = await ReceiveAsync(exit, "client → exit before the drop");
        Assert.Equal("before", before);
        Assert.Equal(TestbedAddresses.ClientNatPublic, from.Address);

        await testbed.DropUdpBetweenNatsAsync();
        await SendAsync(client, "blocked", exitPublic);
        await EventuallyAsync(async () => await testbed.DroppedUdpBetweenNatsAsync() >= 1, "the router counts the dropped datagram");

        // TCP between the two NATs still passes: an HTTP echo on the exit NAT's public address sees the client NAT.
        await using var echoOnExitNat = testbed.StartHttpEcho(TestbedRoles.ExitNat, new IPEndPoint(TestbedAddresses.ExitNatPublic, 8080));
        Assert.Equal("198.51.100.21", await testbed.HttpGetAsync(TestbedRoles.Client, "http://198.51.100.20:8080/", Bound));
        Assert.Equal("198.51.100.21", await testbed.HttpGetAsync(TestbedRoles.Client, testbed.EchoUrl, Bound));
        Assert.Equal(0, exit.Available);

        await testbed.AllowUdpBetweenNatsAsync();
        Assert.Equal(0, await testbed.DroppedUdpBetweenNatsAsync());
        await SendAsync(client, "after", exitPublic);

        // Same path, same order: had "blocked" got through, it would be the first datagram here.
        var (after, _) = await ReceiveAsync(exit, "client → exit after the drop is lifted");
        Assert.Equal("after", after);
    }
}
