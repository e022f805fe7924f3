using MyDvpn.Peer.Tunnel;
using MyDvpn.Protocol.Control;
using static MyDvpn.Peer.Commands.Handlers.CommandChecks;

namespace MyDvpn.Peer.Commands.Handlers;

/// <summary>
/// RotatePeer, to a client (role client or both): it moves from the exit it holds (<c>old_peer_public_key</c>) to the
/// new one, make-before-break. The exit is replaced in one change of the <see cref="TunnelState"/> — new assignment,
/// key, endpoint, allowed IPs, keepalive and tunnel address — so the data plane reconciles once, adding the new exit's
/// peer with the full-tunnel allowed IPs before it removes the old one. A relay leg of the old assignment does not carry
/// over. The move is recorded as the state's <see cref="TunnelState.LastRotation"/> and told as
/// <see cref="ExitChanged.Rotated"/>. A RotatePeer whose <c>assignment_id</c> the peer already uses is a redelivery:
/// done, nothing changes. Holding no exit, or another one, is <c>COMMAND_ERROR_INVALID</c>: there is nothing to rotate.
/// </summary>
internal sealed class RotatePeerHandler(TunnelSettings local, TunnelStateStore tunnel, TimeProvider time) : ICommandKindHandler
{
    public Command.BodyOneofCase Kind => Command.BodyOneofCase.RotatePeer;

    public async Task<CommandApplied> HandleAsync(Command command, CancellationToken cancellationToken)
    {
        var id = command.CommandId;
        var rotate = command.RotatePeer;
        if (!IsClient(local.Role))
            return Invalid(id, $"this peer runs with role {RoleName(local.Role)}: only a client (role client or both) uses an exit to rotate");
        if (string.IsNullOrEmpty(rotate.AssignmentId))
            return Invalid(id, "assignment_id is empty");
        if (PeerProblem(rotate.NewPeer, "new_peer") is { } peerProblem)
            return Invalid(id, peerProblem);
        if (KeyProblem(rotate.OldPeerPublicKey.Span, "old_peer_public_key") is { } oldKeyProblem)
            return Invalid(id, oldKeyProblem);
        if (ClientExitProblem(rotate.AssignmentId, rotate.CounterpartPeerId, rotate.CounterpartRegion, rotate.NewPeer, "new_peer", rotate.TunnelAddresses, rotate.TunnelSubnet,
                rotate.CounterpartTunnelAddress, out var exit) is { } problem)
        {
            return Invalid(id, problem);
        }

        var oldKey = rotate.OldPeerPublicKey.ToBase64();
        var now = time.GetUtcNow();
        var to = exit! with { Since = now };
        ClientExit? from = null;
        string? nothingToRotate = null;
        await tunnel.UpdateAsync(state =>
        {
            switch (state.Exit)
            {
                case { } held when held.AssignmentId == rotate.AssignmentId:
                    // Applied before (a redelivery under another command id): once is enough.
                    return state;
                case { } held when held.PublicKey == oldKey:
                    from = held;
                    return state with { Exit = to, LastRotation = new ExitRotation(now, rotate.Reason, RotationEnd.Of(held), RotationEnd.Of(to)) };
                case { } held:
                    nothingToRotate = $"this peer's exit is {held.PeerId} (assignment {held.AssignmentId}), whose key is not old_peer_public_key {oldKey}";
                    return state;
                default:
                    nothingToRotate = $"this peer holds no exit and does not use assignment {rotate.AssignmentId}";
                    return state;
            }
        }, cancellationToken);

        if (nothingToRotate is not null)
            return Invalid(id, $"{nothingToRotate}: nothing to rotate");
        if (from is null)
            return Done(id);
        return Done(id, new ExitChanged.Rotated(from.AssignmentId, from.PeerId, to.AssignmentId, to.PeerId, to.Region, to.Endpoint, rotate.Reason));
    }
}
