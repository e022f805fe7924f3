using System.Collections.Immutable;

namespace MyDvpn.Peer.Tunnel;

/// <summary>
/// What the data plane must make true on this host: the exit this peer uses as a client, and the clients it serves as
/// an exit with its own address in their subnet. Changed only through the <see cref="TunnelStateStore"/>.
/// </summary>
/// <param name="Exit">The exit all traffic goes through (role client or both); null when there is none.</param>
/// <param name="ExitAddresses">This peer's own tunnel addresses as an exit (e.g. <c>100.96.0.1/24</c>); empty until it serves a client.</param>
/// <param name="Clients">The clients this peer serves as an exit, in the order they came.</param>
/// <remarks>Equality compares the lists' contents, so a change that asks for nothing new is not written again.</remarks>
public sealed record TunnelState(ClientExit? Exit, ImmutableArray<string> ExitAddresses, ImmutableList<ServedClient> Clients)
{
    public static readonly TunnelState Empty = new(null, [], []);

    /// <summary>The last time this peer moved from one exit to another (RotatePeer); null if it never did.</summary>
    public ExitRotation? LastRotation { get; init; }

    /// <summary>The served client of <paramref name="assignmentId"/>, if any.</summary>
    public ServedClient? ClientOf(string assignmentId) => Clients.Find(c => c.AssignmentId == assignmentId);

    /// <summary>The addresses this host holds in tunnels: its client address, then its exit addresses.</summary>
    public ImmutableArray<string> TunnelAddresses =>
        [.. (Exit?.TunnelAddresses ?? []).Concat(ExitAddresses).Distinct(StringComparer.Ordinal)];

    public bool Equals(TunnelState? other) =>
        other is not null
        && Equals(Exit, other.Exit)
        && ExitAddresses.SequenceEqual(other.ExitAddresses)
        && Clients.SequenceEqual(other.Clients)
        && Equals(LastRotation, other.LastRotation);

    public override int GetHashCode() => HashCode.Combine(Exit, ExitAddresses.Length, Clients.Count);
}

/// <summary>This peer's exit, as a client: a SetupExit of side <c>EXIT_SIDE_CLIENT</c>.</summary>
/// <param name="PeerId">The exit's peer id.</param>
/// <param name="Region">The exit's region.</param>
/// <param name="PublicKey">The exit's WireGuard public key, base64.</param>
/// <param name="Endpoint">Where the exit's WireGuard listens, <c>HOST:PORT</c>.</param>
/// <param name="AllowedIps">What goes through the exit (e.g. <c>0.0.0.0/0</c>).</param>
/// <param name="TunnelAddresses">This peer's address in the tunnel (e.g. <c>100.96.0.2/32</c>).</param>
/// <param name="Since">When this assignment was first applied.</param>
public sealed record ClientExit(
    string AssignmentId,
    string PeerId,
    string Region,
    string PublicKey,
    string Endpoint,
    ImmutableArray<string> AllowedIps,
    int PersistentKeepaliveSeconds,
    ImmutableArray<string> TunnelAddresses,
    DateTimeOffset Since)
{
    public bool Equals(ClientExit? other) =>
        other is not null
        && AssignmentId == other.AssignmentId
        && PeerId == other.PeerId
        && Region == other.Region
        && PublicKey == other.PublicKey
        && Endpoint == other.Endpoint
        && AllowedIps.SequenceEqual(other.AllowedIps)
        && PersistentKeepaliveSeconds == other.PersistentKeepaliveSeconds
        && TunnelAddresses.SequenceEqual(other.TunnelAddresses)
        && Since == other.Since
        && RelayEndpoint == other.RelayEndpoint
        && DirectPathSince == other.DirectPathSince
        && ExitTunnelAddress == other.ExitTunnelAddress;

    public override int GetHashCode() => HashCode.Combine(AssignmentId, PublicKey, Endpoint, Since);

    /// <summary>The relay leg WireGuard sends to instead of <see cref="Endpoint"/> when the direct path failed (RelaySetup); null: direct.</summary>
    public string? RelayEndpoint { get; init; }

    /// <summary>
    /// When the exit was pointed back at its direct endpoint after a relay (RelayTeardown); null: never relayed. Only a
    /// handshake after it proves the direct path (WireGuard would otherwise carry the relayed session over to it).
    /// </summary>
    public DateTimeOffset? DirectPathSince { get; init; }

    /// <summary>The exit's own address inside the tunnel, which answers pings (the path test); null when the SuperNode did not say.</summary>
    public string? ExitTunnelAddress { get; init; }
}

/// <summary>A move of this client from one exit to another (a RotatePeer), kept for <c>mydvpn status</c>.</summary>
/// <param name="At">When the agent applied it.</param>
/// <param name="Reason">Why, as the SuperNode gave it (e.g. <c>exit exit-1 lost: its stream ended</c>).</param>
/// <param name="From">The exit left: its assignment, peer id, region and this peer's tunnel addresses with it.</param>
/// <param name="To">The exit taken, likewise.</param>
public sealed record ExitRotation(DateTimeOffset At, string Reason, RotationEnd From, RotationEnd To);

/// <summary>One end of an <see cref="ExitRotation"/>.</summary>
/// <param name="TunnelAddresses">This peer's addresses in the tunnel through that exit.</param>
public sealed record RotationEnd(string AssignmentId, string PeerId, string Region, ImmutableArray<string> TunnelAddresses)
{
    public static RotationEnd Of(ClientExit exit) => new(exit.AssignmentId, exit.PeerId, exit.Region, exit.TunnelAddresses);

    public bool Equals(RotationEnd? other) =>
        other is not null
        && AssignmentId == other.AssignmentId
        && PeerId == other.PeerId
        && Region == other.Region
        && TunnelAddresses.SequenceEqual(other.TunnelAddresses);

    public override int GetHashCode() => HashCode.Combine(AssignmentId, PeerId);
}

/// <summary>A client this peer serves as an exit: a SetupExit of side <c>EXIT_SIDE_EXIT</c>.</summary>
/// <param name="PeerId">The client's peer id.</param>
/// <param name="Region">The client's region.</param>
/// <param name="PublicKey">The client's WireGuard public key, base64.</param>
/// <param name="AllowedIps">The client's tunnel address (e.g. <c>100.96.0.2/32</c>).</param>
/// <param name="Since">When this assignment was first applied.</param>
public sealed record ServedClient(
    string AssignmentId,
    string PeerId,
    string Region,
    string PublicKey,
    ImmutableArray<string> AllowedIps,
    DateTimeOffset Since)
{
    public bool Equals(ServedClient? other) =>
        other is not null
        && AssignmentId == other.AssignmentId
        && PeerId == other.PeerId
        && Region == other.Region
        && PublicKey == other.PublicKey
        && AllowedIps.SequenceEqual(other.AllowedIps)
        && Since == other.Since
        && RelayEndpoint == other.RelayEndpoint
        && RelaySince == other.RelaySince;

    public override int GetHashCode() => HashCode.Combine(AssignmentId, PublicKey, Since);

    /// <summary>The relay leg the client is reached through when the direct path failed (RelaySetup); null: wherever it roams from.</summary>
    public string? RelayEndpoint { get; init; }

    /// <summary>
    /// When the client was pointed at <see cref="RelayEndpoint"/>: a session from before does not count, so the exit's
    /// WireGuard starts a handshake through the leg at once (a relay leg sends to its peer only after hearing from it).
    /// </summary>
    public DateTimeOffset? RelaySince { get; init; }
}
