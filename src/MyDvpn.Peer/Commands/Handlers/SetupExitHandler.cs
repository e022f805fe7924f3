using System.Collections.Immutable;
using Google.Protobuf;
using MyDvpn.Peer.Tunnel;
using MyDvpn.Protocol.Control;
using static MyDvpn.Peer.Commands.Handlers.CommandChecks;

namespace MyDvpn.Peer.Commands.Handlers;

/// <summary>
/// SetupExit. Side <c>EXIT_SIDE_EXIT</c> (role exit or both) adds a served client — at most
/// <see cref="TunnelSettings.MaxClients"/>, more are <c>COMMAND_ERROR_CAPACITY</c> — and is answered with this peer's
/// WireGuard public key, <c>--public-endpoint</c> (or "" for the SuperNode to fill in) and <c>--wg-port</c>; a new
/// assignment for a served client's key replaces the old one. Side <c>EXIT_SIDE_CLIENT</c> (role client or both) sets the
/// exit, replacing an older one, and tells <see cref="ExitChanged.Assigned"/>. The same assignment again changes nothing.
/// </summary>
internal sealed class SetupExitHandler(TunnelSettings local, TunnelStateStore tunnel, TimeProvider time) : ICommandKindHandler
{
    public Command.BodyOneofCase Kind => Command.BodyOneofCase.SetupExit;

    public async Task<CommandApplied> HandleAsync(Command command, CancellationToken cancellationToken)
    {
        var id = command.CommandId;
        var setup = command.SetupExit;
        if (string.IsNullOrEmpty(setup.AssignmentId))
            return Invalid(id, "assignment_id is empty");
        if (PeerProblem(setup.Peer, "peer") is { } peerProblem)
            return Invalid(id, peerProblem);
        return setup.Side switch
        {
            ExitSide.Exit => await ServeClientAsync(id, setup, cancellationToken),
            ExitSide.Client => await UseExitAsync(id, setup, cancellationToken),
            _ => Invalid(id, $"side is {setup.Side}: a SetupExit is for the exit (EXIT_SIDE_EXIT) or the client (EXIT_SIDE_CLIENT)"),
        };
    }

    private async Task<CommandApplied> ServeClientAsync(string id, SetupExit setup, CancellationToken cancellationToken)
    {
        if (local.Role is not (PeerRole.Exit or PeerRole.Both))
            return Invalid(id, $"this peer runs with role {RoleName(local.Role)}: only an exit (role exit or both) serves clients");
        if (TunnelRules.SubnetProblem(setup.TunnelSubnet, "tunnel_subnet", out var subnet) is { } subnetProblem)
            return Invalid(id, subnetProblem);
        if (TunnelRules.HostRoutesProblem(setup.Peer.AllowedIps, subnet, "peer.allowed_ips") is { } ipsProblem)
            return Invalid(id, ipsProblem);
        if (TunnelRules.ExitAddressesProblem(setup.TunnelAddresses, subnet, "tunnel_addresses") is { } addressProblem)
            return Invalid(id, addressProblem);

        var assignment = setup.AssignmentId;
        var key = setup.Peer.PublicKey.ToBase64();
        var now = time.GetUtcNow();
        var full = false;
        await tunnel.UpdateAsync(state =>
        {
            var clients = ImmutableList.CreateBuilder<ServedClient>();
            var placed = false;
            foreach (var client in state.Clients)
            {
                if (client.AssignmentId == assignment)
                {
                    clients.Add(Client(client.Since));
                    placed = true;
                }
                else if (client.PublicKey != key)
                {
                    // Another assignment for the same key is over: WireGuard holds one peer per key.
                    clients.Add(client);
                }
            }
            if (!placed)
            {
                if (clients.Count >= local.MaxClients)
                {
                    full = true;
                    return state;
                }
                clients.Add(Client(now));
            }
            return state with { ExitAddresses = [.. setup.TunnelAddresses], Clients = clients.ToImmutable() };
        }, cancellationToken);
        if (full)
        {
            return new(CommandResponses.Failed(id, CommandError.Capacity,
                $"this exit serves {local.MaxClients} clients already, its maximum (--max-clients)"));
        }

        return new(new CommandResponse
        {
            CommandId = id,
            Result = new CommandResult
            {
                SetupExit = new SetupExitResult
                {
                    PublicKey = ByteString.CopyFrom(local.Key.PublicKey),
                    Endpoint = local.PublicEndpoint?.ToString() ?? "",
                    ListenPort = (uint)local.ListenPort,
                },
            },
        });

        ServedClient Client(DateTimeOffset since) =>
            new(assignment, setup.CounterpartPeerId, setup.CounterpartRegion, key, [.. setup.Peer.AllowedIps], since);
    }

    private async Task<CommandApplied> UseExitAsync(string id, SetupExit setup, CancellationToken cancellationToken)
    {
        if (!IsClient(local.Role))
            return Invalid(id, $"this peer runs with role {RoleName(local.Role)}: only a client (role client or both) uses an exit");
        if (ClientExitProblem(setup.AssignmentId, setup.CounterpartPeerId, setup.CounterpartRegion, setup.Peer, "peer", setup.TunnelAddresses, setup.TunnelSubnet,
                setup.CounterpartTunnelAddress, out var exit) is { } problem)
        {
            return Invalid(id, problem);
        }

        var now = time.GetUtcNow();
        await tunnel.UpdateAsync(state =>
        {
            var since = state.Exit is { } held && held.AssignmentId == setup.AssignmentId ? held.Since : now;
            return state with { Exit = exit! with { Since = since } };
        }, cancellationToken);
        return Done(id, new ExitChanged.Assigned(setup.AssignmentId, setup.CounterpartPeerId, setup.CounterpartRegion, exit!.Endpoint));
    }
}
