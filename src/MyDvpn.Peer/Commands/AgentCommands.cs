using MyDvpn.Common;
using MyDvpn.Peer.Commands.Handlers;
using MyDvpn.Peer.Tunnel;
using MyDvpn.Protocol.Control;
using MyDvpn.Security;

namespace MyDvpn.Peer.Commands;

/// <summary>
/// The agent's commands: one handler per kind of <c>Command.body</c>, each keeping the <see cref="TunnelState"/> the
/// SuperNode asks for through the <see cref="TunnelStateStore"/> — which (with <c>--data-plane wireguard</c>) has the
/// WireGuard interface made to match before a change is written, so a change the host cannot take fails the command with
/// <c>COMMAND_ERROR_DATAPLANE</c> and leaves the state as it was. A command that does not fit this peer's role or carries a
/// bad key, endpoint or address is <c>COMMAND_ERROR_INVALID</c> with the reason. A new kind of command gets its handler
/// here; a test fails for a kind without one.
/// </summary>
public static class AgentCommands
{
    /// <summary>The agent's handler of every kind.</summary>
    public static IReadOnlyList<ICommandKindHandler> Handlers(TunnelSettings local, TunnelStateStore tunnel, TimeProvider time) =>
    [
        new SetupExitHandler(local, tunnel, time),
        new RemoveExitHandler(tunnel),
        new RotatePeerHandler(local, tunnel, time),
        new RelaySetupHandler(tunnel, time),
        new RelayTeardownHandler(tunnel, time),
        new DisconnectHandler(tunnel),
    ];

    /// <summary>The agent's registry: <see cref="Handlers"/>, every command recorded in <c>commands.jsonl</c> in <paramref name="stateDir"/>.</summary>
    public static CommandRegistry Registry(string stateDir, TunnelSettings local, TunnelStateStore tunnel, TimeProvider time) =>
        new(Handlers(local, tunnel, time), new CommandLog(stateDir, time));
}

/// <summary>What the handlers need to know of this peer to answer exit commands.</summary>
/// <param name="Key">This peer's WireGuard key: its public key is the answer to an exit-side SetupExit.</param>
/// <param name="MaxClients">Clients served at once (<c>--max-clients</c>).</param>
/// <param name="PublicEndpoint">Where clients reach this exit (<c>--public-endpoint</c>); null to let the SuperNode use the stream's address.</param>
/// <param name="ListenPort">This peer's WireGuard UDP port (<c>--wg-port</c>).</param>
public sealed record TunnelSettings(PeerRole Role, WireGuardKey Key, int MaxClients, HostPort? PublicEndpoint, int ListenPort)
{
    public static TunnelSettings Of(PeerSettings settings, WireGuardKey key) =>
        new(settings.Role, key, settings.DataPlane.MaxClients, settings.DataPlane.PublicEndpoint, settings.DataPlane.WireGuardPort);
}
