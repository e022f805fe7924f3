using System.Collections.Immutable;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Microsoft.Extensions.Logging;
using MyDvpn.Protocol.Control;

namespace MyDvpn.SuperNode.Sessions;

/// <summary>A command issued to the peer and not finished yet. <see cref="Command"/> is the session's own copy.</summary>
public sealed record InFlightCommand(string CommandId, Command Command, string? ReplyToPeerId, DateTimeOffset IssuedAt)
{
    public DateTimeOffset Deadline => Command.Deadline?.ToDateTimeOffset() ?? IssuedAt;
}

/// <summary>
/// The commands in flight to the peer (persisted: <see cref="CommandIssued"/>, <see cref="CommandCompleted"/>,
/// <see cref="CommandFailed"/>), the ids of the last finished ones, and how often each command in flight was delivered
/// since the session started (in memory only: after a restart, commands still in flight are delivered again on the next
/// attach, which the peer answers with its first answer).
/// </summary>
/// <param name="Finished">Ids of the last <paramref name="RememberCompleted"/> finished commands, oldest first.</param>
public sealed record CommandBook(int RememberCompleted, ImmutableList<InFlightCommand> InFlight, ImmutableList<string> Finished)
{
    /// <summary>The same ids as <see cref="Finished"/>, for lookup.</summary>
    private ImmutableHashSet<string> FinishedIds { get; init; } = ImmutableHashSet.CreateRange(StringComparer.Ordinal, Finished);

    public ImmutableDictionary<string, int> Deliveries { get; init; } = ImmutableDictionary.Create<string, int>(StringComparer.Ordinal);

    public static CommandBook Empty(int rememberCompleted) => new(rememberCompleted, [], []);

    public CommandBook Apply(IPeerSessionEvent evt) => evt switch
    {
        CommandIssued e => this with
        {
            InFlight = InFlight.Add(new InFlightCommand(e.CommandId, Command.Parser.ParseFrom(e.Command), e.ReplyToPeerId, e.At)),
        },
        CommandCompleted e => Finish(e.CommandId),
        CommandFailed e => Finish(e.CommandId),
        _ => this,
    };

    public InFlightCommand? FindInFlight(string commandId) => InFlight.Find(c => c.CommandId == commandId);

    public bool IsFinished(string commandId) => FinishedIds.Contains(commandId);

    public int DeliveriesOf(string commandId) => Deliveries.GetValueOrDefault(commandId);

    /// <summary>
    /// Issues <paramref name="issue"/>'s command with an id (its own, else <paramref name="assignedId"/>) and a deadline
    /// (its own, else <paramref name="now"/> + <paramref name="defaultDeadline"/>), or says why not.
    /// </summary>
    public IssueDecision DecideIssue(IssueCommand issue, string assignedId, DateTimeOffset now, TimeSpan defaultDeadline, PeerIdentity peer)
    {
        var command = issue.Command.Clone();
        if (command.CommandId.Length == 0)
            command.CommandId = assignedId;

        var id = command.CommandId;
        if (peer.Revoked)
            return new IssueDecision.Refuse(id, "peer revoked");
        if (!peer.Enrolled)
            return new IssueDecision.Refuse(id, "peer not enrolled");
        if (FindInFlight(id) is not null)
            return new IssueDecision.AlreadyInFlight(id);
        if (IsFinished(id))
            return new IssueDecision.Refuse(id, "command id already used by a finished command");

        command.Deadline ??= Timestamp.FromDateTimeOffset(now + defaultDeadline);
        if (command.Deadline.ToDateTimeOffset() <= now)
            return new IssueDecision.Refuse(id, "deadline already passed");

        return new IssueDecision.Issue(new CommandIssued(id, command.ToByteArray(), issue.ReplyToPeerId, now));
    }

    /// <summary>An answer to a command in flight completes it; any other answer (late duplicate, unknown id) is ignored.</summary>
    public CommandCompleted? DecideAnswer(CommandResponse response, DateTimeOffset now) =>
        FindInFlight(response.CommandId) is not null ? new CommandCompleted(response.CommandId, response.ToByteArray(), now) : null;

    /// <summary>
    /// What to do with command <paramref name="commandId"/> when its timer fires: give up at the deadline; without a stream
    /// wait for one until the deadline; with one deliver again unless <paramref name="maxAttempts"/> deliveries went unanswered.
    /// </summary>
    public CommandStep DecideRetry(string commandId, DateTimeOffset now, bool streamAttached, int maxAttempts)
    {
        if (FindInFlight(commandId) is not { } command)
            return CommandStep.Nothing.Instance;

        var deliveries = DeliveriesOf(commandId);
        if (now >= command.Deadline)
        {
            return new CommandStep.Fail(new CommandFailed(commandId, deliveries == 0
                ? "deadline passed while no stream was attached"
                : $"deadline passed after {deliveries} deliveries without an answer", now));
        }

        if (!streamAttached)
            return new CommandStep.AwaitStream(command.Deadline - now);

        return deliveries >= maxAttempts
            ? new CommandStep.Fail(new CommandFailed(commandId, $"no answer after {deliveries} deliveries", now))
            : CommandStep.Deliver.Instance;
    }

    public CommandBook Delivered(string commandId) => this with { Deliveries = Deliveries.SetItem(commandId, DeliveriesOf(commandId) + 1) };

    private CommandBook Finish(string commandId) =>
        FindInFlight(commandId) is { } command
            ? Remember(commandId) with { InFlight = InFlight.Remove(command), Deliveries = Deliveries.Remove(commandId) }
            : this;

    /// <summary>Adds <paramref name="commandId"/> to the finished ids, forgetting the oldest beyond <see cref="RememberCompleted"/>.</summary>
    public CommandBook Remember(string commandId)
    {
        if (FinishedIds.Contains(commandId))
            return this;

        var finished = Finished.Add(commandId);
        var ids = FinishedIds.Add(commandId);
        while (finished.Count > RememberCompleted)
        {
            ids = ids.Remove(finished[0]);
            finished = finished.RemoveAt(0);
        }

        return this with { Finished = finished, FinishedIds = ids };
    }
}

/// <summary>
/// Command delivery (ARCHITECTURE §2 PeerSession): a command is persisted before its first delivery; while a stream is
/// attached it is delivered up to <see cref="PeerSessionSettings.MaxAttempts"/> times with backoff; without a stream it
/// waits, and every command in flight is delivered again, in issue order, when a stream attaches. The deadline ends it
/// either way. Its end goes to the issuer and, durably, to the session it was issued for; the flows that issue commands
/// of their own hear of it through <see cref="Concluded"/>.
/// </summary>
public static class CommandDelivery
{
    public const string TimerPrefix = "command:";

    /// <summary>An issuer (an admin, an exit pool, another session) asks for a command; the reply goes to it.</summary>
    public static Decision Issue(Decision d, IssueCommand issue, string assignedId, DateTimeOffset now)
    {
        var state = d.State;
        switch (state.Commands.DecideIssue(issue, assignedId, now, state.Config.Session.DefaultDeadline, state.Identity))
        {
            case IssueDecision.Refuse refuse:
                var refused = new CommandOutcome(state.PeerId, refuse.CommandId, null, refuse.Reason);
                return d.Log(LogLevel.Information, "Command {CommandId} not issued: {Reason}", refuse.CommandId, refuse.Reason)
                    .Do(new SessionEffect.Reply(refused), new SessionEffect.Announce(refused, issue.ReplyToPeerId));
            case IssueDecision.AlreadyInFlight inFlight:
                return d.Do(new SessionEffect.RememberIssuer(inFlight.CommandId),
                    new SessionEffect.Reply(new CommandAccepted(state.PeerId, inFlight.CommandId)));
            case IssueDecision.Issue issued:
                var id = issued.Event.CommandId;
                d = d.IfLost(new CommandOutcome(state.PeerId, id, null, "not issued: " + PeerState.JournalUnavailable))
                    .Record(issued.Event)
                    .Do(new SessionEffect.RememberIssuer(id), new SessionEffect.Reply(new CommandAccepted(state.PeerId, id)),
                        new SessionEffect.CountCommand(issue.Command.BodyCase, CommandStage.Issued));
                d = Deliver(d, id, now);
                // The Disconnect itself makes the client drop its half.
                return issue.Command.BodyCase == Command.BodyOneofCase.Disconnect && d.State.Exit is not null
                    ? ExitAssignment.StartRelease(d, $"disconnected: {issue.Command.Disconnect.Reason}", removeFromClient: false, now)
                    : d;
            default:
                throw new InvalidOperationException("unknown issue decision");
        }
    }

    /// <summary>Issues a command of the session's own (no issuer waits for it); nothing when it cannot be issued.</summary>
    public static Decision IssueOwn(Decision d, Command command, DateTimeOffset now, TimeSpan? defaultDeadline = null)
    {
        var state = d.State;
        if (state.Commands.DecideIssue(new IssueCommand(state.PeerId, command), command.CommandId, now,
                defaultDeadline ?? state.Config.Session.DefaultDeadline, state.Identity) is not IssueDecision.Issue issue)
        {
            return d;
        }

        return Deliver(d.Record(issue.Event).Do(new SessionEffect.CountCommand(command.BodyCase, CommandStage.Issued)), issue.Event.CommandId, now);
    }

    /// <summary>Delivers to the attached stream and waits for the answer; without a stream waits for one (or the deadline).</summary>
    public static Decision Deliver(Decision d, string commandId, DateTimeOffset now)
    {
        if (d.State.Commands.FindInFlight(commandId) is not { } command)
            return d;
        var untilDeadline = command.Deadline - now;
        if (!d.State.Stream.Attached || untilDeadline <= TimeSpan.Zero)
        {
            // Waits for a stream; a command past its deadline is never delivered, its timer fails it.
            return d.Do(Timer(commandId, untilDeadline));
        }

        d = d.With(s => s with { Commands = s.Commands.Delivered(commandId) });
        var deliveries = d.State.Commands.DeliveriesOf(commandId);
        if (deliveries > 1)
            d = d.Do(new SessionEffect.CountCommand(command.Command.BodyCase, CommandStage.Retried));
        var wait = d.State.Config.Session.WaitAfterDelivery(deliveries);
        return d.Do(new SessionEffect.SendCommand(command.Command.Clone()), Timer(commandId, wait < untilDeadline ? wait : untilDeadline));
    }

    /// <summary>A stream attached: every command in flight is delivered, in issue order.</summary>
    public static Decision DeliverAll(Decision d, DateTimeOffset now) =>
        d.State.Commands.InFlight.Aggregate(d, (x, command) => Deliver(x, command.CommandId, now));

    /// <summary>Arms each command's deadline after a restart: no stream yet, so each waits for an attach or fails.</summary>
    public static Decision AwaitStreamAfterRecovery(Decision d, DateTimeOffset now) =>
        d.State.Commands.InFlight.Aggregate(d, (x, command) => x.Do(Timer(command.CommandId, command.Deadline - now)));

    public static Decision TimerFired(Decision d, string commandId, DateTimeOffset now)
    {
        var state = d.State;
        switch (state.Commands.DecideRetry(commandId, now, state.Stream.Attached, state.Config.Session.MaxAttempts))
        {
            case CommandStep.Deliver:
                return Deliver(d.Log(LogLevel.Debug, "No answer to command {CommandId} after {Deliveries} deliveries, delivering again",
                    commandId, state.Commands.DeliveriesOf(commandId)), commandId, now);
            case CommandStep.AwaitStream wait:
                return d.Do(Timer(commandId, wait.UntilDeadline));
            case CommandStep.Fail fail:
                return Fail(d, commandId, fail.Event.Reason, now, warn: true);
            default:
                return d;
        }
    }

    /// <summary>The peer answered: the command is completed (a late or unknown answer is ignored).</summary>
    public static Decision Answered(Decision d, CommandResponse response, DateTimeOffset now)
    {
        var state = d.State;
        if (state.Commands.DecideAnswer(response, now) is not { } completed)
        {
            return d.Log(LogLevel.Debug, "Ignoring an answer to command {CommandId}, which is {Status}", response.CommandId,
                state.Commands.IsFinished(response.CommandId) ? "already finished" : "unknown");
        }

        var command = state.Commands.FindInFlight(completed.CommandId)!;
        return Concluded(d.Record(completed).Do(new SessionEffect.CountCommand(command.Command.BodyCase, CommandStage.Answered, now - command.IssuedAt)),
            command, new CommandOutcome(state.PeerId, completed.CommandId, response.Clone(), null), now);
    }

    /// <summary>The session gives up on a command in flight.</summary>
    public static Decision Fail(Decision d, string commandId, string reason, DateTimeOffset now, bool warn = false)
    {
        if (d.State.Commands.FindInFlight(commandId) is not { } command)
            return d;
        d = d.Record(new CommandFailed(commandId, reason, now)).Do(new SessionEffect.CountCommand(command.Command.BodyCase, CommandStage.Failed));
        if (warn)
            d = d.Log(LogLevel.Warning, "Command {CommandId} failed: {Reason}", commandId, reason);
        return Concluded(d, command, new CommandOutcome(d.State.PeerId, commandId, null, reason), now);
    }

    /// <summary>The command is finished: its timer stops, its issuer and the peer it was issued for hear of it, and so do the flows.</summary>
    private static Decision Concluded(Decision d, InFlightCommand command, CommandOutcome outcome, DateTimeOffset now) => d
        .Do(new SessionEffect.CancelTimer(TimerPrefix + outcome.CommandId), new SessionEffect.Announce(outcome, command.ReplyToPeerId))
        .Then(x => ExitAssignment.CommandConcluded(x, outcome, now))
        .Then(x => DirectReturn.CommandConcluded(x, outcome, now))
        .Do(SessionEffect.ShowAssignments.Instance);

    private static SessionEffect.StartTimer Timer(string commandId, TimeSpan delay) =>
        new(TimerPrefix + commandId, new CommandTimerFired(commandId), delay > TimeSpan.Zero ? delay : TimeSpan.Zero);
}

/// <summary>The outcome of <see cref="CommandBook.DecideIssue"/>.</summary>
public abstract record IssueDecision(string CommandId)
{
    public sealed record Issue(CommandIssued Event) : IssueDecision(Event.CommandId);

    public sealed record AlreadyInFlight(string CommandId) : IssueDecision(CommandId);

    public sealed record Refuse(string CommandId, string Reason) : IssueDecision(CommandId);
}

/// <summary>The outcome of <see cref="CommandBook.DecideRetry"/>.</summary>
public abstract record CommandStep
{
    private CommandStep()
    {
    }

    /// <summary>The command is no longer in flight (a stale timer).</summary>
    public sealed record Nothing : CommandStep
    {
        public static readonly Nothing Instance = new();
    }

    public sealed record Deliver : CommandStep
    {
        public static readonly Deliver Instance = new();
    }

    /// <summary>No stream: check again after <paramref name="UntilDeadline"/> unless a stream attaches first.</summary>
    public sealed record AwaitStream(TimeSpan UntilDeadline) : CommandStep;

    public sealed record Fail(CommandFailed Event) : CommandStep;
}
