using Google.Protobuf.Collections;
using MyDvpn.Common;
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
    /// The exit a client is told to use (<paramref name="field"/>, with the client's <paramref name="tunnelAddresses"/>):
    /// its endpoint, what goes through it, the client's addresses and the keepalive. Null and the endpoint if all is well.
    /// </summary>
    public static string? ExitPeerProblem(WireGuardPeer peer, string field, RepeatedField<string> tunnelAddresses, out HostPort? endpoint)
    {
        endpoint = null;
        try
        {
            endpoint = HostPort.Parse(peer.Endpoint, $"{field}.endpoint");
        }
        catch (ConfigurationException ex)
        {
            return ex.Message;
        }
        if (Cidr.ProblemIn(peer.AllowedIps, $"{field}.allowed_ips") is { } ipsProblem)
            return ipsProblem;
        if (Cidr.ProblemIn(tunnelAddresses, "tunnel_addresses") is { } addressProblem)
            return addressProblem;
        if (peer.PersistentKeepaliveSeconds > MaxKeepaliveSeconds)
            return $"{field}.persistent_keepalive_seconds is {peer.PersistentKeepaliveSeconds}; WireGuard takes at most {MaxKeepaliveSeconds}";
        return null;
    }
}
