using System.Collections.Immutable;
using System.Text.Json;
using Google.Protobuf;
using MyDvpn.Common;
using MyDvpn.Peer.Tunnel;
using MyDvpn.Protocol.Control;
using MyDvpn.Security;

namespace MyDvpn.Peer.Commands;

/// <summary>
/// Keeps the <see cref="TunnelState"/> the SuperNode's commands ask for, and records every command. SetupExit
/// (side <c>EXIT_SIDE_EXIT</c>) adds a served client — at most <see cref="TunnelSettings.MaxClients"/>, more are
/// <c>COMMAND_ERROR_CAPACITY</c> — and is answered with this peer's WireGuard public key, <c>--public-endpoint</c> (or
/// "" for the SuperNode to fill in) and <c>--wg-port</c>; SetupExit (side <c>EXIT_SIDE_CLIENT</c>) sets the exit,
/// replacing an older one; RemoveExit removes the half of its assignment (an unknown one is done already); Disconnect
/// drops the exit. Applying the same assignment again changes nothing. A command that does not fit this peer's role or
/// carries a bad key, endpoint or address is <c>COMMAND_ERROR_INVALID</c> with the reason. Other commands are
/// acknowledged with <c>done</c>.
/// <para>
/// Every command and its answer is also appended to <c>commands.jsonl</c> in the state directory, one JSON object per
/// line (<c>command_id</c>, <c>kind</c>, <c>received_at</c>, <c>deadline</c>, <c>body</c> as protobuf JSON,
/// <c>answer</c>, and <c>result</c> for a SetupExitResult).
/// </para>
/// <para>
/// Every change goes through the <see cref="TunnelStateStore"/>, which (with <c>--data-plane wireguard</c>) has the
/// WireGuard interface made to match before the change is written: a change the host cannot take fails the command with
/// <c>COMMAND_ERROR_DATAPLANE</c> and leaves the state as it was.
/// </para>
/// </summary>
public sealed class TunnelCommandHandler(string stateDir, TunnelSettings local, TunnelStateStore tunnel, TimeProvider time) : ICommandHandler
{
    public const string FileName = "commands.jsonl";

    private const int MaxKeepaliveSeconds = 65535;

    private static readonly JsonFormatter BodyFormatter = new(JsonFormatter.Settings.Default.WithPreserveProtoFieldNames(true));

    private readonly SemaphoreSlim gate = new(1, 1);

    public string Path { get; } = System.IO.Path.Combine(stateDir, FileName);

    public async Task<CommandResponse> HandleAsync(Command command, CancellationToken cancellationToken)
    {
        var id = command.CommandId;
        var response = command.BodyCase switch
        {
            Command.BodyOneofCase.None => CommandResponses.Failed(id, CommandError.Invalid, "the command has no body"),
            Command.BodyOneofCase.SetupExit => await SetupExitAsync(id, command.SetupExit, cancellationToken),
            Command.BodyOneofCase.RemoveExit => await RemoveExitAsync(id, command.RemoveExit, cancellationToken),
            Command.BodyOneofCase.Disconnect => await DisconnectAsync(id, cancellationToken),
            Command.BodyOneofCase.RelaySetup => await RelayAsync(id, command.RelaySetup.AssignmentId, command.RelaySetup.RelayEndpoint, cancellationToken),
            Command.BodyOneofCase.RelayTeardown => await RelayAsync(id, command.RelayTeardown.AssignmentId, null, cancellationToken),
            _ => CommandResponses.Done(id),
        };
        await AppendAsync(Line(command, response), cancellationToken);
        return response;
    }

    private async Task<CommandResponse> SetupExitAsync(string id, SetupExit setup, CancellationToken cancellationToken)
    {
        if (string.IsNullOrEmpty(setup.AssignmentId))
            return Invalid(id, "assignment_id is empty");
        if (setup.Peer is null)
            return Invalid(id, "peer is missing");
        if (!WireGuardKey.IsPublicKey(setup.Peer.PublicKey.Span))
            return Invalid(id, $"peer.public_key is {setup.Peer.PublicKey.Length} bytes; a WireGuard public key is {WireGuardKey.KeyLength}");
        return setup.Side switch
        {
            ExitSide.Exit => await ServeClientAsync(id, setup, cancellationToken),
            ExitSide.Client => await UseExitAsync(id, setup, cancellationToken),
            _ => Invalid(id, $"side is {setup.Side}: a SetupExit is for the exit (EXIT_SIDE_EXIT) or the client (EXIT_SIDE_CLIENT)"),
        };
    }

    private async Task<CommandResponse> ServeClientAsync(string id, SetupExit setup, CancellationToken cancellationToken)
    {
        if (local.Role is not (PeerRole.Exit or PeerRole.Both))
            return Invalid(id, $"this peer runs with role {RoleName(local.Role)}: only an exit (role exit or both) serves clients");
        if (Cidr.ProblemIn(setup.Peer.AllowedIps, "peer.allowed_ips") is { } ipsProblem)
            return Invalid(id, ipsProblem);
        if (Cidr.ProblemIn(setup.TunnelAddresses, "tunnel_addresses") is { } addressProblem)
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
            return CommandResponses.Failed(id, CommandError.Capacity,
                $"this exit serves {local.MaxClients} clients already, its maximum (--max-clients)");
        }

        return new CommandResponse
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
        };

        ServedClient Client(DateTimeOffset since) =>
            new(assignment, setup.CounterpartPeerId, setup.CounterpartRegion, key, [.. setup.Peer.AllowedIps], since);
    }

    private async Task<CommandResponse> UseExitAsync(string id, SetupExit setup, CancellationToken cancellationToken)
    {
        if (local.Role is not (PeerRole.Client or PeerRole.Both))
            return Invalid(id, $"this peer runs with role {RoleName(local.Role)}: only a client (role client or both) uses an exit");
        HostPort endpoint;
        try
        {
            endpoint = HostPort.Parse(setup.Peer.Endpoint, "peer.endpoint");
        }
        catch (ConfigurationException ex)
        {
            return Invalid(id, ex.Message);
        }
        if (Cidr.ProblemIn(setup.Peer.AllowedIps, "peer.allowed_ips") is { } ipsProblem)
            return Invalid(id, ipsProblem);
        if (Cidr.ProblemIn(setup.TunnelAddresses, "tunnel_addresses") is { } addressProblem)
            return Invalid(id, addressProblem);
        if (setup.Peer.PersistentKeepaliveSeconds > MaxKeepaliveSeconds)
            return Invalid(id, $"peer.persistent_keepalive_seconds is {setup.Peer.PersistentKeepaliveSeconds}; WireGuard takes at most {MaxKeepaliveSeconds}");

        var now = time.GetUtcNow();
        await tunnel.UpdateAsync(state =>
        {
            var since = state.Exit is { } held && held.AssignmentId == setup.AssignmentId ? held.Since : now;
            var exit = new ClientExit(
                setup.AssignmentId,
                setup.CounterpartPeerId,
                setup.CounterpartRegion,
                setup.Peer.PublicKey.ToBase64(),
                endpoint.ToString(),
                [.. setup.Peer.AllowedIps],
                (int)setup.Peer.PersistentKeepaliveSeconds,
                [.. setup.TunnelAddresses],
                since);
            return state with { Exit = exit };
        }, cancellationToken);
        return CommandResponses.Done(id);
    }

    private async Task<CommandResponse> RemoveExitAsync(string id, RemoveExit remove, CancellationToken cancellationToken)
    {
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
        return CommandResponses.Done(id);
    }

    /// <summary>
    /// RelaySetup points the WireGuard peer of the assignment (the exit, for a client; the client, for an exit) at a
    /// relay leg; RelayTeardown (<paramref name="relayEndpoint"/> null) goes back to the direct path. An assignment this
    /// peer does not hold is done already.
    /// </summary>
    private async Task<CommandResponse> RelayAsync(string id, string assignment, string? relayEndpoint, CancellationToken cancellationToken)
    {
        if (string.IsNullOrEmpty(assignment))
            return Invalid(id, "assignment_id is empty");
        if (relayEndpoint is not null && !System.Net.IPEndPoint.TryParse(relayEndpoint, out _))
            return Invalid(id, $"relay_endpoint '{relayEndpoint}' is not an ip:port");
        await tunnel.UpdateAsync(state =>
        {
            if (state.Exit?.AssignmentId == assignment)
                state = state with { Exit = state.Exit with { RelayEndpoint = relayEndpoint } };
            if (state.ClientOf(assignment) is { } client)
                state = state with { Clients = state.Clients.Replace(client, client with { RelayEndpoint = relayEndpoint }) };
            return state;
        }, cancellationToken);
        return CommandResponses.Done(id);
    }

    private async Task<CommandResponse> DisconnectAsync(string id, CancellationToken cancellationToken)
    {
        await tunnel.UpdateAsync(state => state with { Exit = null }, cancellationToken);
        return CommandResponses.Done(id);
    }

    private static CommandResponse Invalid(string id, string reason) => CommandResponses.Failed(id, CommandError.Invalid, reason);

    private static string RoleName(PeerRole role) => role.ToString().ToLowerInvariant();

    private byte[] Line(Command command, CommandResponse response)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("command_id", command.CommandId);
            json.WriteString("kind", CommandResponses.KindOf(command));
            json.WriteString("received_at", time.GetUtcNow());
            if (command.Deadline is { } deadline)
                json.WriteString("deadline", deadline.ToDateTimeOffset());
            else
                json.WriteNull("deadline");
            json.WritePropertyName("body");
            if (Body(command) is { } body)
                json.WriteRawValue(BodyFormatter.Format(body));
            else
                json.WriteNullValue();
            json.WriteString("answer", response.OutcomeCase == CommandResponse.OutcomeOneofCase.Result
                ? "done"
                : $"failed: {CommandResponses.NameOf(response.Failure.Code)}: {response.Failure.Reason}");
            if (response.Result?.SetupExit is { } result)
            {
                json.WritePropertyName("result");
                json.WriteRawValue(BodyFormatter.Format(result));
            }
            json.WriteEndObject();
        }
        buffer.WriteByte((byte)'\n');
        return buffer.ToArray();
    }

    private static IMessage? Body(Command command) => command.BodyCase switch
    {
        Command.BodyOneofCase.SetupExit => command.SetupExit,
        Command.BodyOneofCase.RemoveExit => command.RemoveExit,
        Command.BodyOneofCase.RotatePeer => command.RotatePeer,
        Command.BodyOneofCase.RelaySetup => command.RelaySetup,
        Command.BodyOneofCase.RelayTeardown => command.RelayTeardown,
        Command.BodyOneofCase.Disconnect => command.Disconnect,
        _ => null,
    };

    private async Task AppendAsync(byte[] line, CancellationToken cancellationToken)
    {
        await gate.WaitAsync(cancellationToken);
        try
        {
            await using var stream = new FileStream(Path, FileMode.Append, FileAccess.Write, FileShare.Read, 4096, FileOptions.Asynchronous);
            await stream.WriteAsync(line, cancellationToken);
            await stream.FlushAsync(cancellationToken);
            stream.Flush(flushToDisk: true);
        }
        finally
        {
            gate.Release();
        }
    }
}

/// <summary>What the handler needs to know of this peer to answer exit commands.</summary>
/// <param name="Key">This peer's WireGuard key: its public key is the answer to an exit-side SetupExit.</param>
/// <param name="MaxClients">Clients served at once (<c>--max-clients</c>).</param>
/// <param name="PublicEndpoint">Where clients reach this exit (<c>--public-endpoint</c>); null to let the SuperNode use the stream's address.</param>
/// <param name="ListenPort">This peer's WireGuard UDP port (<c>--wg-port</c>).</param>
public sealed record TunnelSettings(PeerRole Role, WireGuardKey Key, int MaxClients, HostPort? PublicEndpoint, int ListenPort)
{
    public static TunnelSettings Of(PeerSettings settings, WireGuardKey key) =>
        new(settings.Role, key, settings.DataPlane.MaxClients, settings.DataPlane.PublicEndpoint, settings.DataPlane.WireGuardPort);
}
