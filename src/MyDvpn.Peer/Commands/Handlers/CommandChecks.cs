using System.Net;
using Google.Protobuf.Collections;
using MyDvpn.Peer.Tunnel;
using MyDvpn.Protocol.Control;
using MyDvpn.Security;

namespace MyDvpn.Peer.Commands.Handlers;

/// <summary>What the handlers check of a command's values, each problem in words for a <c>COMMAND_ERROR_INVALID</c>.</summary>
internal static class CommandChecks
{
    /// <summary>WireGuard's keepalive is a 16-bit number of seconds.</summary>
    public const int MaxKeepaliveSeconds = 65535;

    public static CommandApplied Invalid(string commandId, string reason) => new(CommandResponses.Failed(commandId, CommandError.Invalid, reason));

    public static CommandApplied Done(string commandId, ExitChanged? change = null) => new(CommandResponses.Done(commandId), change);

    public static string RoleName(PeerRole role) => role.ToString().ToLowerInvariant();

    public static bool IsClient(PeerRole role) => role is PeerRole.Client or PeerRole.Both;

    /// <summary>A WireGuard peer named by <paramref name="field"/>: present, with a public key of the right length.</summary>
    public static string? PeerProblem(WireGuardPeer? peer, string field) =>
        peer is null ? $"{field} is missing" : KeyProblem(peer.PublicKey.Span, $"{field}.public_key");

    public static string? KeyProblem(ReadOnlySpan<byte> key, string field) =>
        WireGuardKey.IsPublicKey(key) ? null : $"{field} is {key.Length} bytes; a WireGuard public key is {WireGuardKey.KeyLength}";

    /// <summary>
    /// The exit a client is told to use (<paramref name="peer"/>, named <paramref name="field"/>, with the client's
    /// <paramref name="tunnelAddresses"/> in <paramref name="tunnelSubnet"/>): a unicast endpoint, exactly the full
    /// tunnel through it, the client's addresses as host routes of the subnet and the keepalive (<see cref="TunnelRules"/>).
    /// Null and the exit (whose <see cref="ClientExit.Since"/> the caller sets) if all is well, else the problem.
    /// </summary>
    /// <param name="exitTunnelAddress">The exit's own address inside the tunnel ("" when the SuperNode did not say).</param>
    public static string? ClientExitProblem(string assignmentId, string exitPeerId, string exitRegion, WireGuardPeer peer, string field,
        RepeatedField<string> tunnelAddresses, string tunnelSubnet, string exitTunnelAddress, out ClientExit? exit)
    {
        exit = null;
        if (TunnelRules.EndpointProblem(peer.Endpoint, $"{field}.endpoint", out var endpoint) is { } endpointProblem)
            return endpointProblem;
        if (TunnelRules.ClientAllowedIpsProblem(peer.AllowedIps, $"{field}.allowed_ips") is { } ipsProblem)
            return ipsProblem;
        if (TunnelRules.SubnetProblem(tunnelSubnet, "tunnel_subnet", out var subnet) is { } subnetProblem)
            return subnetProblem;
        if (TunnelRules.HostRoutesProblem(tunnelAddresses, subnet, "tunnel_addresses") is { } addressProblem)
            return addressProblem;
        if (peer.PersistentKeepaliveSeconds > MaxKeepaliveSeconds)
            return $"{field}.persistent_keepalive_seconds is {peer.PersistentKeepaliveSeconds}; WireGuard takes at most {MaxKeepaliveSeconds}";
        IPAddress? exitAddress = null;
        if (exitTunnelAddress.Length > 0
            && (!IPAddress.TryParse(exitTunnelAddress, out exitAddress)
                || TunnelRules.HostRoutesProblem([$"{exitAddress}/32"], subnet, "counterpart_tunnel_address") is not null))
        {
            return $"counterpart_tunnel_address '{exitTunnelAddress}' is not a host address of tunnel_subnet {subnet}";
        }
        exit = new ClientExit(assignmentId, exitPeerId, exitRegion, peer.PublicKey.ToBase64(), endpoint!.ToString(), [.. peer.AllowedIps],
            (int)peer.PersistentKeepaliveSeconds, [.. tunnelAddresses], default)
        {
            ExitTunnelAddress = exitAddress?.ToString(),
        };
        return null;
    }
}
