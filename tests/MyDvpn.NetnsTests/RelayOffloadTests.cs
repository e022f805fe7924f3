using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using MyDvpn.SuperNode.Relay;
using MyDvpn.Testbed;
using static MyDvpn.NetnsTests.NetnsTestHelpers;

namespace MyDvpn.NetnsTests;

/// <summary>
/// The relay's kernel offload in sn-a's namespace: nftables forwards a leg's datagrams between a peer in sn-b and a
/// partner in base (both on the testbed's internet, no NAT between them), while a socket on the leg's port stands in for
/// the relay's user-space leg. The class has a testbed of its own; the test removes what it adds to sn-a.
/// </summary>
public sealed class RelayOffloadTests(SharedTestbed shared) : IClassFixture<SharedTestbed>
{
    private const int LegPort = 40000;
    private const int IpAndUdpHeaders = 28;
    private readonly NetnsTestbed _testbed = shared.Testbed;

    [Fact]
    public async Task Offloaded_leg_is_forwarded_by_the_kernel_both_ways_counted_and_removed_again()
    {
        using var bound = TestBound();
        var cancel = bound.Token;
        var snA = _testbed.For(TestbedRoles.SnA);
        await snA.RunCheckedAsync("sysctl", ["-q", "-w", "net.ipv4.ip_forward=0"], cancellationToken: cancel);
        var leg = new IPEndPoint(TestbedAddresses.SnA, LegPort);
        using var userSpace = Bound(TestbedRoles.SnA, leg);
        using var peer = Bound(TestbedRoles.SnB, new IPEndPoint(TestbedAddresses.SnB, 0));
        using var stray = Bound(TestbedRoles.SnB, new IPEndPoint(TestbedAddresses.SnB, 0));
        using var partner = Bound(TestbedRoles.Base, new IPEndPoint(TestbedAddresses.Base, 0));
        var peerAt = (IPEndPoint)peer.LocalEndPoint!;
        var partnerAt = (IPEndPoint)partner.LocalEndPoint!;

        var offload = await RelayOffload.StartAsync(TestbedAddresses.SnA, LegPort, NullLogger.Instance, _testbed.Namespaces.SnA, cancel);
        try
        {
            Assert.Equal("1", await ForwardingAsync());
            await offload.ApplyAsync([new OffloadedLeg(LegPort, peerAt, partnerAt)], cancel);

            // Both ways, payloads unchanged, each side sees the other as the leg.
            await ExpectForwardedAsync(peer, partner, "peer → partner #1", leg);
            await ExpectForwardedAsync(peer, partner, "peer → partner #2", leg);
            await ExpectForwardedAsync(partner, peer, "partner → peer #1", leg);

            // Another port of the peer is not the leg's peer: the kernel leaves it to user space, and the forwarded
            // datagrams before it never reached user space.
            await SendAsync(stray, "stray", leg);
            var (strayPayload, strayFrom) = await ReceiveAsync(userSpace, "the stray datagram at the leg's socket");
            Assert.Equal("stray", strayPayload);
            Assert.Equal(stray.LocalEndPoint, strayFrom);

            var counters = (await offload.ReadCountersAsync(cancel))[LegPort];
            Assert.Equal(new OffloadCounters(
                PacketsToPeer: 1, BytesToPeer: Bytes("partner → peer #1"),
                PacketsToPartner: 2, BytesToPartner: Bytes("peer → partner #1") + Bytes("peer → partner #2")), counters);

            // A re-apply with the leg still there (and another one) keeps its counts.
            await offload.ApplyAsync(
                [new OffloadedLeg(LegPort, peerAt, partnerAt), new OffloadedLeg(LegPort + 1, (IPEndPoint)stray.LocalEndPoint!, partnerAt)], cancel);
            await ExpectForwardedAsync(partner, peer, "partner → peer #2", leg);
            var again = await offload.ReadCountersAsync(cancel);
            Assert.Equal(counters with { PacketsToPeer = 2, BytesToPeer = Bytes("partner → peer #1") + Bytes("partner → peer #2") }, again[LegPort]);
            Assert.Equal(new OffloadCounters(0, 0, 0, 0), again[LegPort + 1]);

            // No legs: nothing forwarded, the datagram reaches the leg's socket, the counters are gone.
            await offload.ApplyAsync([], cancel);
            Assert.Empty(await offload.ReadCountersAsync(cancel));
            await SendAsync(peer, "after removal", leg);
            var (afterPayload, afterFrom) = await ReceiveAsync(userSpace, "the peer's datagram at the leg's socket once the leg is removed");
            Assert.Equal("after removal", afterPayload);
            Assert.Equal(peerAt, afterFrom);
            Assert.Equal(0, partner.Available);
        }
        finally
        {
            await offload.DisposeAsync();
        }

        var table = await snA.RunAsync("nft", ["list", "table", "ip", offload.TableName], cancellationToken: cancel);
        Assert.False(table.Succeeded, $"the table is gone after DisposeAsync: {table.StandardOutput}");
        Assert.Equal("0", await ForwardingAsync());
        await offload.DisposeAsync(); // idempotent
        await Assert.ThrowsAsync<ObjectDisposedException>(() => offload.ApplyAsync([], cancel));
    }

    [Fact]
    public async Task An_ipv6_leg_address_is_refused_with_the_reason()
    {
        var refused = await Assert.ThrowsAsync<RelayOffloadUnavailableException>(() =>
            RelayOffload.StartAsync(IPAddress.Parse("2001:db8::11"), LegPort, NullLogger.Instance, _testbed.Namespaces.SnA, CancellationToken.None));

        Assert.Contains("IPv4", refused.Message, StringComparison.Ordinal);
    }

    private static int Bytes(string payload) => Encoding.UTF8.GetByteCount(payload) + IpAndUdpHeaders;

    private Socket Bound(string role, IPEndPoint at)
    {
        var socket = _testbed.CreateUdpSocket(role);
        socket.Bind(at);
        return socket;
    }

    private async Task<string> ForwardingAsync() =>
        (await _testbed.For(TestbedRoles.SnA).RunCheckedAsync("sysctl", ["-n", "net.ipv4.ip_forward"])).Trim();

    private static async Task ExpectForwardedAsync(Socket from, Socket to, string payload, IPEndPoint leg)
    {
        await SendAsync(from, payload, leg);
        var (received, sender) = await ReceiveAsync(to, payload);
        Assert.Equal(payload, received);
        Assert.Equal(leg, sender);
    }
}
