using MyDvpn.Peer.Tunnel;
using MyDvpn.Protocol.Control;
using static MyDvpn.Peer.Commands.Handlers.CommandChecks;

namespace MyDvpn.Peer.Commands.Handlers;

/// <summary>RelaySetup: the WireGuard peer of the assignment (the exit, for a client; the client, for an exit) goes through a relay leg.</summary>
internal sealed class RelaySetupHandler(TunnelStateStore tunnel, TimeProvider time) : ICommandKindHandler
{
    public Command.BodyOneofCase Kind => Command.BodyOneofCase.RelaySetup;

    public Task<CommandApplied> HandleAsync(Command command, CancellationToken cancellationToken) =>
        RelayPath.PointAsync(tunnel, command.CommandId, command.RelaySetup.AssignmentId, command.RelaySetup.RelayEndpoint, time, cancellationToken);
}

/// <summary>
/// RelayTeardown: the WireGuard peer of the assignment goes back to the direct path. A client's exit peer is restarted
/// there (<see cref="ClientExit.DirectPathSince"/>), so that its next handshake shows whether the direct path works; an
/// exit's client peer is only unpinned from its leg and follows the client's handshake to wherever it comes from.
/// </summary>
internal sealed class RelayTeardownHandler(TunnelStateStore tunnel, TimeProvider time) : ICommandKindHandler
{
    public Command.BodyOneofCase Kind => Command.BodyOneofCase.RelayTeardown;

    public Task<CommandApplied> HandleAsync(Command command, CancellationToken cancellationToken) =>
        RelayPath.PointAsync(tunnel, command.CommandId, command.RelayTeardown.AssignmentId, null, time, cancellationToken);
}

internal static class RelayPath
{
    /// <summary>
    /// Points the WireGuard peer of <paramref name="assignment"/> at <paramref name="relayEndpoint"/> (null: the direct
    /// path). An assignment this peer does not hold is done already.
    /// </summary>
    public static async Task<CommandApplied> PointAsync(TunnelStateStore tunnel, string id, string assignment, string? relayEndpoint,
        TimeProvider time, CancellationToken cancellationToken)
    {
        if (string.IsNullOrEmpty(assignment))
            return Invalid(id, "assignment_id is empty");
        if (relayEndpoint is not null)
        {
            if (!System.Net.IPEndPoint.TryParse(relayEndpoint, out var leg) || leg.Port == 0)
                return Invalid(id, $"relay_endpoint '{relayEndpoint}' is not an ip:port");
            if (TunnelRules.NotUnicast(leg.Address) is { } what)
                return Invalid(id, $"relay_endpoint '{relayEndpoint}' is {what}, not a unicast address a relay leg can be reached at");
        }
        var clientSide = false;
        await tunnel.UpdateAsync(state =>
        {
            if (state.Exit?.AssignmentId == assignment)
            {
                clientSide = true;
                // Back from a relay: only a handshake from now on proves the direct path.
                var directSince = relayEndpoint is null && state.Exit.RelayEndpoint is not null ? time.GetUtcNow() : state.Exit.DirectPathSince;
                state = state with { Exit = state.Exit with { RelayEndpoint = relayEndpoint, DirectPathSince = directSince } };
            }
            if (state.ClientOf(assignment) is { } client)
            {
                // A new leg hears from this exit first (TunnelSpec): the time it was pointed there restarts the client's peer once.
                var relaySince = relayEndpoint is null ? null : relayEndpoint == client.RelayEndpoint ? client.RelaySince : time.GetUtcNow();
                state = state with { Clients = state.Clients.Replace(client, client with { RelayEndpoint = relayEndpoint, RelaySince = relaySince }) };
            }
            return state;
        }, cancellationToken);
        return Done(id, clientSide ? new ExitChanged.PathChanged(assignment, Relayed: relayEndpoint is not null) : null);
    }
}
