using System.Text.Json.Serialization;
using MyDvpn.DataPlane;
using MyDvpn.Peer.Tunnel;
using MyDvpn.Protocol.Control;
using MyDvpn.Security;

namespace MyDvpn.Peer.LocalStatus;

/// <summary>
/// What the agent's status socket answers (<c>mydvpn status --json</c> prints it as received): one JSON document,
/// camelCase, every property always present. The shape is stable: fields are added, never renamed.
/// </summary>
/// <param name="Role"><c>client</c>, <c>exit</c> or <c>both</c>.</param>
/// <param name="WireguardPublicKey">This peer's WireGuard public key, base64.</param>
/// <param name="Exit">The exit this peer uses as a client; null when it holds none.</param>
/// <param name="TunnelAddresses">This peer's addresses in its tunnels (as a client, then as an exit).</param>
/// <param name="Path"><c>direct</c> while an exit is held, <c>relay</c> when the tunnel goes through relay legs, else <c>none</c>.</param>
/// <param name="LastHandshake">The last WireGuard handshake with the exit, as read from the interface; null without a data plane or before the first.</param>
/// <param name="RxBytes">Bytes received from the exit, as read from the interface; null without a data plane.</param>
/// <param name="TxBytes">Bytes sent to the exit, as read from the interface; null without a data plane.</param>
/// <param name="Clients">The clients this peer serves as an exit.</param>
/// <param name="LastRotation">The last time this client moved from one exit to another (RotatePeer); null if it never did.</param>
public sealed record AgentStatus(
    string PeerId,
    string Role,
    string Region,
    string WireguardPublicKey,
    AgentStreamStatus Stream,
    AgentExitStatus? Exit,
    IReadOnlyList<string> TunnelAddresses,
    string Path,
    DateTimeOffset? LastHandshake,
    ulong? RxBytes,
    ulong? TxBytes,
    AgentExitRequestStatus ExitRequest,
    IReadOnlyList<AgentClientStatus> Clients,
    AgentRotationStatus? LastRotation = null)
{
    public const string PathDirect = "direct", PathRelay = "relay", PathNone = "none";

    /// <summary>The document for this moment, from the snapshots the agent keeps.</summary>
    /// <param name="reading">The WireGuard interface as last read; null without a data plane or while it does not exist.</param>
    public static AgentStatus Of(PeerSettings settings, WireGuardKey key, PeerStatusSnapshot status, TunnelState tunnel, InterfaceReading? reading = null)
    {
        var stream = new AgentStreamStatus(
            status.Connected ? "connected" : "connecting",
            status.SuperNodeId,
            status.Endpoint?.ToString(),
            status.SessionId,
            status.Attempts,
            status.Authentications,
            status.LastProblem);
        var exit = tunnel.Exit is { } held
            ? new AgentExitStatus(held.AssignmentId, held.PeerId, held.Region, held.Endpoint, held.PublicKey, [.. held.AllowedIps], held.Since,
                held.RelayEndpoint)
            : null;
        var request = status.ExitRequest;
        var exitRequest = new AgentExitRequestStatus(
            request.Region,
            ExitRequestStatus.WireName(request.State),
            request.LastError is { } error ? new AgentExitRequestError(error.GrpcStatus, error.Reason, error.Detail) : null,
            request.NextAttemptAt);
        var clients = tunnel.Clients
            .Select(c =>
            {
                var peer = PeerIn(reading, c.PublicKey);
                return new AgentClientStatus(c.AssignmentId, c.PeerId, c.Region, c.PublicKey, [.. c.AllowedIps],
                    peer?.Endpoint, peer?.LastHandshake, peer?.RxBytes, peer?.TxBytes);
            })
            .ToList();
        var exitPeer = tunnel.Exit is { } used ? PeerIn(reading, used.PublicKey) : null;
        return new AgentStatus(
            settings.Id,
            RoleName(settings.Role),
            settings.Region,
            key.PublicKeyBase64,
            stream,
            exit,
            [.. tunnel.TunnelAddresses],
            exit is null ? PathNone : exit.RelayEndpoint is null ? PathDirect : PathRelay,
            LastHandshake: exitPeer?.LastHandshake,
            RxBytes: exitPeer?.RxBytes,
            TxBytes: exitPeer?.TxBytes,
            exitRequest,
            clients,
            tunnel.LastRotation is { } rotation ? AgentRotationStatus.Of(rotation) : null);
    }

    private static PeerReading? PeerIn(InterfaceReading? reading, string publicKeyBase64) =>
        reading?.Peers.FirstOrDefault(p => Convert.ToBase64String(p.PublicKey) == publicKeyBase64);

    public static string RoleName(PeerRole role) => role switch
    {
        PeerRole.Client => "client",
        PeerRole.Exit => "exit",
        PeerRole.Both => "both",
        _ => role.ToString().ToLowerInvariant(),
    };
}

/// <param name="State"><c>connected</c> (authenticated) or <c>connecting</c>.</param>
/// <param name="Endpoint">The SuperNode dialled, <c>HOST:PORT</c>.</param>
/// <param name="LastProblem">Why the last stream ended or failed; null if none has.</param>
public sealed record AgentStreamStatus(
    string State,
    string? SuperNodeId,
    string? Endpoint,
    string? SessionId,
    int Attempts,
    int Authentications,
    string? LastProblem);

/// <param name="PeerId">The exit's peer id.</param>
/// <param name="Region">The exit's region.</param>
/// <param name="PublicKey">The exit's WireGuard public key, base64.</param>
/// <param name="Since">When this assignment was first applied.</param>
public sealed record AgentExitStatus(
    string AssignmentId,
    string PeerId,
    string Region,
    string Endpoint,
    string PublicKey,
    IReadOnlyList<string> AllowedIps,
    DateTimeOffset Since,
    string? RelayEndpoint = null);

/// <param name="Region">The region asked for (<c>--exit-region</c>); null when the peer asks for no exit.</param>
/// <param name="State"><c>idle</c>, <c>requested</c>, <c>waiting-retry</c> or <c>stopped</c>.</param>
/// <param name="NextAttemptAt">When the next ExitRequest goes out, while <c>waiting-retry</c>.</param>
public sealed record AgentExitRequestStatus(string? Region, string State, AgentExitRequestError? LastError, DateTimeOffset? NextAttemptAt);

/// <param name="GrpcStatus">E.g. <c>RESOURCE_EXHAUSTED</c>.</param>
/// <param name="Reason">E.g. <c>NO_EXIT_AVAILABLE</c>.</param>
public sealed record AgentExitRequestError(string GrpcStatus, string Reason, string Detail);

/// <param name="PeerId">The client's peer id.</param>
/// <param name="PublicKey">The client's WireGuard public key, base64.</param>
/// <param name="Endpoint">Where the client's WireGuard packets come from, as read from the interface (null before the first).</param>
public sealed record AgentClientStatus(
    string AssignmentId,
    string PeerId,
    string Region,
    string PublicKey,
    IReadOnlyList<string> AllowedIps,
    string? Endpoint = null,
    DateTimeOffset? LastHandshake = null,
    ulong? RxBytes = null,
    ulong? TxBytes = null);

/// <param name="At">When the agent moved to the new exit.</param>
/// <param name="Reason">Why, as the SuperNode said (e.g. <c>exit exit-1 lost: its stream ended</c>).</param>
/// <param name="From">The exit left, with this peer's tunnel addresses through it.</param>
/// <param name="To">The exit taken, likewise: the tunnel address may have changed.</param>
public sealed record AgentRotationStatus(DateTimeOffset At, string Reason, AgentRotationEnd From, AgentRotationEnd To)
{
    public static AgentRotationStatus Of(ExitRotation rotation) =>
        new(rotation.At, rotation.Reason, AgentRotationEnd.Of(rotation.From), AgentRotationEnd.Of(rotation.To));
}

/// <param name="PeerId">The exit's peer id.</param>
/// <param name="TunnelAddresses">This peer's addresses in the tunnel through that exit.</param>
public sealed record AgentRotationEnd(string AssignmentId, string PeerId, string Region, IReadOnlyList<string> TunnelAddresses)
{
    public static AgentRotationEnd Of(RotationEnd end) => new(end.AssignmentId, end.PeerId, end.Region, [.. end.TunnelAddresses]);
}

/// <summary>System.Text.Json metadata for <see cref="AgentStatus"/>, generated at build time: camelCase, nulls written.</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.Never)]
[JsonSerializable(typeof(AgentStatus))]
public sealed partial class AgentStatusJson : JsonSerializerContext;
