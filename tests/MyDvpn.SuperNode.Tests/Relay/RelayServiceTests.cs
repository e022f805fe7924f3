using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using MyDvpn.SuperNode.Relay;
using Prometheus;

namespace MyDvpn.SuperNode.Tests.Relay;

/// <summary>Relay legs over real UDP sockets on loopback: chains on one and on two SuperNodes, who is let through, ports, idleness.</summary>
public sealed class RelayServiceTests
{
    private const string Assignment = "asg-1";

    [Theory]
    [InlineData(2)] // Linux: the relay's forwarding threads (recvmmsg/sendmmsg)
    [InlineData(0)] // an async receive loop per leg (other systems)
    public async Task Client_and_exit_exchange_datagrams_through_two_legs_of_one_supernode(int forwardingThreads)
    {
        await using var relay = Relay(settings: RelaySettings.Default with { ForwardingThreads = forwardingThreads });
        using var client = new UdpPeer();
        using var exit = new UdpPeer();
        var (clientLeg, exitLeg) = await ChainAsync(relay, relay, exit);

        await AssertRoundTripsAsync(client, exit, clientLeg, exitLeg);

        // A leg counts a datagram once its send returned, which can be after the datagram arrived.
        await RelayTestPorts.EventuallyAsync(() => relay.Legs.All(l => l.PacketsToPartner + l.PacketsToPeer >= 2 * Payloads.Length),
            "both legs counted every datagram they forwarded");
        var legs = relay.Legs;
        Assert.Equal([RelaySides.Client, RelaySides.Exit], legs.Select(l => l.Side));
        var clientStatus = legs[0];
        Assert.Equal((Assignment, clientLeg.Port, client.Endpoint, exitLeg.Endpoint), (clientStatus.AssignmentId, clientStatus.Port, clientStatus.PeerEndpoint, clientStatus.Partner));
        Assert.Equal((3L, 3L), (clientStatus.PacketsToPartner, clientStatus.PacketsToPeer));
        Assert.Equal(PayloadBytes, clientStatus.BytesToPartner);
        // The exit's first keepalive (ChainAsync), which came before the client had sent: nowhere to go yet.
        Assert.Equal(1, clientStatus.Dropped);
        Assert.NotNull(clientStatus.LastPacketAt);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(0)]
    public async Task Client_and_exit_exchange_datagrams_through_legs_of_two_supernodes(int forwardingThreads)
    {
        var settings = RelaySettings.Default with { ForwardingThreads = forwardingThreads };
        await using var clientRegion = Relay(settings: settings);
        await using var exitRegion = Relay(settings: settings);
        using var client = new UdpPeer();
        using var exit = new UdpPeer();
        // Kestrel reports a peer on a dual-stack listener as an IPv4-mapped IPv6 address.
        var (clientLeg, exitLeg) = await ChainAsync(clientRegion, exitRegion, exit, clientAddress: IPAddress.Loopback.MapToIPv6());

        await AssertRoundTripsAsync(client, exit, clientLeg, exitLeg);

        // A leg counts a datagram once its send returned, which can be after the datagram arrived.
        await RelayTestPorts.EventuallyAsync(
            () => clientRegion.Legs.Sum(l => l.PacketsToPartner) >= Payloads.Length && exitRegion.Legs.Sum(l => l.PacketsToPeer) >= Payloads.Length,
            "both legs counted every datagram they forwarded");
        Assert.Equal(3, Assert.Single(clientRegion.Legs).PacketsToPartner);
        Assert.Equal(3, Assert.Single(exitRegion.Legs).PacketsToPeer);
    }

    [Fact]
    public async Task Legs_chained_on_one_supernode_whose_public_ip_is_not_on_the_host_still_forward()
    {
        // 192.0.2.10 (TEST-NET) is announced, as a cloud VM's public IP behind 1:1 NAT; the legs bind loopback.
        await using var relay = Relay(publicAddress: IPAddress.Parse("192.0.2.10"));
        using var client = new UdpPeer();
        using var exit = new UdpPeer();
        var (clientLeg, exitLeg) = await ChainAsync(relay, relay, exit);
        Assert.Equal(IPAddress.Parse("192.0.2.10"), clientLeg.Endpoint.Address);

        await AssertRoundTripsAsync(client, exit, clientLeg, exitLeg);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(0)]
    public async Task Exit_leg_sends_nothing_to_a_claimed_endpoint_before_the_exit_has_sent_then_forwards_to_where_it_sent_from(int forwardingThreads)
    {
        // An exit that claims another host's endpoint (here: a victim on the exit's address, another port) must not get
        // the relay to send there: the leg sends only to where the exit itself sent from.
        await using var relay = Relay(settings: RelaySettings.Default with { ForwardingThreads = forwardingThreads });
        using var client = new UdpPeer();
        using var exit = new UdpPeer();
        using var victim = new UdpPeer();
        var (clientLeg, exitLeg) = await ChainAsync(relay, relay, exit, claimed: victim.Endpoint, introduce: false);
        var notHeardBefore = Dropped("peer_not_heard");
        RelayLegStatus ExitStatus() => relay.Legs.Single(l => l.Side == RelaySides.Exit);

        for (var i = 0; i < 100; i++)
            await client.SendAsync($"handshake initiation {i}", Local(clientLeg));
        await RelayTestPorts.EventuallyAsync(() => ExitStatus().Dropped == 100, "the exit leg drops all 100 datagrams for an exit it never heard from");

        Assert.Equal(0, victim.Pending);
        Assert.Equal(0, exit.Pending);
        Assert.Null(ExitStatus().PeerEndpoint);
        Assert.Equal(0, ExitStatus().PacketsToPeer);
        Assert.True(Dropped("peer_not_heard") - notHeardBefore >= 100);

        // The exit speaks (its WireGuard's keepalive after RelaySetup): from now on the leg sends to the port it came from.
        await exit.SendAsync("keepalive", Local(exitLeg));
        Assert.Equal("keepalive", await client.ReceiveTextAsync(Local(clientLeg)));
        await client.SendAsync("after", Local(clientLeg));
        // Datagrams on loopback arrive in the order sent: had any of the 100 gone to the exit, it would come first.
        Assert.Equal("after", await exit.ReceiveTextAsync(Local(exitLeg)));
        Assert.Equal(exit.Endpoint, ExitStatus().PeerEndpoint);
        Assert.Equal(0, victim.Pending);
    }

    [Fact]
    public async Task Client_leg_learns_the_clients_port_from_its_first_datagram()
    {
        await using var relay = Relay();
        using var client = new UdpPeer();
        using var exit = new UdpPeer();
        var (clientLeg, exitLeg) = await ChainAsync(relay, relay, exit, introduce: false);
        RelayLegStatus ClientStatus() => relay.Legs.Single(l => l.Side == RelaySides.Client);
        Assert.Null(ClientStatus().PeerEndpoint);

        // Before the client has sent, the client leg has nowhere to put the exit's datagram.
        await exit.SendAsync("too early", Local(exitLeg));
        await RelayTestPorts.EventuallyAsync(() => ClientStatus().Dropped == 1, "the client leg drops a datagram for a client whose port it does not know");

        await client.SendAsync("first", Local(clientLeg));
        Assert.Equal("first", await exit.ReceiveTextAsync(Local(exitLeg)));
        Assert.Equal(client.Endpoint, ClientStatus().PeerEndpoint);
        await exit.SendAsync("reply", Local(exitLeg));
        Assert.Equal("reply", await client.ReceiveTextAsync(Local(clientLeg)));
    }

    [Theory]
    [InlineData(2)]
    [InlineData(0)]
    public async Task Datagrams_from_unknown_sources_are_dropped_and_counted(int forwardingThreads)
    {
        await using var relay = Relay(settings: RelaySettings.Default with { ForwardingThreads = forwardingThreads });
        using var client = new UdpPeer();
        using var exit = new UdpPeer();
        // All of 127.0.0.0/8 is loopback on Linux: a stranger at another address of it.
        using var stranger = new UdpPeer(IPAddress.Parse("127.0.0.2"));
        using var neighbour = new UdpPeer();
        var (clientLeg, exitLeg) = await ChainAsync(relay, relay, exit);
        var droppedBefore = relay.Legs.Sum(l => l.Dropped);
        var unknownBefore = Dropped("unknown_source");
        var wrongPortBefore = Dropped("wrong_port");
        await client.SendAsync("client", Local(clientLeg));
        Assert.Equal("client", await exit.ReceiveTextAsync(Local(exitLeg)));

        // Another address; then the client's own address on another port while the client is active.
        await stranger.SendAsync("stranger", Local(clientLeg));
        await stranger.SendAsync("stranger", Local(exitLeg));
        await neighbour.SendAsync("neighbour", Local(clientLeg));
        await client.SendAsync("client again", Local(clientLeg));

        // Datagrams on loopback arrive in the order sent: the next one the exit sees is the client's.
        Assert.Equal("client again", await exit.ReceiveTextAsync(Local(exitLeg)));
        await RelayTestPorts.EventuallyAsync(() => relay.Legs.Sum(l => l.Dropped) == droppedBefore + 3, "three more datagrams counted as dropped");
        Assert.Equal(client.Endpoint, relay.Legs.Single(l => l.Side == RelaySides.Client).PeerEndpoint);
        Assert.True(Dropped("unknown_source") - unknownBefore >= 2);
        Assert.True(Dropped("wrong_port") - wrongPortBefore >= 1);
    }

    [Fact]
    public async Task Datagrams_before_a_partner_is_set_are_dropped()
    {
        await using var relay = Relay();
        using var client = new UdpPeer();
        var leg = await relay.OpenLegAsync(Assignment, RelaySides.Client, IPAddress.Loopback, null, CancellationToken.None);

        await client.SendAsync("nowhere to go", Local(leg));

        await RelayTestPorts.EventuallyAsync(() => Assert.Single(relay.Legs).Dropped == 1, "the datagram is dropped");
        Assert.Equal(client.Endpoint, Assert.Single(relay.Legs).PeerEndpoint);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(0)]
    public async Task Datagrams_larger_than_the_buffer_are_dropped_not_truncated(int forwardingThreads)
    {
        await using var relay = Relay(settings: RelaySettings.Default with { ForwardingThreads = forwardingThreads });
        using var client = new UdpPeer();
        using var exit = new UdpPeer();
        var (clientLeg, exitLeg) = await ChainAsync(relay, relay, exit);
        var droppedBefore = relay.Legs.Single(l => l.Side == RelaySides.Client).Dropped;
        var oversizeBefore = Dropped("oversize");

        var largest = Enumerable.Range(0, RelaySettings.Default.DatagramBufferSize - 1).Select(i => (byte)i).ToArray();

        await client.SendAsync(new byte[RelaySettings.Default.DatagramBufferSize + 100], Local(clientLeg));
        await client.SendAsync(new byte[RelaySettings.Default.DatagramBufferSize], Local(clientLeg));
        await client.SendAsync(largest, Local(clientLeg));

        Assert.Equal(largest, (await exit.ReceiveAsync()).Datagram);
        Assert.Equal(droppedBefore + 2, relay.Legs.Single(l => l.Side == RelaySides.Client).Dropped);
        Assert.True(Dropped("oversize") - oversizeBefore >= 2);
    }

    [Fact]
    public async Task Peer_on_another_port_takes_over_only_after_the_known_port_went_silent()
    {
        var clock = new ManualTimeProvider();
        await using var relay = Relay(clock: clock);
        using var client = new UdpPeer();
        using var rebound = new UdpPeer();
        using var exit = new UdpPeer();
        var (clientLeg, exitLeg) = await ChainAsync(relay, relay, exit);
        await client.SendAsync("from the first mapping", Local(clientLeg));
        Assert.Equal("from the first mapping", await exit.ReceiveTextAsync(Local(exitLeg)));

        clock.Advance(RelaySettings.Default.PeerRebindAfter - TimeSpan.FromSeconds(1));
        await rebound.SendAsync("too soon", Local(clientLeg));
        await client.SendAsync("still here", Local(clientLeg));
        Assert.Equal("still here", await exit.ReceiveTextAsync(Local(exitLeg)));

        clock.Advance(RelaySettings.Default.PeerRebindAfter + TimeSpan.FromSeconds(1));
        await rebound.SendAsync("from the new mapping", Local(clientLeg));
        Assert.Equal("from the new mapping", await exit.ReceiveTextAsync(Local(exitLeg)));
        await exit.SendAsync("to the new mapping", Local(exitLeg));
        Assert.Equal("to the new mapping", await rebound.ReceiveTextAsync(Local(clientLeg)));
        Assert.Equal(rebound.Endpoint, relay.Legs.Single(l => l.Side == RelaySides.Client).PeerEndpoint);
    }

    [Fact]
    public async Task Closing_an_assignment_stops_forwarding_and_frees_its_ports()
    {
        await using var relay = Relay(ports: 2);
        using var client = new UdpPeer();
        using var exit = new UdpPeer();
        var (clientLeg, exitLeg) = await ChainAsync(relay, relay, exit);
        await AssertRoundTripsAsync(client, exit, clientLeg, exitLeg);
        int[] ports = [clientLeg.Port, exitLeg.Port];

        Assert.Equal(2, await relay.CloseLegsAsync(Assignment));
        Assert.Equal(0, await relay.CloseLegsAsync(Assignment));

        Assert.Empty(relay.Legs);
        // Nothing listens on the ports any more once the forwarding threads let go of the sockets: nothing can forward, and
        // they can be bound again.
        await RelayTestPorts.EventuallyAsync(() => ports.All(RelayTestPorts.IsFree), "the closed legs' ports are free again");
        var (client2, exit2) = await ChainAsync(relay, relay, exit, assignment: "asg-2");
        Assert.Equal(ports.Order(), new[] { client2.Port, exit2.Port }.Order());
        await AssertRoundTripsAsync(client, exit, client2, exit2);
    }

    [Fact]
    public async Task Idle_legs_are_closed_and_legs_with_traffic_kept()
    {
        var clock = new ManualTimeProvider();
        await using var relay = Relay(clock: clock, settings: new RelaySettings { IdleSweepInterval = TimeSpan.FromHours(1) });
        using var client = new UdpPeer();
        using var exit = new UdpPeer();
        var (clientLeg, exitLeg) = await ChainAsync(relay, relay, exit);
        var idle = await relay.OpenLegAsync("asg-idle", RelaySides.Client, IPAddress.Loopback, null, CancellationToken.None);

        clock.Advance(TimeSpan.FromMinutes(2));
        Assert.Equal(0, await relay.CloseIdleLegsAsync());
        await client.SendAsync("keepalive", Local(clientLeg));
        Assert.Equal("keepalive", await exit.ReceiveTextAsync(Local(exitLeg)));

        clock.Advance(TimeSpan.FromMinutes(1.5));
        Assert.Equal(1, await relay.CloseIdleLegsAsync());
        Assert.Equal(2, relay.Legs.Count);
        // The leg leaves the list first; its socket closes once its forwarding thread let go of it (asserted at once, this
        // failed under load).
        await RelayTestPorts.EventuallyAsync(() => RelayTestPorts.IsFree(idle.Port), "the idle leg's port is free again");

        clock.Advance(relay.IdleTimeout);
        Assert.Equal(2, await relay.CloseIdleLegsAsync());
        Assert.Empty(relay.Legs);
    }

    [Fact]
    public async Task The_idle_timer_closes_a_leg_that_forwarded_nothing()
    {
        var clock = new ManualTimeProvider();
        await using var relay = Relay(clock: clock, settings: new RelaySettings { IdleSweepInterval = TimeSpan.FromMilliseconds(20) });
        var leg = await relay.OpenLegAsync(Assignment, RelaySides.Client, IPAddress.Loopback, null, CancellationToken.None);

        clock.Advance(relay.IdleTimeout + TimeSpan.FromSeconds(1));

        await RelayTestPorts.EventuallyAsync(() => relay.Legs.Count == 0, "the sweep closes the idle leg");
        // The leg leaves the list first; its socket closes once its forwarding thread let go of it.
        await RelayTestPorts.EventuallyAsync(() => RelayTestPorts.IsFree(leg.Port), "the idle leg's port is free again");
    }

    [Fact]
    public async Task Opening_an_open_leg_returns_it()
    {
        await using var relay = Relay();
        var first = await relay.OpenLegAsync(Assignment, RelaySides.Exit, IPAddress.Loopback, new IPEndPoint(IPAddress.Loopback, 51820), CancellationToken.None);

        var again = await ((IRelayLegs)relay).OpenAsync(Assignment, RelaySides.Exit, IPAddress.Loopback, new IPEndPoint(IPAddress.Loopback, 51820),
            new RelayLegOwner("eu-west", "laptop-1"), CancellationToken.None);

        Assert.Equal(first.Endpoint, again);
        Assert.Single(relay.Legs);
        await Assert.ThrowsAsync<ArgumentException>(() => relay.OpenLegAsync(Assignment, "middle", IPAddress.Loopback, null, CancellationToken.None));
        Assert.Throws<InvalidOperationException>(() => relay.SetPartner("unknown", RelaySides.Client, first.Endpoint));
    }

    [Fact]
    public async Task No_free_port_in_the_range_is_an_error_naming_relay_ports()
    {
        var (low, high) = RelayTestPorts.Range(2);
        await using var relay = new RelayService(IPAddress.Loopback, low, high, NullLogger<RelayService>.Instance, bindAddress: IPAddress.Loopback);
        // One port of the range goes to a leg, the other is taken by a socket that is not the relay's.
        using var squatter = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        squatter.Bind(new IPEndPoint(IPAddress.Loopback, high));
        var leg = await relay.OpenLegAsync("asg-1", RelaySides.Client, IPAddress.Loopback, null, CancellationToken.None);
        Assert.Equal(low, leg.Port);

        var refused = await Assert.ThrowsAsync<RelayPortsExhaustedException>(
            () => relay.OpenLegAsync("asg-2", RelaySides.Client, IPAddress.Loopback, null, CancellationToken.None));

        Assert.Contains($"--relay-ports {low}-{high}", refused.Message);
        Assert.Contains("1 held by relay legs, 1 by other sockets", refused.Message);
        Assert.IsAssignableFrom<InvalidOperationException>(refused);
    }

    [Fact]
    public void An_address_not_on_this_host_is_refused_at_startup_naming_public_ip()
    {
        var (low, high) = RelayTestPorts.Range(1);

        var refused = Assert.Throws<ArgumentException>(
            () => new RelayService(IPAddress.Parse("192.0.2.10"), low, high, NullLogger<RelayService>.Instance));

        Assert.Contains("--public-ip 192.0.2.10", refused.Message);
    }

    private static readonly byte[][] Payloads =
    [
        [1],
        "hello through the relay"u8.ToArray(),
        // A full WireGuard data message at the default MTU of 1420.
        [.. Enumerable.Range(0, 1452).Select(i => (byte)(i * 7))],
    ];

    private static readonly long PayloadBytes = Payloads.Sum(p => (long)p.Length);

    [Fact]
    public async Task Handing_over_names_each_leg_with_its_session_refuses_new_legs_and_keeps_the_open_ones_forwarding()
    {
        await using var relay = Relay();
        using var client = new UdpPeer();
        using var exit = new UdpPeer();
        var owner = new RelayLegOwner("eu-west", "laptop-1");
        var clientLeg = await relay.OpenLegAsync(Assignment, RelaySides.Client, IPAddress.Loopback, null, CancellationToken.None, owner);
        var exitLeg = await relay.OpenLegAsync(Assignment, RelaySides.Exit, IPAddress.Loopback, exit.Endpoint, CancellationToken.None, owner);
        relay.SetPartner(Assignment, RelaySides.Client, exitLeg.Endpoint);
        relay.SetPartner(Assignment, RelaySides.Exit, clientLeg.Endpoint);
        await IntroduceExitAsync(relay, relay, exit, exitLeg, Assignment);

        var handedOver = relay.BeginHandOver();

        Assert.Equal(
            [new RelayLegHandOver(Assignment, RelaySides.Client, clientLeg.Endpoint, owner), new RelayLegHandOver(Assignment, RelaySides.Exit, exitLeg.Endpoint, owner)],
            handedOver.OrderBy(h => h.Side, StringComparer.Ordinal));
        var refused = await Assert.ThrowsAsync<RelayDrainingException>(() => relay.OpenLegAsync("asg-2", RelaySides.Client, IPAddress.Loopback, null, CancellationToken.None));
        Assert.Contains("shutting down", refused.Message, StringComparison.Ordinal);
        await AssertRoundTripsAsync(client, exit, clientLeg, exitLeg);
    }

    [Fact]
    public async Task Peer_address_of_a_leg_is_the_one_it_takes_packets_from_and_null_once_closed()
    {
        await using var relay = Relay();
        // As Kestrel shows an IPv4 client on a dual-stack listener.
        await relay.OpenLegAsync(Assignment, RelaySides.Client, IPAddress.Parse("::ffff:127.0.0.1"), null, CancellationToken.None);

        Assert.Equal(IPAddress.Loopback, relay.PeerAddressOf(Assignment, RelaySides.Client));
        Assert.Null(relay.PeerAddressOf(Assignment, RelaySides.Exit));
        await relay.CloseLegsAsync(Assignment);
        Assert.Null(relay.PeerAddressOf(Assignment, RelaySides.Client));
    }

    private static RelayService Relay(int ports = 4, ManualTimeProvider? clock = null, RelaySettings? settings = null, IPAddress? publicAddress = null)
    {
        var (low, high) = RelayTestPorts.Range(ports);
        return new RelayService(publicAddress ?? IPAddress.Loopback, low, high, NullLogger<RelayService>.Instance, clock, settings,
            bindAddress: IPAddress.Loopback);
    }

    /// <summary>Where a peer on this host sends to reach the leg (its announced endpoint may be a public IP).</summary>
    private static IPEndPoint Local(RelayLeg leg) => new(IPAddress.Loopback, leg.Port);

    /// <summary>
    /// Opens and chains both legs, the exit's with <paramref name="claimed"/> (the exit's own endpoint unless given) as the
    /// session passes the exit's endpoint; with <paramref name="introduce"/> the exit then speaks first, as its WireGuard
    /// does once RelaySetup points it at its leg (<see cref="IntroduceExitAsync"/>).
    /// </summary>
    private static async Task<(RelayLeg Client, RelayLeg Exit)> ChainAsync(RelayService clientSide, RelayService exitSide, UdpPeer exit,
        string assignment = Assignment, IPAddress? clientAddress = null, IPEndPoint? claimed = null, bool introduce = true)
    {
        var clientLeg = await clientSide.OpenLegAsync(assignment, RelaySides.Client, clientAddress ?? IPAddress.Loopback, null, CancellationToken.None);
        var exitLeg = await exitSide.OpenLegAsync(assignment, RelaySides.Exit, IPAddress.Loopback, claimed ?? exit.Endpoint, CancellationToken.None);
        clientSide.SetPartner(assignment, RelaySides.Client, exitLeg.Endpoint);
        exitSide.SetPartner(assignment, RelaySides.Exit, clientLeg.Endpoint);
        if (introduce)
            await IntroduceExitAsync(clientSide, exitSide, exit, exitLeg, assignment);
        return (clientLeg, exitLeg);
    }

    /// <summary>
    /// The exit sends its first keepalive to its leg, which learns where the exit is; the client's leg, which has not heard
    /// from the client yet, drops it (one datagram dropped there).
    /// </summary>
    private static async Task IntroduceExitAsync(RelayService clientSide, RelayService exitSide, UdpPeer exit, RelayLeg exitLeg, string assignment)
    {
        var droppedAtClientLeg = clientSide.Legs.Single(l => l.AssignmentId == assignment && l.Side == RelaySides.Client).Dropped;
        await exit.SendAsync("keepalive", Local(exitLeg));
        await RelayTestPorts.EventuallyAsync(
            () => Equals(exitSide.Legs.Single(l => l.AssignmentId == assignment && l.Side == RelaySides.Exit).PeerEndpoint, exit.Endpoint)
                   && clientSide.Legs.Single(l => l.AssignmentId == assignment && l.Side == RelaySides.Client).Dropped == droppedAtClientLeg + 1,
            "the exit leg learned the exit from its keepalive, which the client leg dropped");
    }

    /// <summary>Every payload from the client reaches the exit unchanged, and back; each side sees only its own leg.</summary>
    private static async Task AssertRoundTripsAsync(UdpPeer client, UdpPeer exit, RelayLeg clientLeg, RelayLeg exitLeg)
    {
        foreach (var payload in Payloads)
        {
            await client.SendAsync(payload, Local(clientLeg));
            var (atExit, fromExitLeg) = await exit.ReceiveAsync();
            Assert.Equal(payload, atExit);
            Assert.Equal(Local(exitLeg), fromExitLeg);

            await exit.SendAsync(payload, Local(exitLeg));
            var (atClient, fromClientLeg) = await client.ReceiveAsync();
            Assert.Equal(payload, atClient);
            Assert.Equal(Local(clientLeg), fromClientLeg);
        }
    }

    private static double Dropped(string reason) =>
        Metrics.CreateCounter("mydvpn_relay_dropped_total", "Datagrams a relay leg received and did not forward, by reason.",
            new CounterConfiguration { LabelNames = ["reason"] }).WithLabels(reason).Value;
}
