using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using MyDvpn.Common;
using MyDvpn.Protocol.Control;
using MyDvpn.SuperNode.Exits;

namespace MyDvpn.SuperNode.Commands;

/// <summary>
/// The command catalogue of the SuperNode: the one place that builds each kind of <see cref="Command"/> a peer is sent.
/// Every builder names the kind it builds (<see cref="BuildsAttribute"/>); a test fails when a case of
/// <c>Command.body</c> has no builder. Every command gets a fresh id (a Guid, "N" format); a deadline left null is the
/// issuing session's default.
/// </summary>
public static class PeerCommands
{
    /// <summary>To an exit: accept the assignment's client as a WireGuard peer and forward its traffic.</summary>
    [Builds(Command.BodyOneofCase.SetupExit)]
    public static Command ServeClient(ExitAssignmentRecord assignment, DateTimeOffset deadline) => New(deadline, command =>
        command.SetupExit = new SetupExit
        {
            AssignmentId = assignment.AssignmentId,
            Side = ExitSide.Exit,
            Peer = new WireGuardPeer { PublicKey = ByteString.CopyFrom(assignment.ClientPublicKey), AllowedIps = { assignment.ClientAddress } },
            TunnelAddresses = { assignment.ExitAddress },
            TunnelSubnet = TunnelSubnet(assignment),
            CounterpartPeerId = assignment.ClientPeerId,
            CounterpartRegion = assignment.ClientRegion,
        });

    /// <summary>To a client: use the assignment's exit as its WireGuard peer for what <paramref name="settings"/> route through it.</summary>
    [Builds(Command.BodyOneofCase.SetupExit)]
    public static Command UseExit(ExitAssignmentRecord assignment, ExitSettings settings, DateTimeOffset deadline) => New(deadline, command =>
        command.SetupExit = new SetupExit
        {
            AssignmentId = assignment.AssignmentId,
            Side = ExitSide.Client,
            Peer = ExitPeer(assignment, settings),
            TunnelAddresses = { assignment.ClientAddress },
            TunnelSubnet = TunnelSubnet(assignment),
            CounterpartPeerId = assignment.ExitPeerId,
            CounterpartRegion = assignment.Region,
            CounterpartTunnelAddress = HostOf(assignment.ExitAddress),
        });

    /// <summary>The compensating command of a SetupExit: the <paramref name="side"/> half of the assignment goes away.</summary>
    /// <param name="peerPublicKey">The WireGuard key of the other end (the client's, to an exit; the exit's, to a client).</param>
    [Builds(Command.BodyOneofCase.RemoveExit)]
    public static Command RemoveExit(string assignmentId, byte[] peerPublicKey, ExitSide side, string reason, DateTimeOffset deadline) =>
        New(deadline, command => command.RemoveExit = new RemoveExit
        {
            AssignmentId = assignmentId,
            PeerPublicKey = ByteString.CopyFrom(peerPublicKey),
            Side = side,
            Reason = reason,
        });

    /// <summary>
    /// To a client: move from the exit with <paramref name="previousExitKey"/> (assignment <paramref name="previousAssignmentId"/>)
    /// to the exit of <paramref name="next"/>, make-before-break.
    /// </summary>
    [Builds(Command.BodyOneofCase.RotatePeer)]
    public static Command RotateExit(ExitAssignmentRecord next, string previousAssignmentId, byte[] previousExitKey, string reason,
        ExitSettings settings, DateTimeOffset deadline) => New(deadline, command =>
        command.RotatePeer = new RotatePeer
        {
            AssignmentId = next.AssignmentId,
            NewPeer = ExitPeer(next, settings),
            OldPeerPublicKey = ByteString.CopyFrom(previousExitKey),
            TunnelAddresses = { next.ClientAddress },
            TunnelSubnet = TunnelSubnet(next),
            CounterpartPeerId = next.ExitPeerId,
            CounterpartRegion = next.Region,
            PreviousAssignmentId = previousAssignmentId,
            Reason = reason,
            CounterpartTunnelAddress = HostOf(next.ExitAddress),
        });

    /// <summary>The address of a tunnel address with its prefix (<c>100.96.0.1/24</c> → <c>100.96.0.1</c>); "" when it is none.</summary>
    private static string HostOf(string tunnelAddress) => Cidr.TryParse(tunnelAddress, out var cidr) ? cidr.Address.ToString() : "";

    /// <summary>Points the peer's WireGuard peer <paramref name="peerPublicKey"/> at a relay leg.</summary>
    [Builds(Command.BodyOneofCase.RelaySetup)]
    public static Command RelaySetup(string assignmentId, byte[] peerPublicKey, string relayEndpoint, DateTimeOffset? deadline = null) =>
        New(deadline, command => command.RelaySetup = new RelaySetup
        {
            AssignmentId = assignmentId,
            PeerPublicKey = ByteString.CopyFrom(peerPublicKey),
            RelayEndpoint = relayEndpoint,
        });

    /// <summary>Points the peer's WireGuard peer <paramref name="peerPublicKey"/> back at its direct endpoint.</summary>
    [Builds(Command.BodyOneofCase.RelayTeardown)]
    public static Command RelayTeardown(string assignmentId, byte[] peerPublicKey, string directEndpoint, DateTimeOffset? deadline = null) =>
        New(deadline, command => command.RelayTeardown = new RelayTeardown
        {
            AssignmentId = assignmentId,
            PeerPublicKey = ByteString.CopyFrom(peerPublicKey),
            DirectEndpoint = directEndpoint,
        });

    /// <summary>The peer drops its exit and is told why (an operator's disconnect).</summary>
    [Builds(Command.BodyOneofCase.Disconnect)]
    public static Command Disconnect(string reason, DateTimeOffset? deadline = null) =>
        New(deadline, command => command.Disconnect = new Disconnect { Reason = reason });

    /// <summary>The exit as a client's WireGuard peer: its key and endpoint, what goes through it, the keepalive.</summary>
    private static WireGuardPeer ExitPeer(ExitAssignmentRecord assignment, ExitSettings settings) => new()
    {
        PublicKey = ByteString.CopyFrom(assignment.ExitPublicKey),
        Endpoint = assignment.ExitEndpoint,
        AllowedIps = { settings.ClientAllowedIps },
        PersistentKeepaliveSeconds = (uint)settings.PersistentKeepaliveSeconds,
    };

    /// <summary>
    /// The assignment's exit subnet, which its exit address names (100.96.3.1/24 → 100.96.3.0/24): the agent checks
    /// every tunnel address of the command against it. Empty if the exit address is not a CIDR (the agent refuses that).
    /// </summary>
    private static string TunnelSubnet(ExitAssignmentRecord assignment) =>
        Cidr.TryParse(assignment.ExitAddress, out var address) && assignment.ExitAddress.Contains('/') ? address.Network().ToString() : "";

    private static Command New(DateTimeOffset? deadline, Action<Command> body)
    {
        var command = new Command
        {
            CommandId = Guid.NewGuid().ToString("N"),
            Deadline = deadline is { } at ? Timestamp.FromDateTimeOffset(at) : null,
        };
        body(command);
        return command;
    }
}

/// <summary>Marks a <see cref="PeerCommands"/> builder with the kind of command it builds.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class BuildsAttribute(Command.BodyOneofCase kind) : Attribute
{
    public Command.BodyOneofCase Kind { get; } = kind;
}
