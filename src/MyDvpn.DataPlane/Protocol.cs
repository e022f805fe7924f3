using System.Collections.Immutable;

namespace MyDvpn.DataPlane;

// ── Desired state ────────────────────────────────────────────────────────────────────────────────────────────────────

/// <summary>One WireGuard interface as it must be on this host.</summary>
/// <param name="Name">The interface name (1–15 characters of letters, digits, <c>_ . -</c>); one actor owns it.</param>
/// <param name="PrivateKey">The 32-byte WireGuard private key.</param>
/// <param name="ListenPort">The UDP port WireGuard listens on; 0: any free port (whatever the device picked is kept).</param>
/// <param name="Addresses">The interface's own addresses as CIDRs (<c>100.96.0.1/24</c>; no prefix: a host address).</param>
/// <param name="Peers">Every peer of the interface; peers not listed are removed.</param>
/// <param name="FullTunnel">Client side: all IPv4 through this interface (wg-quick's policy routing); null: none.</param>
/// <param name="ExitNat">Exit side: forward and masquerade tunnel subnets to the uplink; null: none.</param>
/// <param name="Mtu">The interface MTU.</param>
public sealed record InterfaceSpec(
    string Name,
    byte[] PrivateKey,
    int ListenPort,
    ImmutableArray<string> Addresses,
    ImmutableList<PeerSpec> Peers,
    FullTunnelSpec? FullTunnel,
    ExitNatSpec? ExitNat,
    int Mtu = 1420);

/// <summary>A peer of the interface.</summary>
/// <param name="PublicKey">The peer's 32-byte WireGuard public key; it identifies the peer.</param>
/// <param name="Endpoint"><c>host:port</c> or <c>[v6]:port</c> (a host name is resolved on every reconciliation); null:
/// not set by us — the peer's own endpoint roams as WireGuard learns it.</param>
/// <param name="AllowedIps">CIDRs routed to and accepted from the peer.</param>
/// <param name="PersistentKeepalive">Seconds between keepalives, 0: off.</param>
public sealed record PeerSpec(byte[] PublicKey, string? Endpoint, ImmutableArray<string> AllowedIps, int PersistentKeepalive)
{
    /// <summary>
    /// A session of the peer made before this time does not count (its path was changed and must prove itself with a
    /// handshake of its own): the peer is restarted once. Null: any live session is kept.
    /// </summary>
    public DateTimeOffset? HandshakeNotBefore { get; init; }
}

/// <summary>
/// Client side: all IPv4 goes through the interface the way wg-quick does it. WireGuard's own UDP carries
/// <see cref="FirewallMark"/> and so bypasses the tunnel: rule <c>not fwmark M lookup T</c> (priority
/// <see cref="TunnelRulePriority"/>) sends everything else to table <see cref="Table"/>, whose default route is the
/// interface; rule <c>lookup main suppress_prefixlength 0</c> (priority <see cref="SuppressRulePriority"/>) keeps every
/// more specific route of the main table working. <c>net.ipv4.conf.all.src_valid_mark</c> is set to 1 and restored.
/// </summary>
/// <remarks>A socket that must stay outside the tunnel (the peer agent's control stream) sets <c>SO_MARK</c> to
/// <see cref="FirewallMark"/> (<see cref="DefaultFirewallMark"/> unless configured otherwise).</remarks>
public sealed record FullTunnelSpec(int Table = FullTunnelSpec.DefaultTable, int FirewallMark = FullTunnelSpec.DefaultFirewallMark)
{
    /// <summary>The routing table of the tunnel's default route, as wg-quick picks it.</summary>
    public const int DefaultTable = 51820;

    /// <summary>The mark WireGuard's own packets carry (and any socket that must bypass the tunnel, as SO_MARK).</summary>
    public const int DefaultFirewallMark = 51820;

    /// <summary>Priority of <c>lookup main suppress_prefixlength 0</c>; evaluated before <see cref="TunnelRulePriority"/>.</summary>
    public const int SuppressRulePriority = 32764;

    /// <summary>Priority of <c>not fwmark M lookup T</c>; just before the main table's own rule (32766).</summary>
    public const int TunnelRulePriority = 32765;
}

/// <summary>
/// Exit side: IPv4 forwarding on (<c>net.ipv4.ip_forward=1</c>, the previous value restored on stop), the
/// <paramref name="SourceSubnets"/> masqueraded out of the uplink, forwarding between the interface and the uplink
/// accepted — all in an nftables table of its own, <c>inet mydvpn_&lt;interface&gt;</c>.
/// </summary>
/// <param name="SourceSubnets">The tunnel subnets (CIDRs) whose traffic leaves through the uplink.</param>
/// <param name="Uplink">The uplink interface; null: the device of the IPv4 default route.</param>
public sealed record ExitNatSpec(ImmutableArray<string> SourceSubnets, string? Uplink);

// ── Readings ─────────────────────────────────────────────────────────────────────────────────────────────────────────

/// <summary>A peer as the device reports it.</summary>
public sealed record PeerReading(
    byte[] PublicKey,
    string? Endpoint,
    DateTimeOffset? LastHandshake,
    ulong RxBytes,
    ulong TxBytes,
    ImmutableArray<string> AllowedIps);

/// <summary>The interface as the device reports it.</summary>
/// <param name="Backend"><c>"wireguard-go"</c> or <c>"kernel"</c>.</param>
public sealed record InterfaceReading(string Name, byte[] PublicKey, int ListenPort, ImmutableList<PeerReading> Peers, string Backend);

// ── Messages of the WireGuardActor ───────────────────────────────────────────────────────────────────────────────────

/// <summary>Make the host match <paramref name="Desired"/> (null: the interface and everything of it absent).</summary>
/// <remarks>Answered with <see cref="Reconciled"/> or <see cref="ReconcileFailed"/> once the host was re-read. While a
/// reconciliation runs, newer desired states are coalesced: every waiting sender gets the answer of the newest.</remarks>
public sealed record Reconcile(InterfaceSpec? Desired);

/// <summary>The host matches the desired state; <paramref name="Reading"/> is null when the interface is absent.</summary>
public sealed record Reconciled(InterfaceReading? Reading);

/// <summary>The host could not be brought to the desired state (the periodic reconciliation keeps trying).</summary>
public sealed record ReconcileFailed(string Reason);

/// <summary>Read the interface; answered with <see cref="InterfaceRead"/>.</summary>
public sealed record ReadInterface
{
    public static readonly ReadInterface Instance = new();

    private ReadInterface()
    {
    }
}

/// <summary>The answer to <see cref="ReadInterface"/>; <paramref name="Reading"/> is null when there is no interface.</summary>
public sealed record InterfaceRead(InterfaceReading? Reading);

/// <summary>Remove everything the actor created (interface, rules, routes, nft table) and restore the sysctls it
/// changed; the desired state becomes "absent". Answered with <see cref="TornDown"/>.</summary>
public sealed record Teardown
{
    public static readonly Teardown Instance = new();

    private Teardown()
    {
    }
}

/// <summary>Everything was removed; <paramref name="Problems"/> lists what could not be (empty when all went well).</summary>
public sealed record TornDown(ImmutableArray<string> Problems);
