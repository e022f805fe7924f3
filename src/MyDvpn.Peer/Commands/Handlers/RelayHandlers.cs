using MyDvpn.Peer.Tunnel;
using MyDvpn.Protocol.Control;
using static MyDvpn.Peer.Commands.Handlers.CommandChecks;

namespace MyDvpn.Peer.Commands.Handlers;

/// <summary>RelaySetup: the WireGuard peer of the assignment (the exit, for a client; the client, for an exit) goes through a relay leg.</summary>
internal sealed class RelaySetupHandler(TunnelStateStore tunnel) : ICommandKindHandler
{
    public Command.BodyOneofCase Kind => Command.BodyOneofCase.RelaySetup;

    public Task<CommandApplied> HandleAsync(Command command, CancellationToken cancellationToken) =>
        RelayPath.PointAsync(tunnel, command.CommandId, command.RelaySetup.AssignmentId, command.RelaySetup.RelayEndpoint, cancellationToken);
}

/// <summary>RelayTeardown: the WireGuard peer of the assignment goes back to the direct path.</summary>
internal sealed class RelayTeardownHandler(TunnelStateStore tunnel) : ICommandKindHandler
{
    public Command.BodyOneofCase Kind => Command.BodyOneofCase.RelayTeardown;

    public Task<CommandApplied> HandleAsync(Command command, CancellationToken cancellationToken) =>
        RelayPath.PointAsync(tunnel, command.CommandId, command.RelayTeardown.AssignmentId, null, cancellationToken);
}

internal static class RelayPath
{
    /// <summary>
    /// Points the WireGuard peer of <paramref name="assignment"/> at <paramref name="relayEndpoint"/> (null: the direct
    /// path). An assignment this peer does not hold is done already.
    /// </summary>
    public static async Task<CommandApplied> PointAsync(TunnelStateStore tunnel, string id, string assignment, string? relayEndpoint,
        CancellationToken cancellationToken)
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
        await tunnel.UpdateAsync(state =>
        {
            if (state.Exit?.AssignmentId == assignment)
                state = state with { Exit = state.Exit with { RelayEndpoint = relayEndpoint } };
            if (state.ClientOf(assignment) is { } client)
                state = state with { Clients = state.Clients.Replace(client, client with { RelayEndpoint = relayEndpoint }) };
            return state;
        }, cancellationToken);
        return Done(id);
    }
}
