using System.Collections.Concurrent;
using Akka.Actor;
using Google.Protobuf.WellKnownTypes;
using Microsoft.Extensions.Logging.Abstractions;
using MyDvpn.Peer.Commands;
using MyDvpn.Protocol.Control;
using Xunit.Abstractions;

namespace MyDvpn.Peer.Tests;

/// <summary>The executor with a real SQLite store and a handler that counts what it is asked, on a manual clock (deadlines are on it).</summary>
public sealed class CommandExecutorTests : Akka.TestKit.Xunit2.TestKit
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(5);

    private readonly TempDirectory temp = new();
    private readonly AppliedCommandStore store;
    private readonly CountingHandler handler = new();
    private readonly ManualTimeProvider clock = new();

    public CommandExecutorTests(ITestOutputHelper output)
        : base("akka.loglevel = INFO", nameof(CommandExecutorTests), output)
    {
        store = AppliedCommandStore.Open(temp.Path);
    }

    protected override void AfterAll()
    {
        base.AfterAll();
        store.Dispose();
        temp.Dispose();
    }

    [Fact]
    public async Task Command_is_applied_once_and_a_duplicate_gets_the_first_answer()
    {
        var executor = Start();
        var command = Remove("cmd-1");

        executor.Tell(new ExecuteCommand(command));
        var first = ExpectMsg<CommandAnswered>(Patience).Response;
        executor.Tell(new ExecuteCommand(command));
        var second = ExpectMsg<CommandAnswered>(Patience).Response;

        Assert.Equal("cmd-1", first.CommandId);
        Assert.Equal(CommandResult.BodyOneofCase.Done, first.Result.BodyCase);
        Assert.Equal(first, second);
        Assert.Equal(["cmd-1"], handler.Calls);
        Assert.Equal(first, await store.FindAsync("cmd-1"));
    }

    [Fact]
    public async Task Command_applied_before_a_restart_is_answered_from_the_store_without_the_handler()
    {
        var stored = CommandResponses.Failed("cmd-1", CommandError.Capacity, "first answer");
        await store.StoreAsync("cmd-1", stored);
        var executor = Start();

        executor.Tell(new ExecuteCommand(Remove("cmd-1")));

        Assert.Equal(stored, ExpectMsg<CommandAnswered>(Patience).Response);
        Assert.Empty(handler.Calls);
    }

    [Fact]
    public void Duplicate_arriving_while_the_command_is_applied_gets_the_same_answer_and_no_second_call()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        handler.Gate = release.Task;
        var executor = Start();
        var command = Remove("cmd-1");

        executor.Tell(new ExecuteCommand(command));
        AwaitAssert(() => Assert.Single(handler.Calls), Patience);
        executor.Tell(new ExecuteCommand(command));
        release.SetResult();

        var first = ExpectMsg<CommandAnswered>(Patience).Response;
        var second = ExpectMsg<CommandAnswered>(Patience).Response;
        Assert.Equal(first, second);
        Assert.Single(handler.Calls);
    }

    [Fact]
    public void Commands_are_applied_one_at_a_time_in_arrival_order()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        handler.Gate = release.Task;
        var executor = Start();

        executor.Tell(new ExecuteCommand(Remove("cmd-1")));
        executor.Tell(new ExecuteCommand(Remove("cmd-2")));
        AwaitAssert(() => Assert.Single(handler.Calls), Patience);
        Assert.Equal(["cmd-1"], handler.Calls);
        release.SetResult();

        Assert.Equal("cmd-1", ExpectMsg<CommandAnswered>(Patience).Response.CommandId);
        Assert.Equal("cmd-2", ExpectMsg<CommandAnswered>(Patience).Response.CommandId);
        Assert.Equal(["cmd-1", "cmd-2"], handler.Calls);
    }

    [Fact]
    public async Task Command_past_its_deadline_is_answered_expired_and_not_applied()
    {
        var executor = Start();
        var command = Remove("cmd-late");
        command.Deadline = Timestamp.FromDateTimeOffset(clock.GetUtcNow().AddSeconds(-1));

        executor.Tell(new ExecuteCommand(command));

        var answer = ExpectMsg<CommandAnswered>(Patience).Response;
        Assert.Equal("cmd-late", answer.CommandId);
        Assert.Equal(CommandError.Expired, answer.Failure.Code);
        Assert.Empty(handler.Calls);
        Assert.Null(await store.FindAsync("cmd-late"));
    }

    [Fact]
    public void Handler_failure_is_the_commands_first_answer_and_is_not_retried()
    {
        handler.Throw = true;
        var executor = Start();
        var command = Remove("cmd-1");

        executor.Tell(new ExecuteCommand(command));
        var first = ExpectMsg<CommandAnswered>(Patience).Response;
        handler.Throw = false;
        executor.Tell(new ExecuteCommand(command));
        var second = ExpectMsg<CommandAnswered>(Patience).Response;

        Assert.Equal(CommandError.Dataplane, first.Failure.Code);
        Assert.Contains("wireguard exploded", first.Failure.Reason, StringComparison.Ordinal);
        Assert.Equal(first, second);
        Assert.Single(handler.Calls);
    }

    [Fact]
    public void What_a_command_changed_of_the_exit_is_published_once_before_its_answer()
    {
        var events = CreateTestProbe();
        Sys.EventStream.Subscribe(events.Ref, typeof(ExitChanged));
        handler.Change = new ExitChanged.Removed("assignment-1", "the exit went offline");
        var executor = Start();
        var command = Remove("cmd-1");

        executor.Tell(new ExecuteCommand(command));
        Assert.Equal(handler.Change, events.ExpectMsg<ExitChanged>(Patience));
        ExpectMsg<CommandAnswered>(Patience);
        executor.Tell(new ExecuteCommand(command));
        ExpectMsg<CommandAnswered>(Patience);

        // A change is published before the answer it goes with: none came with the duplicate's.
        Assert.False(events.HasMessages);
    }

    [Fact]
    public void Command_without_an_id_is_refused_as_invalid()
    {
        var executor = Start();

        executor.Tell(new ExecuteCommand(Remove("")));

        Assert.Equal(CommandError.Invalid, ExpectMsg<CommandAnswered>(Patience).Response.Failure.Code);
        Assert.Empty(handler.Calls);
    }

    [Fact]
    public async Task A_command_is_counted_by_kind_and_outcome_when_first_answered_and_not_again_for_a_duplicate()
    {
        var metrics = new PeerMetrics(Prometheus.Metrics.NewCustomRegistry());
        var executor = Start(metrics);
        var expired = Remove("cmd-2");
        expired.Deadline = Timestamp.FromDateTimeOffset(clock.GetUtcNow());

        executor.Tell(new ExecuteCommand(Remove("cmd-1")));
        ExpectMsg<CommandAnswered>(Patience);
        executor.Tell(new ExecuteCommand(Remove("cmd-1")));
        ExpectMsg<CommandAnswered>(Patience);
        executor.Tell(new ExecuteCommand(expired));
        ExpectMsg<CommandAnswered>(Patience);

        var scraped = await MetricsText.ScrapeAsync(metrics.Registry);
        Assert.Equal(1, MetricsText.Value(scraped, """mydvpn_peer_commands_total{kind="remove_exit",outcome="applied"}"""));
        Assert.Equal(1, MetricsText.Value(scraped, """mydvpn_peer_commands_total{kind="remove_exit",outcome="expired"}"""));
        Assert.Equal(0, MetricsText.Value(scraped, """mydvpn_peer_commands_total{kind="setup_exit",outcome="applied"}"""));
    }

    private IActorRef Start(PeerMetrics? metrics = null) =>
        Sys.ActorOf(CommandExecutor.Props(store, handler, clock, NullLogger.Instance, "peer-1", "eu-west", metrics));

    private Command Remove(string id) => new()
    {
        CommandId = id,
        Deadline = Timestamp.FromDateTimeOffset(clock.GetUtcNow().AddMinutes(1)),
        RemoveExit = new RemoveExit { AssignmentId = "assignment-1" },
    };

    /// <summary>Records every call; can be held until released, or made to throw.</summary>
    private sealed class CountingHandler : ICommandHandler
    {
        private readonly ConcurrentQueue<string> calls = new();

        public IReadOnlyList<string> Calls => [.. calls];

        public Task Gate { get; set; } = Task.CompletedTask;

        public volatile bool Throw;

        /// <summary>What every command is said to change of the exit.</summary>
        public ExitChanged? Change { get; set; }

        public async Task<CommandApplied> HandleAsync(Command command, CancellationToken cancellationToken)
        {
            calls.Enqueue(command.CommandId);
            await Gate.WaitAsync(cancellationToken);
            if (Throw)
                throw new InvalidOperationException("wireguard exploded");
            return new CommandApplied(CommandResponses.Done(command.CommandId), Change);
        }
    }
}
