using Akka.Actor;
using Akka.TestKit;
using Google.Protobuf;
using MyDvpn.Protocol.Control;
using MyDvpn.SuperNode.Exits;
using MyDvpn.SuperNode.Sessions;
using MyDvpn.SuperNode.Tests.Exits;
using Xunit.Abstractions;
using RotationReason = MyDvpn.Protocol.SuperNode.RotationReason;
using StatusCode = Grpc.Core.StatusCode;

namespace MyDvpn.SuperNode.Tests.Sessions;

/// <summary>
/// Exits through a peer's session over a real SQLite journal: a client's request, allocation at the exit's region (a
/// <see cref="FakeExitAllocator"/>), the client's own SetupExit, rollback and release; an exit's announcements to its
/// region's pool (a TestProbe) and the clients it serves.
/// </summary>
public sealed class PeerSessionExitTests(ITestOutputHelper output) : PeerSessionTestKit(output)
{
    private const string ExitRegion = "us-east";
    private const string ExitPeer = "exit-9";
    private const string ExitEndpoint = "198.51.100.7:51820";

    private static readonly byte[] ClientKey = Enumerable.Repeat((byte)0x11, 32).ToArray();
    private static readonly byte[] ExitKey = Enumerable.Repeat((byte)0xE1, 32).ToArray();

    /// <summary>Commands are delivered once here unless a test moves the clock past their ack timeout.</summary>
    private static readonly PeerSessionSettings Settings = Fast with { AckTimeout = TimeSpan.FromSeconds(3) };

    private static readonly ExitSettings Exits = ExitSettings.Default with
    {
        ExitHeartbeat = TimeSpan.FromMilliseconds(300),
        ReleaseRetry = TimeSpan.FromMilliseconds(100),
    };

    private TestProbe? _pools;

    private FakeExitAllocator Allocator { get; } = new();

    /// <summary>Stands in for the region's <c>exit-pool</c> shard region.</summary>
    private TestProbe Pools => _pools ??= CreateTestProbe("exit-pools");

    [Fact]
    public async Task Client_exit_request_is_allocated_at_the_exit_region_and_the_client_applies_its_half()
    {
        var entity = StartWithExits();
        var edge = ConnectClient(entity);

        entity.Tell(new RequestExit(PeerId, ExitRegion, ClientKey));

        var allocation = await Allocator.NextAllocationAsync();
        var request = allocation.Request;
        Assert.Equal((ExitRegion, PeerId, Region), (request.Region, request.ClientPeerId, request.ClientRegion));
        Assert.Equal(ClientKey, request.ClientPublicKey.ToByteArray());
        Assert.Matches("^[0-9a-f]{32}$", request.AssignmentId);
        var requested = Assert.Single(edge.ExpectMsg<PeerAssignments>(Patience).Assignments);
        Assert.Equal((request.AssignmentId, ExitRegion, ExitAssignmentRecord.Requested), (requested.AssignmentId, requested.Region, requested.State));

        allocation.Allocate(Assignment(request.AssignmentId));

        var command = edge.ExpectMsg<DeliverCommand>(Patience).Command;
        var setup = command.SetupExit;
        Assert.Equal((request.AssignmentId, ExitSide.Client, ExitPeer, ExitRegion), (setup.AssignmentId, setup.Side, setup.CounterpartPeerId, setup.CounterpartRegion));
        Assert.Equal(ExitKey, setup.Peer.PublicKey.ToByteArray());
        Assert.Equal(ExitEndpoint, setup.Peer.Endpoint);
        Assert.Equal(["0.0.0.0/0"], setup.Peer.AllowedIps);
        Assert.Equal(25u, setup.Peer.PersistentKeepaliveSeconds);
        Assert.Equal(["100.96.0.2/32"], setup.TunnelAddresses);
        Assert.Equal(Clock.GetUtcNow() + Exits.ClientSetupTimeout, command.Deadline.ToDateTimeOffset());
        Assert.Equal(ExitAssignmentRecord.SettingUp, Assert.Single(edge.ExpectMsg<PeerAssignments>(Patience).Assignments).State);

        entity.Tell(new CommandAnswered(PeerId, Done(command.CommandId)));

        var shown = Assert.Single(edge.ExpectMsg<PeerAssignments>(Patience).Assignments);
        Assert.Equal((request.AssignmentId, ExitAssignmentRecord.Active), (shown.AssignmentId, shown.State));
        var held = Assert.Single(State(entity).Assignments);
        Assert.Equal(Assignment(request.AssignmentId).ToProto(), held.ToProto());
        Assert.Equal(
            [typeof(ExitRequested), typeof(ExitAssigned), typeof(CommandIssued), typeof(CommandCompleted)],
            JournalEvents(PersistenceId).Skip(2).Select(e => e.GetType()));
    }

    [Fact]
    public async Task Refused_allocation_tells_the_client_why_and_leaves_it_without_an_exit()
    {
        var entity = StartWithExits();
        var edge = ConnectClient(entity);
        entity.Tell(new RequestExit(PeerId, ExitRegion, ClientKey));
        var allocation = await Allocator.NextAllocationAsync();

        allocation.Refuse(RefusalReason.NoExitAvailable, "region us-east has no exit online");

        var failed = edge.FishForMessage<SendToPeer>(_ => true, Patience).Message;
        Assert.Equal(
            new ExitRequestFailed { Region = ExitRegion, GrpcStatus = 8, Reason = RefusalReason.NoExitAvailable, Detail = "region us-east has no exit online" },
            failed.ExitRequestFailed);
        Assert.Empty(edge.ExpectMsg<PeerAssignments>(Patience).Assignments);
        Assert.Empty(State(entity).Assignments);
        Assert.Empty(Allocator.ReleaseCalls);
        var refused = Assert.Single(Journaled<ExitRequestRefused>());
        Assert.Equal((allocation.Request.AssignmentId, 8, RefusalReason.NoExitAvailable), (refused.AssignmentId, refused.StatusCode, refused.Reason));
    }

    [Fact]
    public async Task Region_that_did_not_answer_is_asked_to_release_what_it_may_have_allocated_meanwhile()
    {
        var entity = StartWithExits();
        var edge = ConnectClient(entity);
        entity.Tell(new RequestExit(PeerId, ExitRegion, ClientKey));
        var allocation = await Allocator.NextAllocationAsync();

        allocation.Refuse(RefusalReason.RegionUnreachable, "no SuperNode of region us-east answered");

        var release = await Allocator.NextReleaseAsync();
        Assert.Equal((allocation.Request.AssignmentId, ExitRegion), (release.AssignmentId, release.Region));
        var failed = edge.FishForMessage<SendToPeer>(_ => true, Patience).Message.ExitRequestFailed;
        Assert.Equal((14, RefusalReason.RegionUnreachable), (failed.GrpcStatus, failed.Reason));
        Assert.Empty(State(entity).Assignments);
    }

    [Fact]
    public async Task Client_failing_to_apply_its_setup_exit_gets_told_and_both_halves_are_rolled_back()
    {
        var entity = StartWithExits();
        var edge = ConnectClient(entity);
        entity.Tell(new RequestExit(PeerId, ExitRegion, ClientKey));
        var allocation = await Allocator.NextAllocationAsync();
        var assignmentId = allocation.Request.AssignmentId;
        allocation.Allocate(Assignment(assignmentId));
        var setup = ExpectDelivered(edge, Command.BodyOneofCase.SetupExit);

        entity.Tell(new CommandAnswered(PeerId, new CommandResponse
        {
            CommandId = setup.CommandId,
            Failure = new CommandFailure { Code = CommandError.Dataplane, Reason = "wg-mydvpn is missing" },
        }));

        var failed = edge.FishForMessage<SendToPeer>(_ => true, Patience).Message.ExitRequestFailed;
        Assert.Equal((ExitRegion, (int)StatusCode.Unavailable, RefusalReason.ExitSetupFailed), (failed.Region, failed.GrpcStatus, failed.Reason));
        Assert.Contains("wg-mydvpn is missing", failed.Detail);
        var remove = ExpectDelivered(edge, Command.BodyOneofCase.RemoveExit).RemoveExit;
        Assert.Equal((assignmentId, ExitSide.Client), (remove.AssignmentId, remove.Side));
        Assert.Equal(ExitKey, remove.PeerPublicKey.ToByteArray());
        var release = await Allocator.NextReleaseAsync();
        Assert.Equal((assignmentId, ExitRegion), (release.AssignmentId, release.Region));
        Assert.Contains("wg-mydvpn is missing", release.Reason);
        AwaitAssert(() => Assert.Empty(State(entity).Assignments), Patience);
        Assert.Equal([assignmentId], Journaled<ExitReleaseCompleted>().Select(e => e.AssignmentId));
    }

    [Fact]
    public async Task Client_that_never_answers_its_setup_exit_is_rolled_back_when_the_command_fails()
    {
        var entity = StartWithExits(settings: Fast); // 3 deliveries, then it fails at 600 ms
        var edge = ConnectClient(entity);
        entity.Tell(new RequestExit(PeerId, ExitRegion, ClientKey));
        var allocation = await Allocator.NextAllocationAsync();
        allocation.Allocate(Assignment(allocation.Request.AssignmentId));
        ExpectDelivered(edge, Command.BodyOneofCase.SetupExit);
        Advance(entity, TimeSpan.FromMilliseconds(600), step: TimeSpan.FromMilliseconds(50));

        var failed = edge.FishForMessage<SendToPeer>(_ => true, Patience).Message.ExitRequestFailed;

        Assert.Equal(((int)StatusCode.Unavailable, RefusalReason.ExitSetupFailed), (failed.GrpcStatus, failed.Reason));
        Assert.Equal(allocation.Request.AssignmentId, (await Allocator.NextReleaseAsync()).AssignmentId);
        AwaitAssert(() => Assert.Empty(State(entity).Assignments), Patience);
    }

    [Fact]
    public async Task Disconnect_of_a_client_with_an_active_exit_releases_it_at_the_exit_region()
    {
        var entity = StartWithExits();
        var edge = ConnectClient(entity);
        var assignmentId = await ActivateExit(entity, edge);

        Issue(entity, CreateTestProbe(), new Command { Disconnect = new Disconnect { Reason = "maintenance" } });

        var release = await Allocator.NextReleaseAsync();
        Assert.Equal((assignmentId, ExitRegion), (release.AssignmentId, release.Region));
        Assert.Contains("maintenance", release.Reason);
        AwaitAssert(() => Assert.Empty(State(entity).Assignments), Patience);
        // The Disconnect makes the client drop its half itself: no RemoveExit is issued to it.
        Assert.DoesNotContain(Journaled<CommandIssued>(), c => Command.Parser.ParseFrom(c.Command).BodyCase == Command.BodyOneofCase.RemoveExit);
    }

    [Fact]
    public async Task Revoked_client_gives_its_exit_back()
    {
        var entity = StartWithExits();
        var edge = ConnectClient(entity);
        var assignmentId = await ActivateExit(entity, edge);

        Request<PeerRevoked>(entity, new RevokePeer(PeerId));

        Assert.Equal(assignmentId, (await Allocator.NextReleaseAsync()).AssignmentId);
        AwaitAssert(() => Assert.Empty(State(entity).Assignments), Patience);
    }

    [Fact]
    public async Task Release_the_exit_region_cannot_confirm_is_retried_until_it_does()
    {
        var entity = StartWithExits();
        var edge = ConnectClient(entity);
        var assignmentId = await ActivateExit(entity, edge);
        Allocator.RespondToRelease = (_, call) => call < 3
            ? Task.FromException<bool>(new ExitRegionUnreachableException("no SuperNode of region us-east answered"))
            : Task.FromResult(true);

        entity.Tell(new ClientReleasesExit(PeerId, assignmentId));

        var remove = ExpectDelivered(edge, Command.BodyOneofCase.RemoveExit).RemoveExit;
        Assert.Equal((assignmentId, ExitSide.Client), (remove.AssignmentId, remove.Side));
        Assert.Equal(assignmentId, (await Allocator.NextReleaseAsync()).AssignmentId);
        Assert.Equal(ExitAssignmentRecord.Releasing, Assert.Single(State(entity).Assignments).State);
        AdvanceUntil(entity, Exits.ReleaseRetry, () => Assert.Equal(2, Allocator.ReleaseCalls.Count));
        Assert.Equal(assignmentId, (await Allocator.NextReleaseAsync()).AssignmentId);
        AdvanceUntil(entity, Exits.ReleaseRetry, () => Assert.Equal(3, Allocator.ReleaseCalls.Count));
        Assert.Equal(assignmentId, (await Allocator.NextReleaseAsync()).AssignmentId);
        AwaitAssert(() => Assert.Empty(State(entity).Assignments), Patience);
        Assert.Equal(3, Allocator.ReleaseCalls.Count);
        Assert.Single(Journaled<ExitReleaseCompleted>());
    }

    [Fact]
    public async Task Second_exit_request_while_one_is_under_way_is_ignored()
    {
        var entity = StartWithExits();
        ConnectClient(entity);
        entity.Tell(new RequestExit(PeerId, ExitRegion, ClientKey));
        await Allocator.NextAllocationAsync();

        entity.Tell(new RequestExit(PeerId, ExitRegion, ClientKey));

        State(entity);
        Assert.Equal(1, Allocator.AllocationCalls);
        Assert.Single(Journaled<ExitRequested>());
    }

    [Fact]
    public async Task Client_asking_again_for_the_exit_it_holds_gets_its_setup_exit_again()
    {
        var entity = StartWithExits();
        var edge = ConnectClient(entity);
        var assignmentId = await ActivateExit(entity, edge);
        // The agent restarted without its tunnel state: it authenticates anew and asks for the exit it holds.
        var restarted = AttachEdge(entity, Authenticate(entity));

        entity.Tell(new RequestExit(PeerId, ExitRegion, ClientKey));

        var again = ExpectDelivered(restarted, Command.BodyOneofCase.SetupExit).SetupExit;
        Assert.Equal((assignmentId, ExitSide.Client, ExitEndpoint), (again.AssignmentId, again.Side, again.Peer.Endpoint));
        Assert.Equal(1, Allocator.AllocationCalls);
        Assert.Equal(ExitAssignmentRecord.Active, Assert.Single(State(entity).Assignments).State);
    }

    [Fact]
    public async Task Client_asking_for_another_region_gives_its_exit_back_first_and_is_told_to_ask_again()
    {
        var entity = StartWithExits();
        var edge = ConnectClient(entity);
        var assignmentId = await ActivateExit(entity, edge);

        entity.Tell(new RequestExit(PeerId, "ap-south", ClientKey));

        var failed = edge.FishForMessage<SendToPeer>(_ => true, Patience).Message.ExitRequestFailed;
        Assert.Equal(("ap-south", (int)StatusCode.Unavailable, RefusalReason.Unavailable), (failed.Region, failed.GrpcStatus, failed.Reason));
        Assert.Equal(assignmentId, (await Allocator.NextReleaseAsync()).AssignmentId);
        AwaitAssert(() => Assert.Empty(State(entity).Assignments), Patience);
        Assert.Equal(1, Allocator.AllocationCalls);
    }

    [Fact]
    public void Exit_request_from_a_session_authenticated_as_exit_is_refused_as_not_an_exit_client()
    {
        var entity = StartWithExits();
        var edge = AttachEdge(entity, Enroll(entity, PeerRole.Exit));

        entity.Tell(new RequestExit(PeerId, ExitRegion, ClientKey));

        var failed = edge.ExpectMsg<SendToPeer>(Patience).Message.ExitRequestFailed;
        Assert.Equal((ExitRegion, (int)StatusCode.PermissionDenied, RefusalReason.NotAnExitClient), (failed.Region, failed.GrpcStatus, failed.Reason));
        State(entity);
        Assert.Equal(0, Allocator.AllocationCalls);
        Assert.Empty(Journaled<ExitRequested>());
    }

    [Theory]
    [InlineData(31)]
    [InlineData(0)]
    public void Exit_request_with_a_key_that_is_not_32_bytes_is_refused_as_malformed(int keyLength)
    {
        var entity = StartWithExits();
        var edge = ConnectClient(entity);

        entity.Tell(new RequestExit(PeerId, ExitRegion, new byte[keyLength]));

        var failed = edge.ExpectMsg<SendToPeer>(Patience).Message.ExitRequestFailed;
        Assert.Equal(((int)StatusCode.InvalidArgument, RefusalReason.MalformedMessage), (failed.GrpcStatus, failed.Reason));
        State(entity);
        Assert.Equal(0, Allocator.AllocationCalls);
    }

    [Fact]
    public async Task Restarted_session_asks_the_exit_region_again_with_the_same_assignment_id()
    {
        var entity = StartWithExits();
        ConnectClient(entity);
        entity.Tell(new RequestExit(PeerId, ExitRegion, ClientKey));
        var first = await Allocator.NextAllocationAsync();
        Stop(entity);
        Assert.True(first.Result.IsCanceled, "the stopped session's call is cancelled");

        var restarted = StartWithExits();

        var second = await Allocator.NextAllocationAsync();
        Assert.Equal(first.Request, second.Request);
        second.Allocate(Assignment(second.Request.AssignmentId));
        var edge = AttachEdge(restarted, Authenticate(restarted));
        var setup = ExpectDelivered(edge, Command.BodyOneofCase.SetupExit);
        Assert.Equal(second.Request.AssignmentId, setup.SetupExit.AssignmentId);
        restarted.Tell(new CommandAnswered(PeerId, Done(setup.CommandId)));
        AwaitAssert(() => Assert.Equal(ExitAssignmentRecord.Active, Assert.Single(State(restarted).Assignments).State), Patience);
    }

    [Fact]
    public async Task Restarted_session_keeps_its_active_exit()
    {
        var entity = StartWithExits();
        var assignmentId = await ActivateExit(entity, ConnectClient(entity));
        Stop(entity);

        var restarted = StartWithExits();

        var held = Assert.Single(State(restarted).Assignments);
        Assert.Equal(Assignment(assignmentId).ToProto(), held.ToProto());
        Assert.Equal(1, Allocator.AllocationCalls);
    }

    [Fact]
    public void Exit_session_announces_its_exit_while_its_stream_is_attached_and_withdraws_it_when_the_stream_ends()
    {
        var entity = StartWithExits();
        var session = Enroll(entity, PeerRole.Exit);

        var edge = AttachExit(entity, session, capacity: 4);

        Assert.Equal(new ExitOnline(Region, PeerId, 4, "203.0.113.9", null), Pools.ExpectMsg<ExitOnline>(Patience));
        entity.Tell(new PeerRttMeasured(PeerId, TimeSpan.FromMilliseconds(7)));
        Advance(entity, Exits.ExitHeartbeat); // re-announced with its RTT
        Assert.Equal(new ExitOnline(Region, PeerId, 4, "203.0.113.9", TimeSpan.FromMilliseconds(7)), Pools.ExpectMsg<ExitOnline>(TimeSpan.Zero));
        Sys.Stop(edge.Ref);
        Assert.Equal(new ExitOffline(Region, PeerId), Pools.FishForMessage<ExitOffline>(_ => true, Patience));
        Advance(entity, Exits.ExitHeartbeat * 3);
        Pools.ExpectNoMsg(TimeSpan.Zero);
    }

    [Fact]
    public void Only_a_session_acting_as_exit_with_a_capacity_is_announced()
    {
        var entity = StartWithExits();
        Enroll(entity, PeerRole.Both);

        foreach (var (role, capacity) in new[] { (PeerRole.Client, 4), (PeerRole.Exit, 0) })
        {
            var edge = AttachExit(entity, Authenticate(entity, role), capacity);
            State(entity);
            Pools.ExpectNoMsg(TimeSpan.Zero);
            Sys.Stop(edge.Ref);
            AwaitAssert(() => Assert.False(State(entity).StreamAttached), Patience);
        }

        AttachExit(entity, Authenticate(entity, PeerRole.Both), capacity: 2);

        Assert.Equal(new ExitOnline(Region, PeerId, 2, "203.0.113.9", null), Pools.ExpectMsg<ExitOnline>(Patience));
    }

    [Fact]
    public void Exit_stream_replaced_by_a_stream_acting_as_client_withdraws_the_exit()
    {
        var entity = StartWithExits();
        var exitEdge = AttachExit(entity, Enroll(entity, PeerRole.Both), capacity: 4);
        Pools.ExpectMsg<ExitOnline>(Patience);

        // The peer (enrolled as both) comes back as a client only; its exit stream is replaced.
        AttachExit(entity, Authenticate(entity, PeerRole.Client), capacity: 0);

        Assert.Equal(RefusalReason.Replaced, exitEdge.FishForMessage<CloseStream>(_ => true, Patience).Reason);
        Assert.Equal(new ExitOffline(Region, PeerId), Pools.FishForMessage<ExitOffline>(_ => true, Patience));
    }

    [Fact]
    public void Exit_session_holds_the_clients_it_acked_until_their_remove_exit_completes()
    {
        var entity = StartWithExits();
        var edge = AttachExit(entity, Enroll(entity, PeerRole.Exit), capacity: 4);
        var pool = CreateTestProbe();
        var setupId = Issue(entity, pool, ExitSideSetup("as-1"));
        ExpectDelivered(edge, Command.BodyOneofCase.SetupExit);
        Assert.Empty(State(entity).Assignments);

        entity.Tell(new CommandAnswered(PeerId, ExitAccepts(setupId)));

        Assert.True(pool.ExpectMsg<CommandOutcome>(Patience).Succeeded);
        var served = Assert.Single(State(entity).Assignments);
        Assert.Equal(
            ("as-1", Region, PeerId, "100.96.0.2/32", "100.96.0.1/24", "client-1", "ap-south", ExitAssignmentRecord.Active),
            (served.AssignmentId, served.Region, served.ExitPeerId, served.ClientAddress, served.ExitAddress, served.ClientPeerId, served.ClientRegion, served.State));
        Assert.Equal(ClientKey, served.ClientPublicKey);
        Assert.Equal(ExitKey, served.ExitPublicKey);
        Assert.Equal("as-1", Assert.Single(edge.FishForMessage<PeerAssignments>(_ => true, Patience).Assignments).AssignmentId);

        var removeId = Issue(entity, pool, new Command
        {
            RemoveExit = new RemoveExit { AssignmentId = "as-1", PeerPublicKey = ByteString.CopyFrom(ClientKey), Side = ExitSide.Exit, Reason = "released" },
        });
        ExpectDelivered(edge, Command.BodyOneofCase.RemoveExit);
        Assert.Single(State(entity).Assignments);
        entity.Tell(new CommandAnswered(PeerId, Done(removeId)));

        pool.ExpectMsg<CommandOutcome>(Patience);
        Assert.Empty(State(entity).Assignments);
        Assert.Empty(edge.FishForMessage<PeerAssignments>(_ => true, Patience).Assignments);
    }

    [Fact]
    public void Exit_setup_the_exit_refused_adds_no_client()
    {
        var entity = StartWithExits();
        var edge = AttachExit(entity, Enroll(entity, PeerRole.Exit), capacity: 4);
        var pool = CreateTestProbe();
        var setupId = Issue(entity, pool, ExitSideSetup("as-1"));
        ExpectDelivered(edge, Command.BodyOneofCase.SetupExit);

        entity.Tell(new CommandAnswered(PeerId, new CommandResponse
        {
            CommandId = setupId,
            Failure = new CommandFailure { Code = CommandError.Capacity, Reason = "full" },
        }));

        Assert.False(pool.ExpectMsg<CommandOutcome>(Patience).Succeeded);
        Assert.Empty(State(entity).Assignments);
    }

    [Fact]
    public async Task Session_recovers_its_exit_and_the_clients_it_serves_from_a_snapshot()
    {
        var settings = Settings with { SnapshotEvery = 1 };
        var entity = StartWithExits(settings: settings);
        var edge = AttachEdge(entity, Enroll(entity, PeerRole.Both));
        var assignmentId = await ActivateExit(entity, edge);
        var pool = CreateTestProbe();
        var setupId = Issue(entity, pool, ExitSideSetup("as-served"));
        entity.Tell(new CommandAnswered(PeerId, ExitAccepts(setupId)));
        pool.ExpectMsg<CommandOutcome>(Patience);
        var before = State(entity).Assignments;
        var lastEvent = JournalEvents(PersistenceId).Count;
        await AwaitAssertAsync(async () => Assert.Equal(lastEvent, (await LatestSnapshotAsync(PersistenceId))?.Metadata.SequenceNr), Patience);
        Stop(entity);

        var restarted = StartWithExits(settings: settings);

        var after = State(restarted).Assignments;
        Assert.Equal(["as-served", assignmentId], after.Select(a => a.AssignmentId));
        Assert.Equal(before.Select(a => a.ToProto()), after.Select(a => a.ToProto()));
        var snapshot = Assert.IsType<PeerSnapshot>((await LatestSnapshotAsync(PersistenceId))!.Snapshot);
        Assert.Equal((assignmentId, ExitPhase.Active), (snapshot.Exit?.AssignmentId, snapshot.Exit?.Phase));
        Assert.Equal("as-served", Assert.Single(snapshot.Served!).AssignmentId);
    }

    [Fact]
    public async Task A_rotation_is_counted_when_the_client_moved_and_not_again_when_the_session_replays_it()
    {
        var registry = Prometheus.Metrics.NewCustomRegistry();
        var metrics = new ExitMetrics(Prometheus.Metrics.WithCustomRegistry(registry));
        var entity = StartWithExits(metrics: metrics);
        var edge = ConnectClient(entity);
        var assignmentId = await ActivateExit(entity, edge);
        var startedAt = Clock.GetUtcNow();

        entity.Tell(new RotateExit(PeerId, assignmentId, RotationReason.ExitDrained, "exit exit-9 is drained by the operator"));
        var allocation = await Allocator.NextAllocationAsync();
        Clock.Advance(TimeSpan.FromSeconds(1.5));
        allocation.Allocate(Assignment(allocation.Request.AssignmentId) with { ExitPeerId = "exit-10", ExitEndpoint = "198.51.100.10:51820" });
        var rotate = ExpectDelivered(edge, Command.BodyOneofCase.RotatePeer);
        entity.Tell(new CommandAnswered(PeerId, Done(rotate.CommandId)));
        var shown = edge.FishForMessage<PeerAssignments>(a => a.Assignments.Any(x => x.AssignmentId == allocation.Request.AssignmentId), Patience);

        Assert.Equal(new ExitRotationRecord(assignmentId, ExitPeer, RotationReason.ExitDrained, "exit exit-9 is drained by the operator",
            startedAt + TimeSpan.FromSeconds(1.5)), Assert.Single(shown.Assignments).LastRotation);
        var scraped = await MetricsText.ScrapeAsync(registry);
        Assert.Equal(1, MetricsText.Value(scraped, """mydvpn_exit_rotations_total{reason="exit_drained",outcome="moved"}"""));
        Assert.Equal(1.5, MetricsText.Value(scraped, "mydvpn_exit_rotation_seconds_sum"));

        Stop(entity);
        var restarted = StartWithExits(metrics: metrics);

        Assert.Equal("exit-10", Assert.Single(State(restarted).Assignments).ExitPeerId);
        scraped = await MetricsText.ScrapeAsync(registry);
        Assert.Equal(1, MetricsText.Value(scraped, """mydvpn_exit_rotations_total{reason="exit_drained",outcome="moved"}"""));
        Assert.Equal(1, MetricsText.Value(scraped, "mydvpn_exit_rotation_seconds_count"));
    }

    private IActorRef StartWithExits(TimeProvider? time = null, PeerSessionSettings? settings = null, ExitMetrics? metrics = null) =>
        Sys.ActorOf(PeerSession.Props(PeerId, Region, settings ?? Settings, Enrollment, PeersRegion.Ref, time ?? Clock,
            new ExitServices(Exits, Allocator, Pools.Ref) { Metrics = metrics ?? ExitMetrics.Default }, SessionLog));

    /// <summary>Enrolls the peer as a client and attaches a probe as its edge.</summary>
    private TestProbe ConnectClient(IActorRef entity) => AttachEdge(entity, Enroll(entity));

    /// <summary>A probe as the edge of a peer that offers <paramref name="capacity"/> clients as an exit.</summary>
    private TestProbe AttachExit(IActorRef entity, string sessionId, int capacity)
    {
        var edge = CreateTestProbe();
        entity.Tell(new AttachStream(PeerId, sessionId, edge.Ref, "203.0.113.9", capacity), edge.Ref);
        edge.ExpectMsg(new StreamAttached(PeerId, sessionId), Patience);
        return edge;
    }

    /// <summary>
    /// Issue 13: 200 ExitRequests for an exit already held re-issued 200 SetupExits and wrote them all to the journal. The
    /// client here answers every command it gets (each answer is written too). Measured (journal bytes: the serialized
    /// events): before, 200 SetupExits and 400 events; now none.
    /// </summary>
    [Fact]
    public async Task Repeated_requests_for_the_exit_it_holds_are_answered_from_state_without_a_setup_or_an_event()
    {
        var entity = StartWithExits();
        var edge = ConnectClient(entity);
        await ActivateExit(entity, edge);
        var (eventsBefore, bytesBefore) = JournalSize();

        var setups = 0;
        for (var i = 0; i < 200; i++)
        {
            entity.Tell(new RequestExit(PeerId, ExitRegion, ClientKey));
            State(entity);
            foreach (var delivered in edge.ReceiveWhile(m => m, TimeSpan.FromMilliseconds(10))
                         .OfType<DeliverCommand>())
            {
                setups += delivered.Command.BodyCase == Command.BodyOneofCase.SetupExit ? 1 : 0;
                entity.Tell(new CommandAnswered(PeerId, Done(delivered.Command.CommandId)));
            }
        }
        State(entity);
        var (eventsAfter, bytesAfter) = JournalSize();

        Output!.WriteLine($"200 repeated ExitRequests: {setups} SetupExits, {eventsAfter - eventsBefore} events, {bytesAfter - bytesBefore} journal bytes");
        Assert.Equal(0, setups);
        Assert.Equal((0, 0L), (eventsAfter - eventsBefore, bytesAfter - bytesBefore));
    }

    [Fact]
    public async Task A_client_that_authenticated_anew_and_asks_for_its_exit_gets_its_setup_exit_once()
    {
        var entity = StartWithExits();
        var edge = ConnectClient(entity);
        var assignmentId = await ActivateExit(entity, edge);
        // It restarted without its tunnel state: a new session, and it asks (more than once before the answer comes).
        var again = AttachEdge(entity, Authenticate(entity));

        for (var i = 0; i < 5; i++)
            entity.Tell(new RequestExit(PeerId, ExitRegion, ClientKey));
        var setup = ExpectDelivered(again, Command.BodyOneofCase.SetupExit);
        State(entity);
        entity.Tell(new CommandAnswered(PeerId, Done(setup.CommandId)));
        for (var i = 0; i < 5; i++)
            entity.Tell(new RequestExit(PeerId, ExitRegion, ClientKey));
        State(entity);

        Assert.Equal(assignmentId, setup.SetupExit.AssignmentId);
        Assert.Empty(again.ReceiveWhile(m => m, TimeSpan.FromMilliseconds(200))
            .OfType<DeliverCommand>());
        Assert.Single(Journaled<CommandIssued>(), c => Command.Parser.ParseFrom(c.Command).CommandId == setup.CommandId);
        Assert.Equal(2, Journaled<CommandIssued>().Count);
    }

    /// <summary>Events in the peer's journal and their size as stored (the serializer's bytes).</summary>
    private (int Events, long Bytes) JournalSize()
    {
        var events = JournalEvents(PersistenceId);
        return (events.Count, events.Sum(e => (long)Sys.Serialization.FindSerializerFor(e).ToBinary(e).Length));
    }

    /// <summary>Has the client ask for an exit, the region allocate it and the client apply its half; returns the assignment id.</summary>
    private async Task<string> ActivateExit(IActorRef entity, TestProbe edge)
    {
        entity.Tell(new RequestExit(PeerId, ExitRegion, ClientKey));
        var allocation = await Allocator.NextAllocationAsync();
        var assignmentId = allocation.Request.AssignmentId;
        allocation.Allocate(Assignment(assignmentId));
        var setup = ExpectDelivered(edge, Command.BodyOneofCase.SetupExit);
        entity.Tell(new CommandAnswered(PeerId, Done(setup.CommandId)));
        edge.FishForMessage<PeerAssignments>(shown => shown.Assignments.Any(a => a.State == ExitAssignmentRecord.Active), Patience);
        return assignmentId;
    }

    /// <summary>The next command of kind <paramref name="body"/> delivered to the edge (other messages are passed over).</summary>
    private static Command ExpectDelivered(TestProbe edge, Command.BodyOneofCase body) =>
        edge.FishForMessage<DeliverCommand>(delivered => delivered.Command.BodyCase == body, Patience, $"a {body} delivered").Command;

    /// <summary>The pool's SetupExit to this peer as an exit: accept client-1 of ap-south at 100.96.0.2.</summary>
    private static Command ExitSideSetup(string assignmentId) => new()
    {
        SetupExit = new SetupExit
        {
            AssignmentId = assignmentId,
            Side = ExitSide.Exit,
            Peer = new WireGuardPeer { PublicKey = ByteString.CopyFrom(ClientKey), AllowedIps = { "100.96.0.2/32" } },
            TunnelAddresses = { "100.96.0.1/24" },
            CounterpartPeerId = "client-1",
            CounterpartRegion = "ap-south",
        },
    };

    /// <summary>The exit's answer to SetupExit: its key, and no endpoint of its own.</summary>
    private static CommandResponse ExitAccepts(string commandId) => new()
    {
        CommandId = commandId,
        Result = new CommandResult { SetupExit = new SetupExitResult { PublicKey = ByteString.CopyFrom(ExitKey), ListenPort = 51820 } },
    };

    /// <summary>What the exit's region answers: exit-9 accepted the client.</summary>
    private static ExitAssignmentRecord Assignment(string assignmentId) =>
        new(assignmentId, ExitRegion, ExitPeer, ExitKey, ExitEndpoint, "100.96.0.2/32", "100.96.0.1/24", PeerId, Region, ClientKey,
            ExitAssignmentRecord.Active);
}
