using Prometheus;

namespace MyDvpn.SuperNode.Relay;

/// <summary>Why a relay leg did not forward a datagram (the <c>reason</c> label of <c>mydvpn_relay_dropped_total</c>).</summary>
public enum RelayDropReason
{
    /// <summary>Neither the leg's peer address nor its partner sent it.</summary>
    UnknownSource,
    /// <summary>From the peer's address but another port than the peer's, which was heard from recently.</summary>
    WrongPort,
    /// <summary>From the peer before the leg's partner is known.</summary>
    NoPartner,
    /// <summary>From the partner before the peer sent anything (no endpoint was claimed for it).</summary>
    PeerPortUnknown,
    /// <summary>Larger than the leg's receive buffer.</summary>
    Oversize,
    /// <summary>The send failed (no route, buffer full).</summary>
    SendFailed,
    /// <summary>
    /// From the partner before the peer sent anything, though an endpoint was claimed for it (an exit's): what a leg would
    /// have sent to an address it never heard from.
    /// </summary>
    PeerNotHeard,
}

/// <summary>The relay's Prometheus metrics; the labelled children are resolved once, so counting allocates nothing.</summary>
internal static class RelayMetrics
{
    public static readonly Gauge LegsOpen = Metrics.CreateGauge(
        "mydvpn_relay_legs_open", "Relay legs (UDP ports) open on this SuperNode.");

    private static readonly Counter Packets = Metrics.CreateCounter(
        "mydvpn_relay_packets_total", "Datagrams forwarded by relay legs, to the leg's peer or to its partner leg.",
        new CounterConfiguration { LabelNames = ["direction"] });

    private static readonly Counter Bytes = Metrics.CreateCounter(
        "mydvpn_relay_bytes_total", "UDP payload bytes forwarded by relay legs, to the leg's peer or to its partner leg.",
        new CounterConfiguration { LabelNames = ["direction"] });

    private static readonly Counter Dropped = Metrics.CreateCounter(
        "mydvpn_relay_dropped_total", "Datagrams a relay leg received and did not forward, by reason.",
        new CounterConfiguration { LabelNames = ["reason"] });

    public static readonly Counter.Child PacketsToPeer = Packets.WithLabels("to_peer");
    public static readonly Counter.Child PacketsToPartner = Packets.WithLabels("to_partner");
    public static readonly Counter.Child BytesToPeer = Bytes.WithLabels("to_peer");
    public static readonly Counter.Child BytesToPartner = Bytes.WithLabels("to_partner");

    private static readonly Counter.Child[] DroppedByReason =
    [
        Dropped.WithLabels("unknown_source"),
        Dropped.WithLabels("wrong_port"),
        Dropped.WithLabels("no_partner"),
        Dropped.WithLabels("peer_port_unknown"),
        Dropped.WithLabels("oversize"),
        Dropped.WithLabels("send_failed"),
        Dropped.WithLabels("peer_not_heard"),
    ];

    public static Counter.Child DroppedFor(RelayDropReason reason) => DroppedByReason[(int)reason];

    /// <summary>Makes the relay's series exist, at zero, before the first leg opens (the children above are made with them).</summary>
    public static void ShowAtZero() => LegsOpen.Inc(0);
}
