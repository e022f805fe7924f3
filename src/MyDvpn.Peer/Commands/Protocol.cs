using MyDvpn.Protocol.Control;

namespace MyDvpn.Peer.Commands;

/// <summary>Apply <paramref name="Command"/> unless its id was applied already; the answer goes back to the sender.</summary>
/// <remarks>Protobuf messages are mutable: neither side changes one after sending it.</remarks>
public sealed record ExecuteCommand(Command Command);

/// <summary>The answer to an <see cref="ExecuteCommand"/>: the first answer given to that command id.</summary>
public sealed record CommandAnswered(CommandResponse Response);

/// <summary>
/// What a command changed of the exit this peer uses as a client. The <see cref="CommandExecutor"/> publishes it on the
/// actor system's event stream once, when the command's first answer is stored; the control channel, subscribed, asks for
/// an exit or stops asking accordingly, without reading the commands itself.
/// </summary>
public abstract record ExitChanged
{
    private ExitChanged()
    {
    }

    /// <summary>A client-side SetupExit was applied: the peer uses this exit.</summary>
    public sealed record Assigned(string AssignmentId, string ExitPeerId, string ExitRegion, string Endpoint) : ExitChanged;

    /// <summary>A client-side RemoveExit was applied: assignment <paramref name="AssignmentId"/> is over (if the peer held it).</summary>
    public sealed record Removed(string AssignmentId, string Reason) : ExitChanged;

    /// <summary>A RotatePeer was applied: the peer moved from one exit to another.</summary>
    public sealed record Rotated(string FromAssignmentId, string FromExitPeerId, string AssignmentId, string ExitPeerId, string ExitRegion,
        string Endpoint, string Reason) : ExitChanged;

    /// <summary>A RelaySetup or RelayTeardown was applied: the path to the exit of <paramref name="AssignmentId"/> moved to a relay leg or back to direct.</summary>
    public sealed record PathChanged(string AssignmentId, bool Relayed) : ExitChanged;

    /// <summary>The SuperNode disconnected this peer: its exit is dropped.</summary>
    public sealed record Disconnected(string Reason) : ExitChanged;
}
