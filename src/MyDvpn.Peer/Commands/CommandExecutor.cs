using System.Diagnostics;
using Akka.Actor;
using Microsoft.Extensions.Logging;
using MyDvpn.Protocol.Control;
using MyDvpn.Telemetry;

namespace MyDvpn.Peer.Commands;

/// <summary>
/// Applies commands at most once. A command id already applied is answered with its first answer, read from the
/// <see cref="AppliedCommandStore"/>; a command past its deadline is answered <c>COMMAND_ERROR_EXPIRED</c> without
/// being applied; any other goes to the <see cref="ICommandHandler"/>, and its answer is stored before it is sent.
/// Commands are applied one at a time, in arrival order; a duplicate arriving while its id is queued or being applied
/// gets the same answer when it is ready. What a command changed of the exit (<see cref="ExitChanged"/>) is published on
/// the actor system's event stream once, when its answer is stored, before the answer goes out.
/// </summary>
public sealed class CommandExecutor : ReceiveActor
{
    private sealed record LookedUp(Command Command, CommandResponse? Stored);

    private sealed record LookupFailed(Command Command, Exception Cause);

    private sealed record Handled(Command Command, CommandApplied Applied);

    private sealed record Stored(string CommandId, Command.BodyOneofCase Kind, CommandResponse Response, ExitChanged? Change);

    private sealed record StoreFailed(string CommandId, CommandApplied Applied, Exception Cause);

    private readonly AppliedCommandStore store;
    private readonly ICommandHandler handler;
    private readonly TimeProvider time;
    private readonly ILogger logger;
    private readonly string peerId;
    private readonly string region;
    private readonly PeerMetrics? metrics;
    private readonly CancellationTokenSource stopping = new();
    private readonly Queue<Command> queue = new();

    // Who waits for each id that is queued or being applied.
    private readonly Dictionary<string, List<IActorRef>> waiting = new(StringComparer.Ordinal);

    // Answers the handler gave whose storing failed: never applied again, sent only once stored.
    private readonly Dictionary<string, CommandApplied> unstored = new(StringComparer.Ordinal);

    private bool busy;

    public static Props Props(AppliedCommandStore store, ICommandHandler handler, TimeProvider time, ILogger logger, string peerId, string region,
        PeerMetrics? metrics = null) =>
        Akka.Actor.Props.Create(() => new CommandExecutor(store, handler, time, logger, peerId, region, metrics));

    /// <param name="metrics">Where each command's first answer is counted; null: not counted.</param>
    public CommandExecutor(AppliedCommandStore store, ICommandHandler handler, TimeProvider time, ILogger logger, string peerId, string region,
        PeerMetrics? metrics = null)
    {
        this.metrics = metrics;
        this.store = store;
        this.handler = handler;
        this.time = time;
        this.logger = logger;
        this.peerId = peerId;
        this.region = region;

        Receive<ExecuteCommand>(OnExecute);
        Receive<LookedUp>(OnLookedUp);
        Receive<LookupFailed>(failed =>
        {
            using (Scope(failed.Command.CommandId))
                logger.LogError(failed.Cause, "Could not read the applied-command store; command left unanswered for the SuperNode to resend");
            Forget(failed.Command.CommandId);
        });
        Receive<Handled>(handled => Store(handled.Command, handled.Applied));
        Receive<Stored>(stored =>
        {
            unstored.Remove(stored.CommandId);
            metrics?.CommandAnswered(stored.Kind, stored.Response);
            if (stored.Change is { } change)
                Context.System.EventStream.Publish(change);
            Answer(stored.CommandId, stored.Response);
        });
        Receive<StoreFailed>(failed =>
        {
            unstored[failed.CommandId] = failed.Applied;
            using (Scope(failed.CommandId))
                logger.LogError(failed.Cause, "Could not record the command as applied; its answer is held back until it is stored, when the SuperNode resends it");
            Forget(failed.CommandId);
        });
    }

    protected override void PostStop()
    {
        stopping.Cancel();
        stopping.Dispose();
    }

    private void OnExecute(ExecuteCommand execute)
    {
        var command = execute.Command;
        var id = command.CommandId;
        if (string.IsNullOrEmpty(id))
        {
            using (Scope(""))
                logger.LogWarning("Command without an id refused");
            Sender.Tell(new CommandAnswered(CommandResponses.Failed("", CommandError.Invalid, "the command has no command_id")));
            return;
        }
        if (waiting.TryGetValue(id, out var waiters))
        {
            waiters.Add(Sender);
            return;
        }
        waiting[id] = [Sender];
        queue.Enqueue(command);
        StartNext();
    }

    private void StartNext()
    {
        if (busy || !queue.TryDequeue(out var command))
            return;
        busy = true;
        if (unstored.TryGetValue(command.CommandId, out var applied))
        {
            Store(command, applied);
            return;
        }
        store.FindAsync(command.CommandId, stopping.Token).PipeTo(Self,
            success: stored => new LookedUp(command, stored),
            failure: ex => new LookupFailed(command, ex));
    }

    private void OnLookedUp(LookedUp lookedUp)
    {
        var command = lookedUp.Command;
        var id = command.CommandId;
        using var scope = Scope(id);
        if (lookedUp.Stored is { } first)
        {
            logger.LogInformation("Command applied before; answering with its first answer");
            Answer(id, first);
            return;
        }
        if (command.Deadline is { } deadline && deadline.ToDateTimeOffset() <= time.GetUtcNow())
        {
            logger.LogWarning("Command {Kind} expired at {Deadline:o} before it could be applied", CommandResponses.KindOf(command), deadline.ToDateTimeOffset());
            var expired = CommandResponses.Failed(id, CommandError.Expired, $"the deadline {deadline.ToDateTimeOffset():o} passed before the peer could apply the command");
            metrics?.CommandAnswered(command.BodyCase, expired);
            Answer(id, expired);
            return;
        }

        // A child of the span that issued the command (Command.trace_parent), when tracing is on (--otlp).
        var span = Tracing.StartDetached("apply " + command.BodyCase, command.TraceParent, ActivityKind.Consumer);
        span?.SetTag("mydvpn.command_id", id);
        span?.SetTag("mydvpn.peer_id", peerId);
        var token = stopping.Token;
        Tracing.RunIn(span, HandleAsync).PipeTo(Self, success: applied => new Handled(command, applied));

        async Task<CommandApplied> HandleAsync()
        {
            logger.LogInformation("Applying command {Kind}", CommandResponses.KindOf(command));
            CommandApplied applied;
            try
            {
                applied = await handler.HandleAsync(command, token);
            }
            catch (Exception ex) when (!token.IsCancellationRequested)
            {
                // The handler was asked: this failure is the command's first and only answer.
                applied = new CommandApplied(CommandResponses.NotApplied(id, ex));
            }
            if (applied.Response.Failure is { } failure)
                span?.SetStatus(ActivityStatusCode.Error, $"{failure.Code}: {failure.Reason}");
            return applied;
        }
    }

    private void Store(Command command, CommandApplied applied)
    {
        var id = command.CommandId;
        var kind = command.BodyCase;
        var answer = applied.Response.Clone();
        answer.CommandId = id;
        var change = applied.Change;
        store.StoreAsync(id, answer, stopping.Token).PipeTo(Self,
            success: stored => new Stored(id, kind, stored, change),
            failure: ex => new StoreFailed(id, applied with { Response = answer }, ex));
    }

    private void Answer(string id, CommandResponse response)
    {
        if (waiting.Remove(id, out var waiters))
        {
            foreach (var waiter in waiters)
                waiter.Tell(new CommandAnswered(response));
        }
        busy = false;
        StartNext();
    }

    private void Forget(string id)
    {
        waiting.Remove(id);
        busy = false;
        StartNext();
    }

    private IDisposable? Scope(string commandId) => logger.BeginScope(LogScope.Of(peerId, region, commandId: commandId));
}
