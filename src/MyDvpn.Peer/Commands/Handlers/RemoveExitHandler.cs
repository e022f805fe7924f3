using MyDvpn.Peer.Tunnel;
using MyDvpn.Protocol.Control;
using static MyDvpn.Peer.Commands.Handlers.CommandChecks;

namespace MyDvpn.Peer.Commands.Handlers;

/// <summary>
/// RemoveExit, the compensating command of SetupExit: the half of its assignment on this peer goes (side
/// <c>EXIT_SIDE_CLIENT</c> the exit it uses, <c>EXIT_SIDE_EXIT</c> the client it serves, unspecified either). An
/// assignment this peer does not hold is done already. The client side tells <see cref="ExitChanged.Removed"/>.
/// </summary>
internal sealed class RemoveExitHandler(TunnelStateStore tunnel) : ICommandKindHandler
{
    public Command.BodyOneofCase Kind => Command.BodyOneofCase.RemoveExit;

    public async Task<CommandApplied> HandleAsync(Command command, CancellationToken cancellationToken)
    {
        var id = command.CommandId;
        var remove = command.RemoveExit;
        if (string.IsNullOrEmpty(remove.AssignmentId))
            return Invalid(id, "assignment_id is empty");
        var assignment = remove.AssignmentId;
        var exitSide = remove.Side is ExitSide.Exit or ExitSide.Unspecified;
        var clientSide = remove.Side is ExitSide.Client or ExitSide.Unspecified;
        await tunnel.UpdateAsync(state =>
        {
            if (clientSide && state.Exit?.AssignmentId == assignment)
                state = state with { Exit = null };
            if (exitSide && state.ClientOf(assignment) is { } client)
                state = state with { Clients = state.Clients.Remove(client) };
            return state;
        }, cancellationToken);
        return Done(id, clientSide ? new ExitChanged.Removed(assignment, remove.Reason) : null);
    }
}
