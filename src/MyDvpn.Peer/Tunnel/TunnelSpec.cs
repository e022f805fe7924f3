using System.Collections.Immutable;
using System.Net;
using MyDvpn.DataPlane;
using MyDvpn.Peer.Tunnel;
using MyDvpn.Security;

namespace MyDvpn.Peer.Tunnel;

/// <summary>
/// What the tunnel state asks of the host's WireGuard interface: nothing while a client holds no exit; otherwise one
/// interface with the exit as a peer and all IPv4 through it (client), the served clients as peers and their subnet
/// forwarded and masqueraded out of the uplink (exit), or both. An exit's interface is up from the start, with no client
/// yet: its first SetupExit then only adds a peer (creating a userspace interface takes seconds on a loaded host, longer
/// than the region gives an exit to acknowledge), and a host that cannot run WireGuard shows it at start, not at the
/// first client.
/// </summary>
public static class TunnelSpec
{
    /// <summary>The persistent keepalive of an exit's peer for a relayed client (WireGuard's customary 25 s).</summary>
    public const int RelayedClientKeepaliveSeconds = 25;

    /// <summary>The interface for <paramref name="state"/>; null: the interface must not exist.</summary>
    /// <param name="servesClients">The peer is an exit (role exit or both): its interface is up even while it serves nobody.</param>
    public static InterfaceSpec? For(TunnelState state, DataPlaneSettings settings, WireGuardKey key, bool servesClients = false)
    {
        if (state.Exit is null && state.Clients.IsEmpty && !servesClients)
            return null;

        var peers = ImmutableList.CreateBuilder<PeerSpec>();
        if (state.Exit is { } exit)
        {
            peers.Add(new PeerSpec(Convert.FromBase64String(exit.PublicKey), exit.RelayEndpoint ?? exit.Endpoint, exit.AllowedIps,
                exit.PersistentKeepaliveSeconds)
            {
                HandshakeNotBefore = exit.RelayEndpoint is null ? exit.DirectPathSince : null,
            });
        }
        foreach (var client in state.Clients)
        {
            // A client's endpoint is learned from its first handshake (it may sit behind NAT), unless it is relayed. A relay
            // leg sends to this exit only once it heard from it, so a relayed client's peer keeps a persistent keepalive and
            // is restarted when it is pointed at a leg: the new peer's keepalive goes out at once and the leg learns where
            // this exit is (and the keepalive holds a NAT in front of it open towards the leg).
            peers.Add(client.RelayEndpoint is null
                ? new PeerSpec(Convert.FromBase64String(client.PublicKey), null, client.AllowedIps, 0)
                : new PeerSpec(Convert.FromBase64String(client.PublicKey), client.RelayEndpoint, client.AllowedIps, RelayedClientKeepaliveSeconds)
                {
                    HandshakeNotBefore = client.RelaySince,
                });
        }

        var fullTunnel = state.Exit is { } used && used.AllowedIps.Any(IsDefaultRoute) ? new FullTunnelSpec() : null;
        var exitNat = state.Clients.IsEmpty ? null : new ExitNatSpec([.. state.ExitAddresses.Select(NetworkOf).Distinct(StringComparer.Ordinal)], settings.Uplink);
        return new InterfaceSpec(settings.WireGuardInterface, key.PrivateKey, settings.WireGuardPort, state.TunnelAddresses, peers.ToImmutable(),
            fullTunnel, exitNat);
    }

    private static bool IsDefaultRoute(string cidr) => IPNetwork.TryParse(cidr, out var network) && network.PrefixLength == 0;

    /// <summary>100.96.0.1/24 → 100.96.0.0/24: the subnet an exit's address sits in (parsing drops the host bits).</summary>
    private static string NetworkOf(string address) =>
        IPNetwork.TryParse(address.Contains('/') ? address : address + "/32", out var network) ? network.ToString() : address;
}
