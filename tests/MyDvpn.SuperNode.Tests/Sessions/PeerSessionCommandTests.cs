using Akka.Actor;
using MyDvpn.Protocol.Control;
using MyDvpn.SuperNode.Sessions;
using Xunit.Abstractions;

namespace MyDvpn.SuperNode.Tests.Sessions;

/// <summary>Commands from a session to its peer: issue, delivery, answer, retries, deadlines and revocation.</summary>
public sealed class PeerSessionCommandTests(ITestOutputHelper output) : PeerSessionTestKit(output)
{
    private const string OtherPeer = "client-7";

    [Fact]
    public void Issued_command_is_delivered_answered_and_its_outcome_reaches_the_issuer_and_the_peer_it_was_for()
    {
        var entity = Start();
        var edge = AttachEdge(entity, Enroll(entity, PeerRole.Exit));
        var issuer = CreateTestProbe();

        var id = Issue(entity, issuer, SetupExit("cmd-1"), replyToPeerId: OtherPeer);
        var delivered = edge.ExpectMsg<DeliverCommand>(Patience).Command;
        var answer = new CommandResponse
        {
            CommandId = id,
            Result = new CommandResult { SetupExit = new SetupExitResult { Endpoint = "198.51.100.4:51820" } },
        };
        entity.Tell(new CommandAnswered(PeerId, answer));

        Assert.Equal("cmd-1", id);
        Assert.Equal(SetupExit("cmd-1").SetupExit, delivered.SetupExit);
        var outcome = new CommandOutcome(PeerId, id, answer, null);
        Assert.Equal(outcome, issuer.ExpectMsg<CommandOutcome>(Patience));
        Assert.True(outcome.Succeeded);
        Assert.Equal(new CommandOutcomeFor(OtherPeer, outcome), PeersRegion.ExpectMsg<CommandOutcomeFor>(Patience));
        Assert.Empty(State(entity).InFlightCommandIds);
        Assert.Equal(
            [typeof(PeerEnrolled), typeof(SessionStarted), typeof(CommandIssued), typeof(CommandCompleted)],
            JournalEvents(PersistenceId).Select(e => e.GetType()));
        Assert.Equal(answer, CommandResponse.Parser.ParseFrom(Assert.Single(Journaled<CommandCompleted>()).Response));
    }

    [Fact]
    public void Peer_answering_with_a_failure_ends_the_command_with_that_response()
    {
        var entity = Start();
        var edge = AttachEdge(entity, Enroll(entity));
        var issuer = CreateTestProbe();
        var id = Issue(entity, issuer, SetupExit());
        edge.ExpectMsg<DeliverCommand>(Patience);
        var failure = new CommandResponse
        {
            CommandId = id,
            Failure = new CommandFailure { Code = CommandError.Dataplane, Reason = "wg0 is missing" },
        };

        entity.Tell(new CommandAnswered(PeerId, failure));

        var outcome = issuer.ExpectMsg<CommandOutcome>(Patience);
        Assert.Equal(failure, outcome.Response);
        Assert.Null(outcome.FailureReason);
        Assert.False(outcome.Succeeded);
    }

    [Fact]
    public void Command_without_id_or_deadline_gets_a_fresh_id_and_the_default_deadline()
    {
        var entity = Start();
        var edge = AttachEdge(entity, Enroll(entity));

        var id = Issue(entity, CreateTestProbe(), SetupExit());

        var delivered = edge.ExpectMsg<DeliverCommand>(Patience).Command;
        Assert.Matches("^[0-9a-f]{32}$", id);
        Assert.Equal(id, delivered.CommandId);
        Assert.Equal(Clock.GetUtcNow() + Fast.DefaultDeadline, delivered.Deadline.ToDateTimeOffset());
        var issued = Assert.Single(Journaled<CommandIssued>());
        Assert.Equal(delivered, Command.Parser.ParseFrom(issued.Command));
    }

    [Fact]
    public void Duplicate_and_unknown_answers_are_ignored()
    {
        var entity = Start();
        var edge = AttachEdge(entity, Enroll(entity));
        var issuer = CreateTestProbe();
        var id = Issue(entity, issuer, SetupExit(), replyToPeerId: OtherPeer);
        edge.ExpectMsg<DeliverCommand>(Patience);
        entity.Tell(new CommandAnswered(PeerId, Done(id)));
        issuer.ExpectMsg<CommandOutcome>(Patience);
        PeersRegion.ExpectMsg<CommandOutcomeFor>(Patience);

        entity.Tell(new CommandAnswered(PeerId, Done(id)));
        entity.Tell(new CommandAnswered(PeerId, Done("never-issued")));

        State(entity); // the answers above were handled before this reply
        issuer.ExpectNoMsg(TimeSpan.Zero);
        PeersRegion.ExpectNoMsg(TimeSpan.Zero);
        Assert.Single(Journaled<CommandCompleted>());
    }

    [Fact]
    public void Unanswered_command_is_delivered_max_attempts_times_with_backoff_then_fails()
    {
        var entity = Start();
        var edge = AttachEdge(entity, Enroll(entity));
        var issuer = CreateTestProbe();

        var id = Issue(entity, issuer, SetupExit(), replyToPeerId: OtherPeer);

        Assert.Equal(id, edge.ExpectMsg<DeliverCommand>(Patience).Command.CommandId);
        for (var attempt = 2; attempt <= Fast.MaxAttempts; attempt++)
        {
            Advance(entity, Fast.WaitAfterDelivery(attempt - 1) - TimeSpan.FromMilliseconds(1));
            edge.ExpectNoMsg(TimeSpan.Zero);
            Advance(entity, TimeSpan.FromMilliseconds(1));
            Assert.Equal(id, edge.ExpectMsg<DeliverCommand>(TimeSpan.Zero).Command.CommandId);
        }

        Advance(entity, Fast.WaitAfterDelivery(Fast.MaxAttempts));
        var outcome = issuer.ExpectMsg<CommandOutcome>(Patience);
        Assert.Null(outcome.Response);
        Assert.Equal($"no answer after {Fast.MaxAttempts} deliveries", outcome.FailureReason);
        Assert.Equal(new CommandOutcomeFor(OtherPeer, outcome), PeersRegion.ExpectMsg<CommandOutcomeFor>(Patience));
        State(entity);
        edge.ExpectNoMsg(TimeSpan.Zero);
        Assert.Equal(outcome.FailureReason, Assert.Single(Journaled<CommandFailed>()).Reason);
    }

    [Fact]
    public async Task Commands_are_counted_by_kind_when_issued_retried_answered_and_failed_and_never_again_on_replay()
    {
        var registry = Prometheus.Metrics.NewCustomRegistry();
        var metrics = new CommandMetrics(Prometheus.Metrics.WithCustomRegistry(registry));
        var entity = Start(commandMetrics: metrics);
        var edge = AttachEdge(entity, Enroll(entity));
        var issuer = CreateTestProbe();
        var answered = Issue(entity, issuer, SetupExit());
        edge.ExpectMsg<DeliverCommand>(Patience);
        Advance(entity, Fast.WaitAfterDelivery(1));
        edge.ExpectMsg<DeliverCommand>(TimeSpan.Zero);
        entity.Tell(new CommandAnswered(PeerId, Done(answered)));
        issuer.ExpectMsg<CommandOutcome>(Patience);
        Issue(entity, issuer, new Command { Disconnect = new Disconnect { Reason = "test" } });
        edge.ExpectMsg<DeliverCommand>(Patience);
        for (var attempt = 1; attempt <= Fast.MaxAttempts; attempt++)
            Advance(entity, Fast.WaitAfterDelivery(attempt));
        Assert.NotNull(issuer.ExpectMsg<CommandOutcome>(Patience).FailureReason);

        var scraped = await MetricsText.ScrapeAsync(registry);
        Assert.Equal(1, MetricsText.Value(scraped, """mydvpn_commands_issued_total{kind="setup_exit"}"""));
        Assert.Equal(1, MetricsText.Value(scraped, """mydvpn_commands_retried_total{kind="setup_exit"}"""));
        Assert.Equal(0, MetricsText.Value(scraped, """mydvpn_commands_failed_total{kind="setup_exit"}"""));
        Assert.Equal(1, MetricsText.Value(scraped, """mydvpn_command_seconds_count{kind="setup_exit"}"""));
        Assert.Equal(Fast.WaitAfterDelivery(1).TotalSeconds, MetricsText.Value(scraped, """mydvpn_command_seconds_sum{kind="setup_exit"}""")!.Value, precision: 6);
        Assert.Equal(1, MetricsText.Value(scraped, """mydvpn_commands_issued_total{kind="disconnect"}"""));
        Assert.Equal(Fast.MaxAttempts - 1, MetricsText.Value(scraped, """mydvpn_commands_retried_total{kind="disconnect"}"""));
        Assert.Equal(1, MetricsText.Value(scraped, """mydvpn_commands_failed_total{kind="disconnect"}"""));
        Assert.Equal(0, MetricsText.Value(scraped, """mydvpn_commands_issued_total{kind="relay_setup"}"""));

        // A new incarnation replays the journal: nothing is counted again.
        Stop(entity);
        State(Start(commandMetrics: metrics));
        Assert.Equal(scraped, await MetricsText.ScrapeAsync(registry));
        await Promtool.AssertPassesAsync(scraped, "the sessions' command metrics");
    }

    [Fact]
    public void Answer_to_a_retried_command_ends_its_retries()
    {
        var entity = Start();
        var edge = AttachEdge(entity, Enroll(entity));
        var issuer = CreateTestProbe();
        var id = Issue(entity, issuer, SetupExit());
        edge.ExpectMsg<DeliverCommand>(Patience);
        Advance(entity, Fast.WaitAfterDelivery(1));
        edge.ExpectMsg<DeliverCommand>(TimeSpan.Zero);

        entity.Tell(new CommandAnswered(PeerId, Done(id)));

        Assert.Equal(Done(id), issuer.ExpectMsg<CommandOutcome>(Patience).Response);
        Advance(entity, Fast.WaitAfterDelivery(2) * 2);
        edge.ExpectNoMsg(TimeSpan.Zero);
    }

    [Fact]
    public void Retries_stop_at_the_deadline()
    {
        var entity = Start(Fast with { MaxAttempts = 100 });
        var edge = AttachEdge(entity, Enroll(entity));
        var issuer = CreateTestProbe();

        Issue(entity, issuer, SetupExit(deadline: Clock.GetUtcNow().AddMilliseconds(500)));
        Advance(entity, TimeSpan.FromMilliseconds(500), step: TimeSpan.FromMilliseconds(10));

        var outcome = issuer.ExpectMsg<CommandOutcome>(Patience);
        Assert.StartsWith("deadline passed after 3 deliveries", outcome.FailureReason);
        var deliveries = 0;
        while (edge.HasMessages)
        {
            edge.ExpectMsg<DeliverCommand>(TimeSpan.Zero);
            deliveries++;
        }

        // 500 ms allow deliveries at 0, 200 and 450 ms of the 100 allowed.
        Assert.Equal(3, deliveries);
    }

    [Fact]
    public void Commands_wait_for_a_stream_and_are_delivered_in_issue_order_when_one_attaches()
    {
        var entity = Start();
        var session = Enroll(entity);
        var issuer = CreateTestProbe();
        var ids = new[] { "cmd-a", "cmd-b", "cmd-c" }.Select(id => Issue(entity, issuer, SetupExit(id))).ToList();
        Assert.Equal(ids, State(entity).InFlightCommandIds);

        var edge = AttachEdge(entity, session);

        Assert.Equal(ids, ids.Select(_ => edge.ExpectMsg<DeliverCommand>(Patience).Command.CommandId));
    }

    [Fact]
    public void Command_whose_deadline_passes_without_a_stream_fails()
    {
        var entity = Start();
        Enroll(entity);
        var issuer = CreateTestProbe();

        var id = Issue(entity, issuer, SetupExit(deadline: Clock.GetUtcNow().AddMilliseconds(300)), OtherPeer);
        Advance(entity, TimeSpan.FromMilliseconds(300));

        var outcome = issuer.ExpectMsg<CommandOutcome>(Patience);
        Assert.Equal(id, outcome.CommandId);
        Assert.Equal("deadline passed while no stream was attached", outcome.FailureReason);
        Assert.Equal(outcome, PeersRegion.ExpectMsg<CommandOutcomeFor>(Patience).Outcome);
    }

    [Fact]
    public void Command_past_its_deadline_is_not_delivered_to_a_stream_that_attaches_late()
    {
        var entity = Start();
        var session = Enroll(entity);
        var issuer = CreateTestProbe();
        Issue(entity, issuer, SetupExit("expired", Clock.GetUtcNow().AddSeconds(5)));
        Advance(entity, TimeSpan.FromSeconds(10));

        var edge = AttachEdge(entity, session);

        Assert.Equal("deadline passed while no stream was attached", issuer.ExpectMsg<CommandOutcome>(Patience).FailureReason);
        State(entity);
        edge.ExpectNoMsg(TimeSpan.Zero);
    }

    [Fact]
    public void Command_in_flight_is_redelivered_to_a_new_edge_after_the_previous_one_died()
    {
        var entity = Start();
        var firstEdge = AttachEdge(entity, Enroll(entity));
        var issuer = CreateTestProbe();
        var id = Issue(entity, issuer, SetupExit());
        firstEdge.ExpectMsg<DeliverCommand>(Patience);

        Sys.Stop(firstEdge.Ref);
        AwaitAssert(() => Assert.False(State(entity).StreamAttached), Patience);
        Assert.Equal([id], State(entity).InFlightCommandIds);
        var secondEdge = AttachEdge(entity, Authenticate(entity));

        Assert.Equal(id, secondEdge.ExpectMsg<DeliverCommand>(Patience).Command.CommandId);
        entity.Tell(new CommandAnswered(PeerId, Done(id)));
        Assert.Equal(Done(id), issuer.ExpectMsg<CommandOutcome>(Patience).Response);
    }

    [Fact]
    public void Command_already_in_flight_is_accepted_again_without_a_second_issue_and_its_latest_issuer_hears_the_outcome()
    {
        var entity = Start();
        var edge = AttachEdge(entity, Enroll(entity));
        var first = CreateTestProbe();
        var retrying = CreateTestProbe();
        Issue(entity, first, SetupExit("cmd-1"));

        Assert.Equal("cmd-1", Issue(entity, retrying, SetupExit("cmd-1")));
        Assert.Single(Journaled<CommandIssued>());
        edge.ExpectMsg<DeliverCommand>(Patience);
        entity.Tell(new CommandAnswered(PeerId, Done("cmd-1")));
        Assert.Equal(Done("cmd-1"), retrying.ExpectMsg<CommandOutcome>(Patience).Response);
        first.ExpectNoMsg(TimeSpan.Zero);
    }

    [Fact]
    public void Command_is_refused_at_once_for_a_peer_not_enrolled_a_past_deadline_or_a_finished_id()
    {
        var entity = Start();
        var issuer = CreateTestProbe();
        entity.Tell(new IssueCommand(PeerId, SetupExit("cmd-0"), OtherPeer), issuer.Ref);
        Assert.Equal(new CommandOutcome(PeerId, "cmd-0", null, "peer not enrolled"), issuer.ExpectMsg<CommandOutcome>(Patience));
        Assert.Equal("cmd-0", PeersRegion.ExpectMsg<CommandOutcomeFor>(Patience).Outcome.CommandId);
        var edge = AttachEdge(entity, Enroll(entity));

        entity.Tell(new IssueCommand(PeerId, SetupExit("cmd-1", Clock.GetUtcNow().AddSeconds(-1))), issuer.Ref);
        Assert.Equal("deadline already passed", issuer.ExpectMsg<CommandOutcome>(Patience).FailureReason);

        var id = Issue(entity, issuer, SetupExit("cmd-2"));
        edge.ExpectMsg<DeliverCommand>(Patience);
        entity.Tell(new CommandAnswered(PeerId, Done(id)));
        issuer.ExpectMsg<CommandOutcome>(Patience);
        entity.Tell(new IssueCommand(PeerId, SetupExit("cmd-2")), issuer.Ref);
        Assert.Equal("command id already used by a finished command", issuer.ExpectMsg<CommandOutcome>(Patience).FailureReason);
        Assert.Equal(["cmd-2"], Journaled<CommandIssued>().Select(c => c.CommandId));
    }

    [Fact]
    public void Revocation_closes_the_stream_fails_commands_in_flight_and_refuses_the_peer_from_then_on()
    {
        var entity = Start();
        var session = Enroll(entity);
        var edge = AttachEdge(entity, session);
        var issuer = CreateTestProbe();
        var id = Issue(entity, issuer, SetupExit(), OtherPeer);
        edge.ExpectMsg<DeliverCommand>(Patience);

        Assert.Equal(new PeerRevoked(PeerId), Request<PeerRevoked>(entity, new RevokePeer(PeerId)));

        Assert.Equal(RefusalReason.Revoked, edge.ExpectMsg<CloseStream>(Patience).Reason);
        var outcome = new CommandOutcome(PeerId, id, null, "peer revoked");
        Assert.Equal(outcome, issuer.ExpectMsg<CommandOutcome>(Patience));
        Assert.Equal(new CommandOutcomeFor(OtherPeer, outcome), PeersRegion.ExpectMsg<CommandOutcomeFor>(Patience));
        Assert.Equal(RefusalReason.Revoked, Request<PeerRefused>(entity, Auth()).Reason);
        Assert.Equal(RefusalReason.Revoked, Request<CloseStream>(entity, new AttachStream(PeerId, session, edge.Ref)).Reason);
        entity.Tell(new IssueCommand(PeerId, SetupExit()), issuer.Ref);
        Assert.Equal("peer revoked", issuer.ExpectMsg<CommandOutcome>(Patience).FailureReason);
        var state = State(entity);
        Assert.True(state.Revoked);
        Assert.False(state.StreamAttached);
        Assert.Equal(0, state.CommandsInFlight);
    }

    [Fact]
    public void Revoking_twice_records_one_revocation()
    {
        var entity = Start();
        Enroll(entity);

        Request<PeerRevoked>(entity, new RevokePeer(PeerId));
        Request<PeerRevoked>(entity, new RevokePeer(PeerId));

        Assert.Single(Journaled<PeerRevoked>());
    }

    [Fact]
    public void A_revocation_taken_back_lets_the_peer_authenticate_again_with_its_enrolled_key_even_after_a_restart()
    {
        var entity = Start();
        Enroll(entity);
        Request<PeerRevoked>(entity, new RevokePeer(PeerId));

        Assert.Equal(new PeerUnrevoked(PeerId), Request<PeerUnrevoked>(entity, new UnrevokePeer(PeerId)));

        Assert.False(State(entity).Revoked);
        Authenticate(entity);
        Stop(entity);
        var recovered = Start();
        Assert.False(State(recovered).Revoked);
        Authenticate(recovered);
        // Only its enrolled key: the revocation taken back enrolls nobody new.
        Assert.Equal(RefusalReason.BadSignature, Request<PeerRefused>(recovered, Auth(signer: MyDvpn.Security.IdentityKey.Generate())).Reason);
    }

    [Fact]
    public void Taking_back_the_revocation_of_a_peer_not_revoked_records_nothing()
    {
        var entity = Start();
        Enroll(entity);

        Request<PeerUnrevoked>(entity, new UnrevokePeer(PeerId));

        Assert.Empty(Journaled<PeerUnrevoked>());
        Assert.False(State(entity).Revoked);
    }
}
