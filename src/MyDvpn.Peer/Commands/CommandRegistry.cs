using System.Collections.Frozen;
using MyDvpn.Protocol.Control;

namespace MyDvpn.Peer.Commands;

/// <summary>
/// The command handlers by kind: a command goes to the one <see cref="ICommandKindHandler"/> of its case of
/// <c>Command.body</c>. A command without a body is <c>COMMAND_ERROR_INVALID</c>; one of a kind no handler applies is
/// <c>COMMAND_ERROR_UNSUPPORTED</c> with the kind named — never answered as done; a handler that fails (the host could
/// not take the change) is <c>COMMAND_ERROR_DATAPLANE</c>. Every command and its answer goes to the <see cref="CommandLog"/>,
/// if there is one.
/// </summary>
public sealed class CommandRegistry : ICommandHandler
{
    private readonly FrozenDictionary<Command.BodyOneofCase, ICommandKindHandler> handlers;
    private readonly CommandLog? log;

    /// <exception cref="ArgumentException">Two handlers for one kind, or a handler for no kind.</exception>
    public CommandRegistry(IEnumerable<ICommandKindHandler> handlers, CommandLog? log = null)
    {
        var byKind = new Dictionary<Command.BodyOneofCase, ICommandKindHandler>();
        foreach (var handler in handlers)
        {
            if (handler.Kind == Command.BodyOneofCase.None)
                throw new ArgumentException($"{handler.GetType().Name} handles no kind of command", nameof(handlers));
            if (!byKind.TryAdd(handler.Kind, handler))
                throw new ArgumentException($"two handlers for {CommandResponses.KindOf(handler.Kind)}: {byKind[handler.Kind].GetType().Name} and {handler.GetType().Name}", nameof(handlers));
        }
        this.handlers = byKind.ToFrozenDictionary();
        this.log = log;
    }

    /// <summary>The kinds this registry applies.</summary>
    public IReadOnlyCollection<Command.BodyOneofCase> Kinds => handlers.Keys;

    /// <summary>The command log's file; null without one.</summary>
    public string? LogPath => log?.Path;

    public async Task<CommandApplied> HandleAsync(Command command, CancellationToken cancellationToken)
    {
        var id = command.CommandId;
        CommandApplied applied;
        if (command.BodyCase == Command.BodyOneofCase.None)
            applied = new(CommandResponses.Failed(id, CommandError.Invalid, "the command has no body"));
        else if (handlers.TryGetValue(command.BodyCase, out var handler))
            applied = await ApplyAsync(handler, command, cancellationToken);
        else
            applied = new(CommandResponses.Failed(id, CommandError.Unsupported, $"this agent does not apply {CommandResponses.KindOf(command)} commands"));
        if (log is not null)
            await log.AppendAsync(command, applied.Response, cancellationToken);
        return applied;
    }

    /// <summary>The handler's answer; a change the host could not take is <c>COMMAND_ERROR_DATAPLANE</c> (the state stays as it was).</summary>
    private static async Task<CommandApplied> ApplyAsync(ICommandKindHandler handler, Command command, CancellationToken cancellationToken)
    {
        try
        {
            return await handler.HandleAsync(command, cancellationToken);
        }
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
        {
            return new CommandApplied(CommandResponses.NotApplied(command.CommandId, ex));
        }
    }
}
