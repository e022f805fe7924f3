using Akka.Actor;
using Akka.Cluster.Sharding;
using Microsoft.Data.Sqlite;
using MyDvpn.Protocol.Control;
using MyDvpn.SuperNode.Sessions;
using Xunit.Abstractions;

namespace MyDvpn.SuperNode.Tests.Sessions;

/// <summary>A session stopped and started anew recovers from the SQLite journal and snapshots; passivation; journal loss.</summary>
public sealed class PeerSessionRecoveryTests(ITestOutputHelper output) : PeerSessionTestKit(output)
{
    private const string OtherPeer = "client-7";

    [Fact]
    public void Restarted_session_keeps_the_enrollment_and_redelivers_commands_in_flight_on_attach()
    {
        var entity = Start();
        Enroll(entity, PeerRole.Exit);
        var id = Issue(entity, CreateTestProbe(), SetupExit(), OtherPeer);
        Stop(entity);

        var restarted = Start();

        var state = State(restarted);
        Assert.True(state.Enrolled);
        Assert.Equal(PeerRole.Exit, state.Role);
        Assert.Equal([id], state.InFlightCommandIds);
        var edge = AttachEdge(restarted, Authenticate(restarted, PeerRole.Exit));
        Assert.Equal(id, edge.ExpectMsg<DeliverCommand>(Patience).Command.CommandId);
        restarted.Tell(new CommandAnswered(PeerId, Done(id)));
        // The issuer is forgotten with the old incarnation; the durable route still carries the outcome.
        var outcome = PeersRegion.ExpectMsg<CommandOutcomeFor>(Patience);
        Assert.Equal(new CommandOutcomeFor(OtherPeer, new CommandOutcome(PeerId, id, Done(id), null)), outcome);
        Assert.Single(Enrollment.Calls);
    }

    [Fact]
    public void Restarted_session_keeps_the_revocation()
    {
        var entity = Start();
        Enroll(entity);
        Request<PeerRevoked>(entity, new RevokePeer(PeerId));
        Stop(entity);

        var restarted = Start();

        Assert.True(State(restarted).Revoked);
        Assert.Equal(RefusalReason.Revoked, Request<PeerRefused>(restarted, Auth()).Reason);
    }

    [Fact]
    public void Edge_can_attach_again_with_its_session_id_after_the_session_restarted()
    {
        var entity = Start();
        var session = Enroll(entity);
        var edge = AttachEdge(entity, session);
        Stop(entity);

        var restarted = Start();
        restarted.Tell(new AttachStream(PeerId, session, edge.Ref), edge.Ref);

        edge.ExpectMsg(new StreamAttached(PeerId, session), Patience);
        Assert.True(State(restarted).StreamAttached);
    }

    [Fact]
    public void Command_whose_deadline_passed_while_the_session_was_stopped_fails_on_recovery()
    {
        var entity = Start();
        Enroll(entity);
        var expiring = Issue(entity, CreateTestProbe(), SetupExit("expiring", Clock.GetUtcNow().AddSeconds(5)), OtherPeer);
        var lasting = Issue(entity, CreateTestProbe(), SetupExit("lasting", Clock.GetUtcNow().AddMinutes(5)), OtherPeer);
        Stop(entity);
        Clock.Advance(TimeSpan.FromSeconds(10));

        var restarted = Start();

        var failed = PeersRegion.ExpectMsg<CommandOutcomeFor>(Patience).Outcome;
        Assert.Equal((expiring, "deadline passed while no stream was attached"), (failed.CommandId, failed.FailureReason));
        Assert.Equal([lasting], State(restarted).InFlightCommandIds);
        Assert.Equal([expiring], Journaled<CommandFailed>().Select(f => f.CommandId));
    }

    [Fact]
    public async Task Session_recovers_from_a_snapshot_and_still_ignores_answers_it_already_took()
    {
        var settings = Fast with { SnapshotEvery = 2 };
        var entity = Start(settings);
        var edge = AttachEdge(entity, Enroll(entity, PeerRole.Both)); // events 1, 2: snapshot
        var issuer = CreateTestProbe();
        var finished = Issue(entity, issuer, SetupExit("finished"));
        edge.ExpectMsg<DeliverCommand>(Patience);
        entity.Tell(new CommandAnswered(PeerId, Done(finished)));
        issuer.ExpectMsg<CommandOutcome>(Patience); // events 3, 4: snapshot
        var pending = Issue(entity, issuer, SetupExit("pending", Clock.GetUtcNow().AddMinutes(5)), OtherPeer); // event 5
        await AwaitAssertAsync(async () => Assert.Equal(4, (await LatestSnapshotAsync(PersistenceId))?.Metadata.SequenceNr),
            Patience);
        Stop(entity);

        var restarted = Start(settings);

        var state = State(restarted);
        Assert.Equal((true, PeerRole.Both), (state.Enrolled, state.Role));
        Assert.Equal([pending], state.InFlightCommandIds);
        var snapshot = Assert.IsType<PeerSnapshot>((await LatestSnapshotAsync(PersistenceId))!.Snapshot);
        Assert.Equal(["finished"], snapshot.Finished);
        restarted.Tell(new CommandAnswered(PeerId, Done(finished)));
        restarted.Tell(new CommandAnswered(PeerId, Done(pending)));
        Assert.Equal(pending, PeersRegion.ExpectMsg<CommandOutcomeFor>(Patience).Outcome.CommandId);
        Assert.Equal([finished, pending], Journaled<CommandCompleted>().Select(c => c.CommandId));
    }

    [Fact]
    public void Idle_session_asks_its_shard_to_passivate_it_and_stops_on_the_stop_message()
    {
        var idle = TimeSpan.FromSeconds(120);
        var entity = ChildActorOf(PeerSession.Props(PeerId, Region,
            Fast with { PassivateIdleAfter = idle }, Enrollment, PeersRegion.Ref, Clock, logger: SessionLog));
        Enroll(entity);

        Advance(entity, idle / 2); // its round trip half-way is activity: the check at one period finds it too recent
        Advance(entity, idle / 2);
        ExpectNoMsg(TimeSpan.Zero);
        Advance(entity, idle);
        var passivate = ExpectMsg<Passivate>(Patience);

        Assert.Same(StopPeerSession.Instance, passivate.StopMessage);
        Watch(entity);
        entity.Tell(passivate.StopMessage);
        ExpectTerminated(entity, Patience);
    }

    [Fact]
    public void Session_with_an_attached_stream_or_a_command_in_flight_does_not_ask_to_be_passivated()
    {
        var idle = TimeSpan.FromSeconds(120);
        var entity = ChildActorOf(PeerSession.Props(PeerId, Region,
            Fast with { PassivateIdleAfter = idle, DefaultDeadline = TimeSpan.FromHours(1) }, Enrollment, PeersRegion.Ref, Clock,
            logger: SessionLog));
        var edge = AttachEdge(entity, Enroll(entity));
        Advance(entity, idle * 4);
        ExpectNoMsg(TimeSpan.Zero);

        Sys.Stop(edge.Ref);
        AwaitAssert(() => Assert.False(State(entity).StreamAttached), Patience);
        Issue(entity, CreateTestProbe(), SetupExit());
        Advance(entity, idle * 4);
        ExpectNoMsg(TimeSpan.Zero);

        Assert.Equal(1, State(entity).CommandsInFlight);
    }

    [Fact]
    public void Request_whose_events_the_journal_cannot_write_gets_a_refusal_instead_of_silence()
    {
        var entity = Start();
        Enroll(entity);
        using (var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = DatabaseFile }.ToString()))
        {
            connection.Open();
            using var drop = connection.CreateCommand();
            drop.CommandText = "DROP TABLE journal";
            drop.ExecuteNonQuery();
        }

        var issuer = CreateTestProbe();
        entity.Tell(new IssueCommand(PeerId, SetupExit("cmd-1")), issuer.Ref);

        Assert.Equal(
            new CommandOutcome(PeerId, "cmd-1", null, "not issued: the session journal is unavailable; retry"),
            issuer.ExpectMsg<CommandOutcome>(Patience));
    }
}
