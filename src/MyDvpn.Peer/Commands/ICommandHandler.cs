using MyDvpn.Protocol.Control;

namespace MyDvpn.Peer.Commands;

/// <summary>
/// The seam the data plane plugs into: applies one command and says how it went. The
/// <see cref="CommandExecutor"/> calls it at most once per command id, one command at a time, in arrival order,
/// and never for a command whose deadline has passed.
/// </summary>
public interface ICommandHandler
{
    /// <returns>The answer to the command; its <c>command_id</c> is filled in by the caller.</returns>
    Task<CommandResponse> HandleAsync(Command command, CancellationToken cancellationToken);
}

/// <summary>Building answers.</summary>
public static class CommandResponses
{
    public static CommandResponse Done(string commandId) =>
        new() { CommandId = commandId, Result = new CommandResult { Done = new Empty() } };

    public static CommandResponse Failed(string commandId, CommandError code, string reason) =>
        new() { CommandId = commandId, Failure = new CommandFailure { Code = code, Reason = reason } };

    /// <summary>The proto name of <paramref name="error"/>, e.g. <c>COMMAND_ERROR_EXPIRED</c>.</summary>
    public static string NameOf(CommandError error) =>
        ControlReflection.Descriptor.EnumTypes.Single(e => e.Name == nameof(CommandError)).FindValueByNumber((int)error)?.Name ?? error.ToString();

    /// <summary>The command's body as named in control.proto (e.g. <c>setup_exit</c>); <c>none</c> without one.</summary>
    public static string KindOf(Command command) =>
        Command.Descriptor.Oneofs.Single(o => o.Name == "body").Accessor.GetCaseFieldDescriptor(command)?.Name ?? "none";
}
