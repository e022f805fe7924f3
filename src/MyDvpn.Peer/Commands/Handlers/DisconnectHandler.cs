using MyDvpn.Peer.Tunnel;
using MyDvpn.Protocol.Control;

namespace MyDvpn.Peer.Commands.Handlers;

/// <summary>
/// Disconnect: the SuperNode let this peer's session go; the exit it uses is dropped (served clients stay). It tells
/// <see cref="ExitChanged.Disconnected"/> even when the host could not drop the exit: the session is gone either way.
/// </summary>
internal sealed class DisconnectHandler(TunnelStateStore tunnel) : ICommandKindHandler
{
    public Command.BodyOneofCase Kind => Command.BodyOneofCase.Disconnect;

    public async Task<CommandApplied> HandleAsync(Command command, CancellationToken cancellationToken)
    {
        var disconnected = new ExitChanged.Disconnected(command.Disconnect.Reason);
        try
        {
            await tunnel.UpdateAsync(state => state with { Exit = null }, cancellationToken);
        }
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
        {
            return new(CommandResponses.NotApplied(command.CommandId, ex), disconnected);
        }
        return new(CommandResponses.Done(command.CommandId), disconnected);
    }
}
