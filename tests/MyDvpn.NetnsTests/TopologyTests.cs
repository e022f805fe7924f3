using System.Net;
using System.Net.Sockets;
using MyDvpn.Testbed;
using static MyDvpn.NetnsTests.NetnsTestHelpers;

namespace MyDvpn.NetnsTests;

/// <summary>What the topology looks like from inside: who is seen as which address, which NAT forwards what.</summary>
public sealed class TopologyTests(SharedTestbed shared) : IClassFixture<SharedTestbed>
{
    private readonly NetnsTestbed _testbed = shared.Testbed;

    [Theory]
    [InlineData(TestbedRoles.Client, "198.51.100.21")]
    [InlineData(TestbedRoles.Exit, "198.51.100.20")]
    [InlineData(TestbedRoles.SnA, "198.51.100.11")]
    [InlineData(TestbedRoles.SnB, "198.51.100.12")]
    [InlineData(TestbedRoles.SnB2, "198.51.100.13")]
    [InlineData(TestbedRoles.SnB3, "198.51.100.14")]
    [InlineData(TestbedRoles.Base, "198.51.100.10")]
    [InlineData(TestbedRoles.ExitNat, "198.51.100.20")]
    public async Task The_echo_server_sees_a_host_as_its_public_address(string role, string seenAs)
    {
        var body = await _testbed.HttpGetAsync(_testbed.Namespaces.Name(role), _testbed.EchoUrl, Bound);

        Assert.Equal(seenAs, body);
        Assert.Equal(IPAddress.Parse(seenAs), _testbed.PublicAddress(role));
    }

    [Fact]
    public async Task Udp_to_the_exit_nat_port_51820_reaches_the_exit_and_its_answer_comes_from_the_nat_public_address()
    {
        using var exit = _testbed.CreateUdpSocket(TestbedRoles.Exit);
        exit.Bind(new IPEndPoint(TestbedAddresses.Exit, TestbedAddresses.ExitWireGuardPort));
        using var snA = _testbed.CreateUdpSocket(TestbedRoles.SnA);
        snA.Bind(new IPEndPoint(TestbedAddresses.SnA, 0));
        var exitPublic = new IPEndPoint(TestbedAddresses.ExitNatPublic, TestbedAddresses.ExitWireGuardPort);

        await SendAsync(snA, "hello exit", exitPublic);
        var (payload, from) = await ReceiveAsync(exit, "sn-a → 198.51.100.20:51820 at the exit");
        Assert.Equal("hello exit", payload);
        Assert.Equal(TestbedAddresses.SnA, from.Address);

        await SendAsync(exit, "hello sn-a", from);
        var (reply, replyFrom) = await ReceiveAsync(snA, "the exit's answer at sn-a");
        Assert.Equal("hello sn-a", reply);
        Assert.Equal(exitPublic, replyFrom);
    }

    [Fact]
    public async Task Udp_to_the_client_nat_is_not_forwarded_to_the_client()
    {
        using var client = _testbed.CreateUdpSocket(TestbedRoles.Client);
        client.Bind(new IPEndPoint(IPAddress.Any, TestbedAddresses.ExitWireGuardPort));
        using var snA = _testbed.CreateUdpSocket(TestbedRoles.SnA);
        await snA.ConnectAsync(new IPEndPoint(TestbedAddresses.ClientNatPublic, TestbedAddresses.ExitWireGuardPort));

        await snA.SendAsync("hello client"u8.ToArray(), SocketFlags.None);

        // The client NAT keeps the datagram for itself: nothing listens there, so it answers ICMP port unreachable,
        // which the connected socket reports as refused. Had the datagram been forwarded, the client would have taken it
        // and nobody would have refused it.
        var refused = await Assert.ThrowsAsync<SocketException>(() => ReceiveAsync(snA, "ICMP port unreachable from the client NAT"));
        Assert.Equal(SocketError.ConnectionRefused, refused.SocketErrorCode);
        Assert.Equal(0, client.Available);
    }

    [Fact]
    public async Task Ping_from_behind_a_nat_reaches_the_router()
    {
        var result = await _testbed.PingAsync(TestbedRoles.Client, TestbedAddresses.Router.ToString(), count: 3);

        Assert.Equal(3, result.Transmitted);
        Assert.Equal(3, result.Received);
        Assert.Equal(0, result.LossPercent);
        Assert.NotNull(result.AverageRoundTrip);
    }

    [Fact]
    public async Task Ping_to_an_address_nobody_holds_reports_full_loss()
    {
        var result = await _testbed.PingAsync(TestbedRoles.SnA, "198.51.100.99", count: 2);

        Assert.Equal(0, result.Received);
        Assert.Equal(100, result.LossPercent);
        Assert.Null(result.AverageRoundTrip);
    }

    [Fact]
    public async Task The_exit_lan_is_not_reachable_from_the_internet()
    {
        var result = await _testbed.PingAsync(TestbedRoles.SnA, TestbedAddresses.Exit.ToString(), count: 1);

        Assert.Equal(0, result.Received);
    }
}
