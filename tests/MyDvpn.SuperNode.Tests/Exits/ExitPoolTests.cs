using Akka.Actor;
using Akka.TestKit;
using Google.Protobuf;
using Grpc.Core;
using MyDvpn.Protocol.Control;
using MyDvpn.SuperNode.Exits;
using MyDvpn.SuperNode.Sessions;
using Xunit.Abstractions;

namespace MyDvpn.SuperNode.Tests.Exits;

/// <summary>
/// A region's exit pool over a real SQLite journal, with a TestProbe as the <c>peers</c> shard region: it receives the
/// SetupExit and RemoveExit commands the pool issues to exits and answers them as the exits' sessions would. The pool
/// runs on a manual clock: its timers fire when a test moves it, and "nothing more was sent" is checked after the pool
/// answered a later message (<see cref="ExpectNoCommand"/>), never by waiting.
/// </summary>
public sealed class ExitPoolTests(ITestOutputHelper output) : SqliteTestKit(output)
{
    private readonly Microsoft.Extensions.Logging.ILogger _log = new TestOutputLogger(output, nameof(ExitPool));

    private const string Region = "us-east";
    private const string ClientRegion = "eu-west";
    private const string ExitAddress = "198.51.100.7";

    /// <summary>
    /// How long a test waits for what must come: a ceiling, waited out only when the test fails. Generous, since the journal
    /// is a real SQLite file whose first writes take seconds on a loaded machine; no assertion waits for silence or time.
    /// </summary>
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    private static readonly ExitSettings Fast = ExitSettings.Default with { AckTimeout = TimeSpan.FromMilliseconds(300), MaxExitAttempts = 2 };

    private static readonly byte[] ClientKey = Key(0x11);

    private readonly ManualTimeProvider _clock = new();
    private TestProbe? _peers;

    private static string PersistenceId => ExitPool.PersistenceIdPrefix + Region;

    /// <summary>Stands in for the <c>peers</c> shard region: the exits' sessions.</summary>
    private TestProbe Peers => _peers ??= CreateTestProbe("peers");

    [Fact]
    public void Allocation_has_the_exit_accept_the_client_then_answers_with_its_key_and_announced_address()
    {
        var pool = StartPool();
        Online(pool, "exit-a");
        var requester = Allocate(pool, "as-1");

        var issue = ExpectCommand("exit-a", Command.BodyOneofCase.SetupExit);
        var setup = issue.Command.SetupExit;
        Assert.Equal(("as-1", ExitSide.Exit, "client-1", ClientRegion), (setup.AssignmentId, setup.Side, setup.CounterpartPeerId, setup.CounterpartRegion));
        Assert.Equal(ClientKey, setup.Peer.PublicKey.ToByteArray());
        Assert.Equal(["100.96.0.2/32"], setup.Peer.AllowedIps);
        Assert.Equal(["100.96.0.1/24"], setup.TunnelAddresses);
        Assert.Matches("^[0-9a-f]{32}$", issue.Command.CommandId);
        Assert.Equal(_clock.GetUtcNow() + Fast.AckTimeout, issue.Command.Deadline.ToDateTimeOffset());
        requester.ExpectNoMsg(TimeSpan.Zero);

        Ack(pool, issue, Key(0xE1));

        var assignment = requester.ExpectMsg<ExitAllocated>(Patience).Assignment;
        Assert.Equal(
            ("as-1", Region, "exit-a", $"{ExitAddress}:51820", "100.96.0.2/32", "100.96.0.1/24", "client-1", ClientRegion, ExitAssignmentRecord.Active),
            (assignment.AssignmentId, assignment.Region, assignment.ExitPeerId, assignment.ExitEndpoint, assignment.ClientAddress, assignment.ExitAddress,
                assignment.ClientPeerId, assignment.ClientRegion, assignment.State));
        Assert.Equal(Key(0xE1), assignment.ExitPublicKey);
        Assert.Equal(ClientKey, assignment.ClientPublicKey);
        Assert.Equal(
            [typeof(ExitSubnetAssigned), typeof(AssignmentReserved), typeof(AssignmentActivated)],
            JournalEvents(PersistenceId).Select(e => e.GetType()));
    }

    [Theory]
    [InlineData(ExitAddress, ExitAddress + ":4500", ExitAddress + ":4500")]
    [InlineData(ExitAddress, "exit-a.example.net:4500", ExitAddress + ":51820")]
    [InlineData(ExitAddress, "203.0.113.50:4500", ExitAddress + ":51820")]
    [InlineData("2001:db8::7", "", "[2001:db8::7]:51820")]
    public void Exit_endpoint_is_its_claim_only_on_its_stream_address_else_that_address_and_its_listen_port(string streamAddress, string given, string endpoint)
    {
        var pool = StartPool();
        Online(pool, "exit-a", address: streamAddress);
        var requester = Allocate(pool, "as-1");

        Ack(pool, ExpectCommand("exit-a", Command.BodyOneofCase.SetupExit), Key(0xE1), endpoint: given);

        Assert.Equal(endpoint, requester.ExpectMsg<ExitAllocated>(Patience).Assignment.ExitEndpoint);
    }

    [Fact]
    public void Asking_again_with_the_same_assignment_id_gets_the_same_assignment_without_a_new_setup()
    {
        var pool = StartPool();
        Online(pool, "exit-a");
        var first = Allocate(pool, "as-1");
        Ack(pool, ExpectCommand("exit-a", Command.BodyOneofCase.SetupExit), Key(0xE1));
        var allocated = first.ExpectMsg<ExitAllocated>(Patience).Assignment;

        var again = Allocate(pool, "as-1").ExpectMsg<ExitAllocated>(Patience).Assignment;

        Assert.Equal(allocated.ToProto(), again.ToProto());
        ExpectNoCommand(pool);
        Assert.Single(JournalEvents(PersistenceId).OfType<AssignmentReserved>());
    }

    [Fact]
    public void Asking_again_while_the_setup_is_under_way_waits_for_the_same_setup()
    {
        var pool = StartPool();
        Online(pool, "exit-a");
        var first = Allocate(pool, "as-1");
        var issue = ExpectCommand("exit-a", Command.BodyOneofCase.SetupExit);

        var second = Allocate(pool, "as-1");
        Ack(pool, issue, Key(0xE1));

        Assert.Equal(first.ExpectMsg<ExitAllocated>(Patience).Assignment.ToProto(), second.ExpectMsg<ExitAllocated>(Patience).Assignment.ToProto());
        ExpectNoCommand(pool);
    }

    [Fact]
    public void Assignment_id_of_another_client_or_a_request_for_another_region_is_refused()
    {
        var pool = StartPool();
        Online(pool, "exit-a");
        var first = Allocate(pool, "as-1");
        Ack(pool, ExpectCommand("exit-a", Command.BodyOneofCase.SetupExit), Key(0xE1));
        first.ExpectMsg<ExitAllocated>(Patience);

        var stolen = Allocate(pool, "as-1", client: "client-2").ExpectMsg<ExitAllocationRefused>(Patience);
        var elsewhere = CreateTestProbe();
        pool.Tell(new AllocateExit("ap-south", "as-2", "client-1", ClientRegion, ClientKey), elsewhere.Ref);

        Assert.Equal((StatusCode.InvalidArgument, RefusalReason.MalformedMessage), Reason(stolen));
        Assert.Equal((StatusCode.PermissionDenied, RefusalReason.WrongRegion), Reason(elsewhere.ExpectMsg<ExitAllocationRefused>(Patience)));
        ExpectNoCommand(pool);
    }

    [Fact]
    public void Allocation_without_an_exit_online_is_refused_as_no_exit_available()
    {
        var pool = StartPool();

        var refusal = Allocate(pool, "as-1").ExpectMsg<ExitAllocationRefused>(Patience);

        Assert.Equal((StatusCode.ResourceExhausted, RefusalReason.NoExitAvailable), Reason(refusal));
        Assert.Contains("no exit online", refusal.Detail);
        ExpectNoCommand(pool);
        Assert.Empty(JournalEvents(PersistenceId));
    }

    [Fact]
    public void Exit_that_went_offline_or_stopped_announcing_itself_is_not_picked()
    {
        var pool = StartPool();
        Online(pool, "exit-a");
        Online(pool, "exit-b");
        pool.Tell(new ExitOffline(Region, "exit-a"));
        View(pool); // the pool took the announcements above at this time
        _clock.Advance(Fast.ExitOfflineAfter / 2);
        Online(pool, "exit-c");
        View(pool);
        _clock.Advance(Fast.ExitOfflineAfter / 2 + TimeSpan.FromSeconds(1)); // exit-b silent past the limit, exit-c not

        Allocate(pool, "as-1");

        ExpectCommand("exit-c", Command.BodyOneofCase.SetupExit);
        var exits = View(pool).Exits;
        Assert.Equal(["exit-c"], exits.Where(e => e.Online).Select(e => e.PeerId));
    }

    [Fact]
    public void Exit_at_capacity_refuses_the_next_client()
    {
        var pool = StartPool();
        Online(pool, "exit-a", capacity: 1);
        var first = Allocate(pool, "as-1");
        Ack(pool, ExpectCommand("exit-a", Command.BodyOneofCase.SetupExit), Key(0xE1));
        first.ExpectMsg<ExitAllocated>(Patience);

        var refusal = Allocate(pool, "as-2", client: "client-2", key: Key(0x22)).ExpectMsg<ExitAllocationRefused>(Patience);

        Assert.Equal((StatusCode.ResourceExhausted, RefusalReason.NoExitAvailable), Reason(refusal));
        Assert.Contains("exit-a 1/1", refusal.Detail);
        ExpectNoCommand(pool);
    }

    [Fact]
    public void Exit_refusing_the_setup_is_told_to_remove_it_and_the_next_exit_is_tried()
    {
        var pool = StartPool();
        Online(pool, "exit-a", rtt: TimeSpan.FromMilliseconds(1));
        Online(pool, "exit-b", rtt: TimeSpan.FromMilliseconds(9));
        var requester = Allocate(pool, "as-1");
        var refused = ExpectCommand("exit-a", Command.BodyOneofCase.SetupExit);

        pool.Tell(new CommandOutcome("exit-a", refused.Command.CommandId, new CommandResponse
        {
            CommandId = refused.Command.CommandId,
            Failure = new CommandFailure { Code = CommandError.Dataplane, Reason = "wg0 is missing" },
        }, null));

        var remove = ExpectCommand("exit-a", Command.BodyOneofCase.RemoveExit).Command.RemoveExit;
        Assert.Equal(("as-1", ExitSide.Exit), (remove.AssignmentId, remove.Side));
        Assert.Equal(ClientKey, remove.PeerPublicKey.ToByteArray());
        Assert.Contains("wg0 is missing", remove.Reason);
        var retry = ExpectCommand("exit-b", Command.BodyOneofCase.SetupExit);
        Assert.Equal(["100.96.1.2/32"], retry.Command.SetupExit.Peer.AllowedIps);
        Assert.Equal(["100.96.1.1/24"], retry.Command.SetupExit.TunnelAddresses);
        Ack(pool, retry, Key(0xE2));
        var assignment = requester.ExpectMsg<ExitAllocated>(Patience).Assignment;
        Assert.Equal(("exit-b", "100.96.1.2/32"), (assignment.ExitPeerId, assignment.ClientAddress));
        var exitA = View(pool).Exits.Single(e => e.PeerId == "exit-a");
        Assert.Equal((0, 1), (exitA.Clients, exitA.RecentFailures));
        Assert.Equal(["as-1"], JournalEvents(PersistenceId).OfType<AssignmentCancelled>().Select(c => c.AssignmentId));
    }

    [Fact]
    public void Exit_that_does_not_answer_within_the_ack_timeout_is_rolled_back_and_the_next_exit_is_tried()
    {
        var pool = StartPool();
        Online(pool, "exit-a", rtt: TimeSpan.FromMilliseconds(1));
        Online(pool, "exit-b", rtt: TimeSpan.FromMilliseconds(9));
        var requester = Allocate(pool, "as-1");
        ExpectCommand("exit-a", Command.BodyOneofCase.SetupExit);
        _clock.Advance(Fast.AckTimeout + ExitSettings.OverdueGrace - TimeSpan.FromMilliseconds(1));
        ExpectNoCommand(pool); // its session may still report the outcome, up to the pool's margin

        _clock.Advance(TimeSpan.FromMilliseconds(1));

        var remove = ExpectCommand("exit-a", Command.BodyOneofCase.RemoveExit).Command.RemoveExit;

        Assert.Equal(("as-1", ExitSide.Exit), (remove.AssignmentId, remove.Side));
        Assert.Contains("did not answer", remove.Reason);
        Ack(pool, ExpectCommand("exit-b", Command.BodyOneofCase.SetupExit), Key(0xE2));
        Assert.Equal("exit-b", requester.ExpectMsg<ExitAllocated>(Patience).Assignment.ExitPeerId);
    }

    [Fact]
    public void Session_giving_up_on_the_setup_counts_as_a_failure_of_that_exit()
    {
        var pool = StartPool();
        Online(pool, "exit-a");
        var requester = Allocate(pool, "as-1");
        var issue = ExpectCommand("exit-a", Command.BodyOneofCase.SetupExit);

        pool.Tell(new CommandOutcome("exit-a", issue.Command.CommandId, null, "deadline passed while no stream was attached"));

        ExpectCommand("exit-a", Command.BodyOneofCase.RemoveExit);
        var refusal = requester.ExpectMsg<ExitAllocationRefused>(Patience);
        Assert.Equal((StatusCode.Unavailable, RefusalReason.ExitSetupFailed), Reason(refusal));
        Assert.Contains("deadline passed while no stream was attached", refusal.Detail);
    }

    [Fact]
    public void Setup_failing_on_max_exit_attempts_exits_is_refused_naming_the_exits()
    {
        var pool = StartPool();
        Online(pool, "exit-a", rtt: TimeSpan.FromMilliseconds(1));
        Online(pool, "exit-b", rtt: TimeSpan.FromMilliseconds(2));
        Online(pool, "exit-c", rtt: TimeSpan.FromMilliseconds(3));
        var requester = Allocate(pool, "as-1");

        foreach (var exit in new[] { "exit-a", "exit-b" })
        {
            var issue = ExpectCommand(exit, Command.BodyOneofCase.SetupExit);
            pool.Tell(new CommandOutcome(exit, issue.Command.CommandId, new CommandResponse
            {
                CommandId = issue.Command.CommandId,
                Failure = new CommandFailure { Code = CommandError.Capacity, Reason = "full" },
            }, null));
            ExpectCommand(exit, Command.BodyOneofCase.RemoveExit);
        }

        var refusal = requester.ExpectMsg<ExitAllocationRefused>(Patience);
        Assert.Equal((StatusCode.Unavailable, RefusalReason.ExitSetupFailed), Reason(refusal));
        Assert.Contains("exit-a did not set up the client: COMMAND_ERROR_CAPACITY: full", refusal.Detail);
        Assert.Contains("exit-b did not set up the client", refusal.Detail);
        Assert.DoesNotContain("exit-c", refusal.Detail);
        ExpectNoCommand(pool);
        Assert.Empty(View(pool).Assignments);
    }

    [Fact]
    public void Last_exit_left_failing_is_refused_as_setup_failed_with_what_happened()
    {
        var pool = StartPool(Fast with { MaxExitAttempts = 3 });
        Online(pool, "exit-a");
        var requester = Allocate(pool, "as-1");
        var issue = ExpectCommand("exit-a", Command.BodyOneofCase.SetupExit);

        pool.Tell(new CommandOutcome("exit-a", issue.Command.CommandId, new CommandResponse
        {
            CommandId = issue.Command.CommandId,
            Result = new CommandResult { SetupExit = new SetupExitResult { ListenPort = 51820 } },
        }, null));

        ExpectCommand("exit-a", Command.BodyOneofCase.RemoveExit);
        var refusal = requester.ExpectMsg<ExitAllocationRefused>(Patience);
        Assert.Equal((StatusCode.Unavailable, RefusalReason.ExitSetupFailed), Reason(refusal));
        Assert.Contains("without its WireGuard public key", refusal.Detail);
        Assert.Contains("already tried for this request: exit-a", refusal.Detail);
    }

    [Fact]
    public void Exit_that_failed_a_setup_is_picked_last_within_its_cooldown()
    {
        var pool = StartPool(Fast with { MaxExitAttempts = 1 });
        Online(pool, "exit-a");
        var first = Allocate(pool, "as-1");
        pool.Tell(new CommandOutcome("exit-a", ExpectCommand("exit-a", Command.BodyOneofCase.SetupExit).Command.CommandId, null, "gone"));
        ExpectCommand("exit-a", Command.BodyOneofCase.RemoveExit);
        first.ExpectMsg<ExitAllocationRefused>(Patience);

        // exit-b comes online: the next client goes there, not to exit-a, though exit-a is as empty.
        Online(pool, "exit-b");
        Allocate(pool, "as-2", client: "client-2");
        Ack(pool, ExpectCommand("exit-b", Command.BodyOneofCase.SetupExit), Key(0xE2));

        // exit-b is now the more loaded; exit-a is still within its cooldown and so still last.
        Allocate(pool, "as-3", client: "client-3");
        Assert.Equal("as-3", ExpectCommand("exit-b", Command.BodyOneofCase.SetupExit).Command.SetupExit.AssignmentId);
    }

    [Fact]
    public void The_only_exit_is_tried_again_by_the_next_request_even_within_its_cooldown()
    {
        // A late answer (a loaded exit) must not shut the region for the whole cooldown.
        var pool = StartPool(Fast with { MaxExitAttempts = 1 });
        Online(pool, "exit-a");
        var first = Allocate(pool, "as-1");
        pool.Tell(new CommandOutcome("exit-a", ExpectCommand("exit-a", Command.BodyOneofCase.SetupExit).Command.CommandId, null,
            "deadline passed after 1 deliveries without an answer"));
        ExpectCommand("exit-a", Command.BodyOneofCase.RemoveExit);
        first.ExpectMsg<ExitAllocationRefused>(Patience);

        var again = Allocate(pool, "as-2", client: "client-2");
        Ack(pool, ExpectCommand("exit-a", Command.BodyOneofCase.SetupExit), Key(0xE1));
        Assert.Equal("as-2", again.ExpectMsg<ExitAllocated>(Patience).Assignment.AssignmentId);
    }

    [Fact]
    public void Release_removes_the_client_from_the_exit_and_frees_its_address_for_the_next_client()
    {
        var pool = StartPool();
        Online(pool, "exit-a", capacity: 1);
        var first = Allocate(pool, "as-1");
        Ack(pool, ExpectCommand("exit-a", Command.BodyOneofCase.SetupExit), Key(0xE1));
        first.ExpectMsg<ExitAllocated>(Patience);

        Assert.Equal(new ExitReleased("as-1", true), Release(pool, "as-1", "client shut down"));

        var remove = ExpectCommand("exit-a", Command.BodyOneofCase.RemoveExit);
        Assert.Equal(("as-1", ExitSide.Exit, "client shut down"), (remove.Command.RemoveExit.AssignmentId, remove.Command.RemoveExit.Side, remove.Command.RemoveExit.Reason));
        Assert.Equal(ClientKey, remove.Command.RemoveExit.PeerPublicKey.ToByteArray());
        Assert.Equal(_clock.GetUtcNow() + Fast.RemoveDeadline, remove.Command.Deadline.ToDateTimeOffset());
        Assert.Equal(new ExitReleased("as-1", false), Release(pool, "as-1", "again"));
        ExpectNoCommand(pool);

        var next = Allocate(pool, "as-2", client: "client-2", key: Key(0x22));
        var setup = ExpectCommand("exit-a", Command.BodyOneofCase.SetupExit);
        Assert.Equal(["100.96.0.2/32"], setup.Command.SetupExit.Peer.AllowedIps);
        Ack(pool, setup, Key(0xE1));
        var assignment = next.ExpectMsg<ExitAllocated>(Patience).Assignment;
        Assert.Equal(("client-2", "100.96.0.2/32"), (assignment.ClientPeerId, assignment.ClientAddress));
    }

    [Fact]
    public void New_assignment_of_a_client_supersedes_its_older_one_and_takes_the_place_it_frees()
    {
        var pool = StartPool();
        Online(pool, "exit-a", capacity: 1);
        var first = Allocate(pool, "as-1");
        Ack(pool, ExpectCommand("exit-a", Command.BodyOneofCase.SetupExit), Key(0xE1));
        first.ExpectMsg<ExitAllocated>(Patience);

        var second = Allocate(pool, "as-2");

        var remove = ExpectCommand("exit-a", Command.BodyOneofCase.RemoveExit).Command.RemoveExit;
        Assert.Equal(("as-1", "superseded by assignment as-2"), (remove.AssignmentId, remove.Reason));
        var setup = ExpectCommand("exit-a", Command.BodyOneofCase.SetupExit).Command;
        Assert.Equal(("as-2", "100.96.0.2/32"), (setup.SetupExit.AssignmentId, setup.SetupExit.Peer.AllowedIps.Single()));
        Ack(pool, new IssueCommand("exit-a", setup), Key(0xE1));
        Assert.Equal("as-2", second.ExpectMsg<ExitAllocated>(Patience).Assignment.AssignmentId);
        // The pool goes on answering afterwards.
        Assert.Equal(["as-2"], View(pool).Assignments.Select(a => a.AssignmentId));
        Assert.Equal(new ExitReleased("as-2", true), Release(pool, "as-2", "done"));
    }

    [Fact]
    public void Release_asked_during_the_setup_is_carried_out_once_the_exit_acked()
    {
        var pool = StartPool();
        Online(pool, "exit-a");
        var requester = Allocate(pool, "as-1");
        var issue = ExpectCommand("exit-a", Command.BodyOneofCase.SetupExit);
        var releaser = CreateTestProbe();
        pool.Tell(new ReleaseExit(Region, "as-1", "client gave up"), releaser.Ref);
        View(pool);
        releaser.ExpectNoMsg(TimeSpan.Zero);

        Ack(pool, issue, Key(0xE1));

        requester.ExpectMsg<ExitAllocated>(Patience);
        Assert.Equal(new ExitReleased("as-1", true), releaser.ExpectMsg<ExitReleased>(Patience));
        Assert.Equal("as-1", ExpectCommand("exit-a", Command.BodyOneofCase.RemoveExit).Command.RemoveExit.AssignmentId);
        Assert.Empty(View(pool).Assignments);
    }

    [Fact]
    public void Restarted_pool_keeps_active_assignments_and_subnets_and_cancels_setups_cut_short()
    {
        var pool = StartPool();
        Online(pool, "exit-a", rtt: TimeSpan.FromMilliseconds(1));
        Online(pool, "exit-b", rtt: TimeSpan.FromMilliseconds(2));
        var first = Allocate(pool, "as-1");
        Ack(pool, ExpectCommand("exit-a", Command.BodyOneofCase.SetupExit), Key(0xE1));
        var active = first.ExpectMsg<ExitAllocated>(Patience).Assignment;
        Allocate(pool, "as-2", client: "client-2", key: Key(0x22));
        ExpectCommand("exit-b", Command.BodyOneofCase.SetupExit); // reserved, never acked
        Stop(pool);

        var restarted = StartPool();

        var remove = ExpectCommand("exit-b", Command.BodyOneofCase.RemoveExit).Command.RemoveExit;
        Assert.Equal(("as-2", ExitSide.Exit, "the exit pool restarted during the setup"), (remove.AssignmentId, remove.Side, remove.Reason));
        Assert.Equal(Key(0x22), remove.PeerPublicKey.ToByteArray());
        var view = View(restarted);
        Assert.Equal(
            [("exit-a", false, 1, "100.96.0.0/24"), ("exit-b", false, 0, "100.96.1.0/24")],
            view.Exits.Select(e => (e.PeerId, e.Online, e.Clients, e.Subnet)));
        Assert.Equal([active.ToProto()], view.Assignments.Select(a => a.ToProto()));
        Assert.Equal(active.ToProto(), Allocate(restarted, "as-1").ExpectMsg<ExitAllocated>(Patience).Assignment.ToProto());
        ExpectNoCommand(restarted);

        Online(restarted, "exit-b");
        Allocate(restarted, "as-3", client: "client-3", key: Key(0x33));
        var setup = ExpectCommand("exit-b", Command.BodyOneofCase.SetupExit).Command.SetupExit;
        Assert.Equal(["100.96.1.2/32"], setup.Peer.AllowedIps);
    }

    [Fact]
    public async Task Pool_recovers_from_its_snapshot_and_the_events_after_it()
    {
        // Event 1 is exit-a's subnet, then two per client: the snapshot at event 100 holds as-50 reserved, event 101 activates it.
        var pool = StartPool();
        Online(pool, "exit-a", capacity: 100);
        for (var i = 1; i <= 50; i++)
        {
            var requester = Allocate(pool, $"as-{i}", client: $"client-{i}");
            Ack(pool, ExpectCommand("exit-a", Command.BodyOneofCase.SetupExit), Key(0xE1));
            requester.ExpectMsg<ExitAllocated>(Patience);
        }

        await AwaitAssertAsync(async () => Assert.Equal(100, (await LatestSnapshotAsync(PersistenceId))?.Metadata.SequenceNr), Patience);
        var before = View(pool);
        Stop(pool);

        var restarted = StartPool();

        var after = View(restarted);
        Assert.Equal(before.Assignments.Select(a => a.ToProto()), after.Assignments.Select(a => a.ToProto()));
        Assert.Equal(50, after.Exits.Single().Clients);
        Assert.Equal(ExitAssignmentRecord.Active, after.Assignments.Single(a => a.AssignmentId == "as-50").State);
        ExpectNoCommand(restarted); // nothing was under way: nothing to cancel
        Online(restarted, "exit-a", capacity: 100);
        Allocate(restarted, "as-51", client: "client-51");
        Assert.Equal(["100.96.0.52/32"], ExpectCommand("exit-a", Command.BodyOneofCase.SetupExit).Command.SetupExit.Peer.AllowedIps);
    }

    [Fact]
    public void Pool_view_shows_each_exit_and_every_assignment()
    {
        var pool = StartPool();
        Online(pool, "exit-b", capacity: 4, address: "203.0.113.4", rtt: TimeSpan.FromMilliseconds(12));
        Online(pool, "exit-a", capacity: 2, rtt: TimeSpan.FromMilliseconds(3));
        var first = Allocate(pool, "as-1");
        Ack(pool, ExpectCommand("exit-a", Command.BodyOneofCase.SetupExit), Key(0xE1));
        first.ExpectMsg<ExitAllocated>(Patience);
        _clock.Advance(TimeSpan.FromSeconds(1)); // assignments are listed by time
        Allocate(pool, "as-2", client: "client-2", key: Key(0x22));
        ExpectCommand("exit-b", Command.BodyOneofCase.SetupExit); // exit-a is half full now

        var view = View(pool);

        Assert.Equal(Region, view.Region);
        Assert.Equal(
            [
                new ExitView("exit-a", true, 2, 1, "100.96.0.0/24", TimeSpan.FromMilliseconds(3), 0, ExitAddress),
                new ExitView("exit-b", true, 4, 1, "100.96.1.0/24", TimeSpan.FromMilliseconds(12), 0, "203.0.113.4"),
            ],
            view.Exits);
        Assert.Equal(
            [("as-1", "exit-a", "100.96.0.2/32", ExitAssignmentRecord.Active), ("as-2", "exit-b", "100.96.1.2/32", ExitAssignmentRecord.SettingUp)],
            view.Assignments.Select(a => (a.AssignmentId, a.ExitPeerId, a.ClientAddress, a.State)));

        pool.Tell(new ExitOffline(Region, "exit-a"));
        // Gone, but within the grace after its stream ended: disconnected (not lost yet), and it takes no clients.
        Assert.Equal(new ExitView("exit-a", false, 0, 1, "100.96.0.0/24", null, 0, "") { State = ExitStates.Disconnected }, View(pool).Exits[0]);
    }

    [Fact]
    public async Task Pool_shows_how_many_exits_it_sees_in_each_state_and_their_places_while_it_runs_here()
    {
        var registry = Prometheus.Metrics.NewCustomRegistry();
        var metrics = new ExitMetrics(Prometheus.Metrics.WithCustomRegistry(registry));
        var pool = Sys.ActorOf(ExitPool.Props(Region, Fast, Peers.Ref, _clock, _log, metrics: metrics));
        Online(pool, "exit-a");
        Online(pool, "exit-b");
        Online(pool, "exit-c");
        var drainer = CreateTestProbe();
        pool.Tell(new DrainExit(Region, "exit-b"), drainer.Ref);
        drainer.ExpectMsg<ExitDrainStarted>(Patience);
        pool.Tell(new ExitOffline(Region, "exit-a"));
        View(pool); // a round trip: the pool decided on everything before

        var scraped = await MetricsText.ScrapeAsync(registry);
        Assert.Equal(
            new (string, double?)[] { ("online", 1), ("stale", 0), ("disconnected", 1), ("lost", 0), ("drained", 1), ("offline", 0) },
            ExitStates.All.Select(state => (state, MetricsText.Value(scraped, $$"""mydvpn_exits{region="{{Region}}",state="{{state}}"}"""))));

        Assert.Equal(10, MetricsText.Value(scraped, $$"""mydvpn_exit_capacity{region="{{Region}}"}"""));
        Assert.Equal(0, MetricsText.Value(scraped, $$"""mydvpn_exit_assignments{region="{{Region}}",state="active"}"""));

        // Stopped here: another SuperNode of the region runs it now, and shows it.
        Stop(pool);
        scraped = await MetricsText.ScrapeAsync(registry);
        Assert.All(ExitStates.All, state => Assert.Equal(0, MetricsText.Value(scraped, $$"""mydvpn_exits{region="{{Region}}",state="{{state}}"}""")));

        // A new incarnation shows what its journal holds (the drain) as soon as it recovered.
        var restarted = Sys.ActorOf(ExitPool.Props(Region, Fast, Peers.Ref, _clock, _log, metrics: metrics));
        View(restarted);
        scraped = await MetricsText.ScrapeAsync(registry);
        Assert.Equal(1, MetricsText.Value(scraped, $$"""mydvpn_exits{region="{{Region}}",state="drained"}"""));
        Assert.Equal(0, MetricsText.Value(scraped, $$"""mydvpn_exits{region="{{Region}}",state="online"}"""));
    }

    private IActorRef StartPool(ExitSettings? settings = null) => Sys.ActorOf(ExitPool.Props(Region, settings ?? Fast, Peers.Ref, _clock, _log));

    private static void Online(IActorRef pool, string exit, int capacity = 10, string address = ExitAddress, TimeSpan? rtt = null) =>
        pool.Tell(new ExitOnline(Region, exit, capacity, address, rtt));

    private TestProbe Allocate(IActorRef pool, string assignmentId, string client = "client-1", byte[]? key = null)
    {
        var requester = CreateTestProbe();
        pool.Tell(new AllocateExit(Region, assignmentId, client, ClientRegion, key ?? ClientKey), requester.Ref);
        return requester;
    }

    private ExitReleased Release(IActorRef pool, string assignmentId, string reason)
    {
        var releaser = CreateTestProbe();
        pool.Tell(new ReleaseExit(Region, assignmentId, reason), releaser.Ref);
        return releaser.ExpectMsg<ExitReleased>(Patience);
    }

    private ExitPoolSnapshotView View(IActorRef pool)
    {
        var asker = CreateTestProbe();
        pool.Tell(new GetExitPool(Region), asker.Ref);
        return asker.ExpectMsg<ExitPoolSnapshotView>(Patience);
    }

    /// <summary>The next command the pool issues through the <c>peers</c> region, which must be for <paramref name="exit"/>.</summary>
    private IssueCommand ExpectCommand(string exit, Command.BodyOneofCase body)
    {
        var issue = Peers.ExpectMsg<IssueCommand>(Patience);
        Assert.Equal((exit, body), (issue.PeerId, issue.Command.BodyCase));
        return issue;
    }

    /// <summary>
    /// The pool issued no command (other than those already expected) for anything sent to it so far: it answered a
    /// message sent after them, and its commands go out before it takes the next message.
    /// </summary>
    private void ExpectNoCommand(IActorRef pool)
    {
        View(pool);
        Peers.ExpectNoMsg(TimeSpan.Zero);
    }

    /// <summary>The exit's session answers: the exit accepted the client (endpoint empty: "use my stream's address").</summary>
    private static void Ack(IActorRef pool, IssueCommand issue, byte[] exitKey, string endpoint = "") =>
        pool.Tell(new CommandOutcome(issue.PeerId, issue.Command.CommandId, new CommandResponse
        {
            CommandId = issue.Command.CommandId,
            Result = new CommandResult
            {
                SetupExit = new SetupExitResult { PublicKey = ByteString.CopyFrom(exitKey), Endpoint = endpoint, ListenPort = 51820 },
            },
        }, null));

    private static (StatusCode, RefusalReason) Reason(ExitAllocationRefused refusal) => (refusal.Code, refusal.Reason);

    private static byte[] Key(byte fill) => Enumerable.Repeat(fill, 32).ToArray();
}
