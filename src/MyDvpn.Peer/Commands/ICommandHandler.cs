using MyDvpn.Protocol.Control;

namespace MyDvpn.Peer.Commands;

/// <summary>
/// The seam the data plane plugs into: applies one command and says how it went. The
/// <see cref="CommandExecutor"/> calls it at most once per command id, one command at a time, in arrival order,
/// and never for a command whose deadline has passed. The agent's is a <see cref="CommandRegistry"/>.
/// </summary>
public interface ICommandHandler
{
    /// <returns>The answer to the command (its <c>command_id</c> is filled in by the caller) and what it changed of the exit.</returns>
    Task<CommandApplied> HandleAsync(Command command, CancellationToken cancellationToken);
}

/// <summary>Applies the commands of one kind (one case of <c>Command.body</c>), for a <see cref="CommandRegistry"/>.</summary>
public interface ICommandKindHandler
{
    Command.BodyOneofCase Kind { get; }

    /// <summary>Applies <paramref name="command"/>, whose body is of <see cref="Kind"/>.</summary>
    Task<CommandApplied> HandleAsync(Command command, CancellationToken cancellationToken);
}

/// <summary>A command's answer, and what it changed of the exit this peer uses (null: nothing to tell).</summary>
public sealed record CommandApplied(CommandResponse Response, ExitChanged? Change = null);

/// <summary>Building answers.</summary>
public static class CommandResponses
{
    public static CommandResponse Done(string commandId) =>
        new() { CommandId = commandId, Result = new CommandResult { Done = new Empty() } };

    public static CommandResponse Failed(string commandId, CommandError code, string reason) =>
        new() { CommandId = commandId, Failure = new CommandFailure { Code = code, Reason = reason } };

    /// <summary>The command was taken up but applying it failed on the host: <c>COMMAND_ERROR_DATAPLANE</c> with the cause.</summary>
    public static CommandResponse NotApplied(string commandId, Exception cause) =>
        Failed(commandId, CommandError.Dataplane, $"the peer failed to apply the command: {cause.Message}");

    /// <summary>The proto name of <paramref name="error"/>, e.g. <c>COMMAND_ERROR_EXPIRED</c>.</summary>
    public static string NameOf(CommandError error) =>
        ControlReflection.Descriptor.EnumTypes.Single(e => e.Name == nameof(CommandError)).FindValueByNumber((int)error)?.Name ?? error.ToString();

    /// <summary>The command's body as named in control.proto (e.g. <c>setup_exit</c>); <c>none</c> without one.</summary>
    public static string KindOf(Command command) => CommandKinds.Label(command);

    /// <summary>The proto name of a body case (e.g. <c>rotate_peer</c>).</summary>
    public static string KindOf(Command.BodyOneofCase kind) => CommandKinds.Label(kind);
}
