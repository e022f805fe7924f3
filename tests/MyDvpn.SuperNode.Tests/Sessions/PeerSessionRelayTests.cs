using System.Net;
using Akka.Actor;
using Akka.TestKit;
using MyDvpn.Protocol.Control;
using MyDvpn.Protocol.SuperNode;
using MyDvpn.SuperNode.Exits;
using MyDvpn.SuperNode.Relay;
using MyDvpn.SuperNode.Sessions;
using MyDvpn.SuperNode.Tests.Exits;
using MyDvpn.SuperNode.Tests.Relay;
using Xunit.Abstractions;

namespace MyDvpn.SuperNode.Tests.Sessions;

/// <summary>
/// A client's direct path to its exit and the relay chain that replaces it (ARCHITECTURE §4 Relay), through the
/// client's session over a real SQLite journal: its StatusReports (as <see cref="HandshakesReported"/>) decide, this
/// SuperNode's legs are a <see cref="FakeRelayLegs"/> and the exit region's leg comes from a
/// <see cref="FakeExitAllocator"/>; both tell one probe, so the order of the calls shows. The agent reports on the
/// test's <see cref="PeerSessionTestKit.Clock"/>, which moves the session's timers too: nothing here waits on real time.
/// </summary>
[Collection(TracingCollection.Name)]
public sealed class PeerSessionRelayTests(ITestOutputHelper output) : PeerSessionTestKit(output)
{
    private const string ExitRegion = "us-east";
    private const string ExitPeer = "exit-9";
    private const string ExitEndpoint = "198.51.100.7:51820";
    private const string ClientAddress = "203.0.113.5";
    private const string ClientLeg = "192.0.2.1:30000";
    private const string ExitLeg = "198.51.100.20:41000";
    private const string OtherExitLeg = "198.51.100.30:41000";

    private static readonly RelayLegOwner Owner = new(Region, PeerId);

    private static readonly byte[] ClientKey = Enumerable.Repeat((byte)0x11, 32).ToArray();
    private static readonly byte[] ExitKey = Enumerable.Repeat((byte)0xE1, 32).ToArray();
    private static readonly byte[] OtherKey = Enumerable.Repeat((byte)0x77, 32).ToArray();

    /// <summary>How often (on the test's clock) the client's agent sends a StatusReport here (5 s in production).</summary>
    private static readonly TimeSpan ReportInterval = TimeSpan.FromMilliseconds(100);

    /// <summary>Commands wait long for an answer here: reports of a few seconds see no redeliveries.</summary>
    private static readonly PeerSessionSettings Settings = Fast with { AckTimeout = TimeSpan.FromSeconds(3) };

    private static readonly ExitSettings Exits = ExitSettings.Default with
    {
        DirectPathTimeout = TimeSpan.FromMilliseconds(200),
        RelayRetry = TimeSpan.FromSeconds(1),
        ReleaseRetry = TimeSpan.FromMilliseconds(100),
    };

    /// <summary>Long enough that the agent's reports come before it.</summary>
    private static readonly TimeSpan FewTimeouts = Exits.DirectPathTimeout * 5;

    private TestProbe? _legs;
    private TestProbe? _pools;
    private FakeRelayLegs? _relay;

    private FakeExitAllocator Allocator { get; } = new();

    /// <summary>Receives every call on this SuperNode's legs and every OpenRelay to the exit's region, in order.</summary>
    private TestProbe Legs => _legs ??= CreateTestProbe("relay-legs");

    private FakeRelayLegs Relay => _relay ??= new FakeRelayLegs(Legs.Ref);

    /// <summary>Stands in for the region's <c>exit-pool</c> shard region (a client's session tells it nothing).</summary>
    private TestProbe Pools => _pools ??= CreateTestProbe("exit-pools");

    /// <summary>How the exit's region answers OpenRelay: by default a leg for the exit at <see cref="ExitLeg"/>.</summary>
    private Func<OpenRelayRequest, Task<RelayLegInfo>> ExitRegionAnswers { get; set; } =
        _ => Task.FromResult(new RelayLegInfo { Endpoint = ExitLeg, SupernodeId = "sn-us-east-1" });

    [Theory]
    [InlineData(ClientAddress)]
    [InlineData("::ffff:" + ClientAddress)] // how a dual-stack Kestrel socket shows an IPv4 client
    public async Task Client_reporting_no_handshake_with_its_exit_after_the_direct_path_timeout_is_relayed(string remoteAddress)
    {
        var entity = StartWithRelay();
        var edge = ConnectClient(entity, remoteAddress);
        var assignmentId = await ActivateExit(entity, edge);

        var opened = ReportUntilRelayOpens(entity);

        Assert.Equal(new RelayLegOpened(assignmentId, RelaySides.Client, IPAddress.Parse(ClientAddress), null, Owner), opened);
        Assert.Equal(new OpenRelayRequest { AssignmentId = assignmentId, Region = ExitRegion, PartnerEndpoint = ClientLeg },
            Legs.ExpectMsg<OpenRelayRequest>(Patience));
        Assert.Equal(new RelayPartnerSet(assignmentId, RelaySides.Client, IPEndPoint.Parse(ExitLeg)), Legs.ExpectMsg<RelayPartnerSet>(Patience));
        var shown = Assert.Single(edge.FishForMessage<PeerAssignments>(a => a.Assignments.Any(r => r.Path == ExitAssignmentRecord.Relayed), Patience)
            .Assignments);
        Assert.Equal((assignmentId, ExitAssignmentRecord.Active, ClientLeg, ExitLeg), (shown.AssignmentId, shown.State, shown.ClientRelayLeg, shown.ExitRelayLeg));
        var relaySetup = ExpectDelivered(edge, Command.BodyOneofCase.RelaySetup);
        Assert.Equal(assignmentId, relaySetup.RelaySetup.AssignmentId);
        Assert.Equal(ExitKey, relaySetup.RelaySetup.PeerPublicKey.ToByteArray());
        Assert.Equal(ClientLeg, relaySetup.RelaySetup.RelayEndpoint);
        var held = Assert.Single(State(entity).Assignments);
        Assert.Equal((ExitAssignmentRecord.Relayed, ClientLeg, ExitLeg, ExitEndpoint), (held.Path, held.ClientRelayLeg, held.ExitRelayLeg, held.ExitEndpoint));
        var established = Assert.Single(Journaled<RelayEstablished>());
        Assert.Equal((assignmentId, ClientLeg, ExitLeg), (established.AssignmentId, established.ClientLeg, established.ExitLeg));

        // The client applies it; its reports go on showing no handshake until the relayed one: no second chain.
        entity.Tell(new CommandAnswered(PeerId, Done(relaySetup.CommandId)));
        ReportWithoutRelay(entity, FewTimeouts);
        Assert.Single(Allocator.RelayCalls);
        Assert.Equal(ExitAssignmentRecord.Relayed, Assert.Single(State(entity).Assignments).Path);
    }

    [Fact]
    public async Task With_tracing_on_the_clients_RelaySetup_carries_the_relay_chains_span()
    {
        var stopped = new List<System.Diagnostics.Activity>();
        using var listener = new System.Diagnostics.ActivityListener
        {
            ShouldListenTo = source => source.Name == Telemetry.Tracing.SourceName,
            Sample = (ref System.Diagnostics.ActivityCreationOptions<System.Diagnostics.ActivityContext> _) =>
                System.Diagnostics.ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = activity => { lock (stopped) stopped.Add(activity); },
        };
        System.Diagnostics.ActivitySource.AddActivityListener(listener);
        var entity = StartWithRelay();
        var edge = ConnectClient(entity, ClientAddress);
        await ActivateExit(entity, edge);

        ReportUntilRelayOpens(entity);
        var relaySetup = ExpectDelivered(edge, Command.BodyOneofCase.RelaySetup);

        System.Diagnostics.Activity chain;
        lock (stopped)
            chain = Assert.Single(stopped, a => a.DisplayName == "open relay chain");
        Assert.Equal(chain.Id, relaySetup.TraceParent);
        Assert.Equal(default, chain.ParentSpanId);
    }

    [Fact]
    public async Task Report_before_the_direct_path_timeout_does_not_relay_the_client()
    {
        var exits = Exits with { DirectPathTimeout = TimeSpan.FromSeconds(2) };
        var entity = StartWithRelay(exits);
        var edge = ConnectClient(entity);
        var assignmentId = await ActivateExit(entity, edge);

        ReportWithoutRelay(entity, exits.DirectPathTimeout - ReportInterval);

        Assert.Equal(ExitAssignmentRecord.Direct, Assert.Single(State(entity).Assignments).Path);
        // Past the timeout the next report decides.
        Assert.Equal(assignmentId, ReportUntilRelayOpens(entity).AssignmentId);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Client_reporting_a_handshake_with_its_exit_is_never_relayed(bool afterTheTimeout)
    {
        var entity = StartWithRelay();
        var edge = ConnectClient(entity);
        await ActivateExit(entity, edge);
        if (afterTheTimeout)
        {
            Advance(entity, Exits.DirectPathTimeout * 2);
        }

        entity.Tell(Report(exitHandshake: Clock.GetUtcNow()));

        // Even reports that show no handshake any more change nothing: the direct path was seen to work.
        ReportWithoutRelay(entity, FewTimeouts);
        Assert.Empty(Allocator.RelayCalls);
        Assert.Equal(ExitAssignmentRecord.Direct, Assert.Single(State(entity).Assignments).Path);
        Assert.Empty(Journaled<RelayEstablished>());
    }

    [Fact]
    public async Task Handshake_older_than_the_assignment_does_not_count_as_a_direct_path()
    {
        var entity = StartWithRelay();
        var edge = ConnectClient(entity);
        var assignmentId = await ActivateExit(entity, edge);

        // A handshake with the same exit under an assignment the client held before.
        var opened = ReportUntilRelayOpens(entity, exitHandshake: Clock.GetUtcNow() - TimeSpan.FromMinutes(10));

        Assert.Equal((assignmentId, RelaySides.Client), (opened.AssignmentId, opened.Side));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Client_that_reports_nothing_about_its_exit_is_not_relayed(bool reportsOtherPeers)
    {
        var entity = StartWithRelay();
        var edge = ConnectClient(entity);
        await ActivateExit(entity, edge);

        if (reportsOtherPeers)
        {
            // An agent whose WireGuard interface does not hold the exit (yet): its reports list other peers only.
            var others = new HandshakesReported(PeerId, [new ReportedHandshake(OtherKey, null)]);
            for (var waited = TimeSpan.Zero; waited < FewTimeouts; waited += ReportInterval)
            {
                entity.Tell(others);
                Advance(entity, ReportInterval);
                Legs.ExpectNoMsg(TimeSpan.Zero);
            }
        }
        else
        {
            // An agent without a data plane sends no StatusReport at all.
            Advance(entity, FewTimeouts);
            Legs.ExpectNoMsg(TimeSpan.Zero);
        }

        Assert.Empty(Allocator.RelayCalls);
        Assert.Equal(ExitAssignmentRecord.Direct, Assert.Single(State(entity).Assignments).Path);
    }

    [Fact]
    public async Task Client_whose_address_is_unknown_is_not_relayed()
    {
        var entity = StartWithRelay();
        var edge = ConnectClient(entity, remoteAddress: "");
        await ActivateExit(entity, edge);

        ReportWithoutRelay(entity, FewTimeouts);

        Assert.Empty(Allocator.RelayCalls);
        Assert.Equal(ExitAssignmentRecord.Direct, Assert.Single(State(entity).Assignments).Path);
    }

    [Fact]
    public async Task Relay_the_exit_region_cannot_open_closes_the_client_leg_and_is_tried_again_after_the_relay_retry()
    {
        var calls = 0;
        ExitRegionAnswers = _ => Interlocked.Increment(ref calls) == 1
            ? Task.FromException<RelayLegInfo>(new ExitRegionUnreachableException("no SuperNode of region us-east answered"))
            : Task.FromResult(new RelayLegInfo { Endpoint = ExitLeg, SupernodeId = "sn-us-east-2" });
        var entity = StartWithRelay();
        var edge = ConnectClient(entity);
        var assignmentId = await ActivateExit(entity, edge);

        ReportUntilRelayOpens(entity);

        Legs.ExpectMsg<OpenRelayRequest>(Patience);
        Assert.Equal(new RelayLegsClosed(assignmentId), Legs.ExpectMsg<RelayLegsClosed>(Patience));
        Assert.Empty(Journaled<RelayEstablished>());
        Assert.Equal(ExitAssignmentRecord.Direct, Assert.Single(State(entity).Assignments).Path);

        // No report comes meanwhile: the retry needs none, and it comes at the relay retry, not before.
        Advance(entity, Exits.RelayRetry - TimeSpan.FromMilliseconds(1));
        Legs.ExpectNoMsg(TimeSpan.Zero);
        Advance(entity, TimeSpan.FromMilliseconds(1));
        var again = Legs.ExpectMsg<RelayLegOpened>(TimeSpan.Zero);

        Assert.Equal(new RelayLegOpened(assignmentId, RelaySides.Client, IPAddress.Parse(ClientAddress), null, Owner), again);
        Assert.Equal(assignmentId, Legs.ExpectMsg<OpenRelayRequest>(Patience).AssignmentId);
        Legs.ExpectMsg<RelayPartnerSet>(Patience);
        Assert.Equal(ClientLeg, ExpectDelivered(edge, Command.BodyOneofCase.RelaySetup).RelaySetup.RelayEndpoint);
        AwaitAssert(() => Assert.Equal(ExitAssignmentRecord.Relayed, Assert.Single(State(entity).Assignments).Path), Patience);
        Assert.Equal(2, Allocator.RelayCalls.Count);
    }

    [Fact]
    public async Task Reports_after_a_failed_relay_attempt_do_not_bring_the_next_attempt_forward()
    {
        var calls = 0;
        ExitRegionAnswers = _ => Interlocked.Increment(ref calls) == 1
            ? Task.FromException<RelayLegInfo>(new ExitRegionUnreachableException("no SuperNode of region us-east answered"))
            : Task.FromResult(new RelayLegInfo { Endpoint = ExitLeg, SupernodeId = "sn-us-east-2" });
        var exits = Exits with { RelayRetry = TimeSpan.FromSeconds(4) };
        var entity = StartWithRelay(exits);
        var edge = ConnectClient(entity);
        var assignmentId = await ActivateExit(entity, edge);
        ReportUntilRelayOpens(entity);
        Legs.ExpectMsg<OpenRelayRequest>(Patience);
        Legs.ExpectMsg<RelayLegsClosed>(Patience);

        // The agent goes on reporting no handshake, every few seconds in production (RelayRetry is 2 s there, doubling up to 30 s).
        ReportWithoutRelay(entity, exits.RelayRetry - ReportInterval);

        Assert.Single(Allocator.RelayCalls);
        Assert.Equal(assignmentId, ReportUntilRelayOpens(entity).AssignmentId);
    }

    [Fact]
    public async Task Disconnect_of_a_relayed_client_closes_its_relay_legs()
    {
        var entity = StartWithRelay();
        var edge = ConnectClient(entity);
        var assignmentId = await Relayed(entity, edge);

        Issue(entity, CreateTestProbe(), new Command { Disconnect = new Disconnect { Reason = "maintenance" } });

        Assert.Equal(new RelayLegsClosed(assignmentId), Legs.ExpectMsg<RelayLegsClosed>(Patience));
        var release = await Allocator.NextReleaseAsync();
        Assert.Equal((assignmentId, ExitRegion), (release.AssignmentId, release.Region));
        AwaitAssert(() => Assert.Empty(State(entity).Assignments), Patience);
    }

    [Fact]
    public async Task Relay_finishing_after_the_assignment_was_released_closes_its_legs_and_tells_the_client_nothing()
    {
        var exitRegion = new TaskCompletionSource<RelayLegInfo>(TaskCreationOptions.RunContinuationsAsynchronously);
        ExitRegionAnswers = _ => exitRegion.Task;
        var entity = StartWithRelay();
        var edge = ConnectClient(entity);
        var assignmentId = await ActivateExit(entity, edge);
        ReportUntilRelayOpens(entity);
        Legs.ExpectMsg<OpenRelayRequest>(Patience);

        Issue(entity, CreateTestProbe(), new Command { Disconnect = new Disconnect { Reason = "maintenance" } });
        Assert.Equal(new RelayLegsClosed(assignmentId), Legs.ExpectMsg<RelayLegsClosed>(Patience));
        await Allocator.NextReleaseAsync();
        exitRegion.SetResult(new RelayLegInfo { Endpoint = ExitLeg, SupernodeId = "sn-us-east-1" });

        Legs.ExpectMsg<RelayPartnerSet>(Patience);
        Assert.Equal(new RelayLegsClosed(assignmentId), Legs.ExpectMsg<RelayLegsClosed>(Patience));
        Assert.Empty(State(entity).Assignments);
        Assert.Empty(Journaled<RelayEstablished>());
        Assert.DoesNotContain(Journaled<CommandIssued>(), c => Command.Parser.ParseFrom(c.Command).BodyCase == Command.BodyOneofCase.RelaySetup);
    }

    [Theory]
    [InlineData(1000)]
    [InlineData(1)] // recovered from a snapshot
    public async Task Restarted_session_keeps_its_relay_and_sets_up_no_second_one(int snapshotEvery)
    {
        var settings = Settings with { SnapshotEvery = snapshotEvery };
        var entity = StartWithRelay(settings: settings);
        var assignmentId = await Relayed(entity, ConnectClient(entity));
        var lastEvent = JournalEvents(PersistenceId).Count;
        if (snapshotEvery == 1)
        {
            await AwaitAssertAsync(async () => Assert.Equal(lastEvent, (await LatestSnapshotAsync(PersistenceId))?.Metadata.SequenceNr), Patience);
        }

        Stop(entity);

        var restarted = StartWithRelay(settings: settings);

        var held = Assert.Single(State(restarted).Assignments);
        Assert.Equal((assignmentId, ExitAssignmentRecord.Active, ExitAssignmentRecord.Relayed, ClientLeg, ExitLeg),
            (held.AssignmentId, held.State, held.Path, held.ClientRelayLeg, held.ExitRelayLeg));
        var edge = AttachFrom(restarted, Authenticate(restarted), ClientAddress);
        Assert.Equal(ExitAssignmentRecord.Relayed, Assert.Single(edge.ExpectMsg<PeerAssignments>(Patience).Assignments).Path);
        ReportWithoutRelay(restarted, FewTimeouts);
        Assert.Single(Allocator.RelayCalls);
        Assert.Single(Journaled<RelayEstablished>());
        Assert.Equal(lastEvent, JournalEvents(PersistenceId).Count - 1); // the second SessionStarted only
    }

    [Fact]
    public async Task Client_asking_again_for_its_relayed_exit_is_pointed_at_its_relay_leg_again()
    {
        var entity = StartWithRelay();
        var edge = ConnectClient(entity);
        var assignmentId = await Relayed(entity, edge);

        // The agent lost its state (the relay endpoint with it), authenticates anew and asks for the exit it holds.
        var restarted = AttachFrom(entity, Authenticate(entity), ClientAddress);
        entity.Tell(new RequestExit(PeerId, ExitRegion, ClientKey));

        var again = ExpectDelivered(restarted, Command.BodyOneofCase.SetupExit).SetupExit;
        Assert.Equal(assignmentId, again.AssignmentId);
        if (again.Peer.Endpoint != ClientLeg)
        {
            // Sent as the direct SetupExit: a RelaySetup must follow it, or the client goes back to the failed path.
            var relaySetup = ExpectDelivered(restarted, Command.BodyOneofCase.RelaySetup).RelaySetup;
            Assert.Equal((assignmentId, ClientLeg), (relaySetup.AssignmentId, relaySetup.RelayEndpoint));
        }

        Assert.Equal(ExitAssignmentRecord.Relayed, Assert.Single(State(entity).Assignments).Path);
        Assert.Single(Allocator.RelayCalls);
    }

    [Fact]
    public async Task Exit_leg_going_away_chains_the_client_leg_to_a_new_exit_leg_and_the_client_stays_on_its_leg()
    {
        var entity = StartWithRelay();
        var edge = ConnectClient(entity);
        var assignmentId = await Relayed(entity, edge);
        ExitRegionAnswers = _ => Task.FromResult(new RelayLegInfo { Endpoint = OtherExitLeg, SupernodeId = "sn-us-east-2" });

        entity.Tell(new RelayLegLost(PeerId, assignmentId, "sn-us-east-1", "SuperNode sn-us-east-1 is shutting down"));

        Assert.Equal(new RelayLegOpened(assignmentId, RelaySides.Client, IPAddress.Parse(ClientAddress), null, Owner), Legs.ExpectMsg<RelayLegOpened>(Patience));
        Assert.Equal(new OpenRelayRequest { AssignmentId = assignmentId, Region = ExitRegion, PartnerEndpoint = ClientLeg },
            Legs.ExpectMsg<OpenRelayRequest>(Patience));
        Assert.Equal(new RelayPartnerSet(assignmentId, RelaySides.Client, IPEndPoint.Parse(OtherExitLeg)), Legs.ExpectMsg<RelayPartnerSet>(Patience));
        AwaitAssert(() => Assert.Equal((ClientLeg, OtherExitLeg), (Assert.Single(State(entity).Assignments).ClientRelayLeg,
            State(entity).Assignments[0].ExitRelayLeg)), Patience);
        // The edge (and so `admin sessions`) shows the new leg too.
        edge.FishForMessage<PeerAssignments>(shown => shown.Assignments.Any(a => a.ExitRelayLeg == OtherExitLeg), Patience);
        Assert.Equal(2, Journaled<RelayEstablished>().Count);
        // The client's leg is the one its WireGuard already sends to: the RelaySetup it gets again changes nothing there.
        Assert.Equal(ClientLeg, ExpectDelivered(edge, Command.BodyOneofCase.RelaySetup).RelaySetup.RelayEndpoint);
    }

    [Fact]
    public async Task Exit_leg_lost_while_the_client_is_away_is_replaced_when_it_attaches_again()
    {
        var entity = StartWithRelay();
        var edge = ConnectClient(entity);
        var assignmentId = await Relayed(entity, edge);
        ExitRegionAnswers = _ => Task.FromResult(new RelayLegInfo { Endpoint = OtherExitLeg, SupernodeId = "sn-us-east-2" });
        Watch(edge.Ref);
        Sys.Stop(edge.Ref);
        ExpectTerminated(edge.Ref, Patience);

        entity.Tell(new RelayLegLost(PeerId, assignmentId, "sn-us-east-1", "SuperNode sn-us-east-1 is shutting down"));
        Advance(entity, FewTimeouts);
        Legs.ExpectNoMsg(TimeSpan.Zero);

        // Its client leg is still open here: only the lost exit leg calls for the new chain.
        AttachFrom(entity, Authenticate(entity), ClientAddress);
        Assert.Equal(new RelayLegOpened(assignmentId, RelaySides.Client, IPAddress.Parse(ClientAddress), null, Owner), Legs.ExpectMsg<RelayLegOpened>(Patience));
        Legs.ExpectMsg<OpenRelayRequest>(Patience);
        Assert.Equal(new RelayPartnerSet(assignmentId, RelaySides.Client, IPEndPoint.Parse(OtherExitLeg)), Legs.ExpectMsg<RelayPartnerSet>(Patience));
        AwaitAssert(() => Assert.Equal(OtherExitLeg, Assert.Single(State(entity).Assignments).ExitRelayLeg), Patience);
    }

    [Fact]
    public async Task Lost_leg_of_an_assignment_the_session_does_not_hold_changes_nothing()
    {
        var entity = StartWithRelay();
        var edge = ConnectClient(entity);
        await Relayed(entity, edge);

        entity.Tell(new RelayLegLost(PeerId, "an-older-assignment", "sn-us-east-1", "SuperNode sn-us-east-1 is shutting down"));

        Advance(entity, FewTimeouts);
        Legs.ExpectNoMsg(TimeSpan.Zero);
        Assert.Single(Allocator.RelayCalls);
    }

    [Fact]
    public async Task New_chain_that_cannot_be_made_keeps_the_client_leg_open_and_is_tried_again_after_the_relay_retry()
    {
        var entity = StartWithRelay();
        var edge = ConnectClient(entity);
        var assignmentId = await Relayed(entity, edge);
        var calls = 0;
        ExitRegionAnswers = _ => Interlocked.Increment(ref calls) == 1
            ? Task.FromException<RelayLegInfo>(new ExitRegionUnreachableException("no SuperNode of region us-east answered"))
            : Task.FromResult(new RelayLegInfo { Endpoint = OtherExitLeg, SupernodeId = "sn-us-east-2" });

        entity.Tell(new RelayLegLost(PeerId, assignmentId, "sn-us-east-1", "SuperNode sn-us-east-1 is shutting down"));
        Legs.ExpectMsg<RelayLegOpened>(Patience);
        Legs.ExpectMsg<OpenRelayRequest>(Patience);

        // The old chain may still carry the tunnel: its client leg stays, and the next attempt comes by itself.
        State(entity);
        Legs.ExpectNoMsg(TimeSpan.Zero);
        Advance(entity, Exits.RelayRetry);
        Assert.IsType<RelayLegOpened>(Legs.ReceiveOne(TimeSpan.Zero));
        Legs.ExpectMsg<OpenRelayRequest>(Patience);
        Assert.Equal(new RelayPartnerSet(assignmentId, RelaySides.Client, IPEndPoint.Parse(OtherExitLeg)), Legs.ExpectMsg<RelayPartnerSet>(Patience));
        AwaitAssert(() => Assert.Equal(OtherExitLeg, Assert.Single(State(entity).Assignments).ExitRelayLeg), Patience);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)] // the restarted SuperNode gave the new leg another port
    public async Task Relayed_client_attaching_to_a_SuperNode_that_lost_its_leg_gets_a_new_chain(bool newPort)
    {
        var entity = StartWithRelay();
        var assignmentId = await Relayed(entity, ConnectClient(entity));
        Stop(entity);
        Relay.Forget();
        const string newClientLeg = "192.0.2.1:30001";
        if (newPort)
        {
            Relay.LegEndpoint = IPEndPoint.Parse(newClientLeg);
        }

        var restarted = StartWithRelay();
        var edge = AttachFrom(restarted, Authenticate(restarted), ClientAddress);

        Assert.Equal(new RelayLegOpened(assignmentId, RelaySides.Client, IPAddress.Parse(ClientAddress), null, Owner), Legs.ExpectMsg<RelayLegOpened>(Patience));
        var expectedLeg = newPort ? newClientLeg : ClientLeg;
        Assert.Equal(expectedLeg, Legs.ExpectMsg<OpenRelayRequest>(Patience).PartnerEndpoint);
        Legs.ExpectMsg<RelayPartnerSet>(Patience);
        AwaitAssert(() => Assert.Equal(2, Journaled<RelayEstablished>().Count), Patience);
        Assert.Equal(expectedLeg, Assert.Single(State(restarted).Assignments).ClientRelayLeg);
        Assert.Equal(expectedLeg, ExpectDelivered(edge, Command.BodyOneofCase.RelaySetup).RelaySetup.RelayEndpoint);
    }

    [Fact]
    public async Task Relayed_client_back_from_another_public_address_gets_its_leg_retargeted()
    {
        var entity = StartWithRelay();
        var assignmentId = await Relayed(entity, ConnectClient(entity));

        AttachFrom(entity, Authenticate(entity), "203.0.113.99");

        Assert.Equal(new RelayLegOpened(assignmentId, RelaySides.Client, IPAddress.Parse("203.0.113.99"), null, Owner), Legs.ExpectMsg<RelayLegOpened>(Patience));
        Legs.ExpectMsg<OpenRelayRequest>(Patience);
        Legs.ExpectMsg<RelayPartnerSet>(Patience);
        // From the same address again: the leg serves it already.
        AttachFrom(entity, Authenticate(entity), "203.0.113.99");
        Advance(entity, FewTimeouts);
        Legs.ExpectNoMsg(TimeSpan.Zero);
    }

    [Fact]
    public async Task Relay_chain_without_a_handshake_for_the_stale_time_is_set_up_again()
    {
        var exits = Exits with { PathStaleAfter = TimeSpan.FromSeconds(2) };
        var entity = StartWithRelay(exits);
        var edge = ConnectClient(entity);
        var assignmentId = await Relayed(entity, edge);
        var relayedAt = Clock.GetUtcNow();

        // A handshake over the chain keeps it; none for PathStaleAfter means the chain broke.
        for (var fresh = Clock.GetUtcNow(); Clock.GetUtcNow() - fresh < exits.PathStaleAfter + TimeSpan.FromMilliseconds(500);)
        {
            entity.Tell(Report(Clock.GetUtcNow()));
            Advance(entity, ReportInterval);
            Legs.ExpectNoMsg(TimeSpan.Zero);
        }
        var lastHandshake = Clock.GetUtcNow() - TimeSpan.FromSeconds(1);
        var opened = ReportUntilRelayOpens(entity, exitHandshake: lastHandshake);

        Assert.True(Clock.GetUtcNow() - lastHandshake >= exits.PathStaleAfter, $"a new chain {Clock.GetUtcNow() - lastHandshake} after the last handshake");
        Assert.True(Clock.GetUtcNow() - relayedAt >= exits.PathStaleAfter);
        Assert.Equal((assignmentId, RelaySides.Client), (opened.AssignmentId, opened.Side));
        Legs.ExpectMsg<OpenRelayRequest>(Patience);
        Legs.ExpectMsg<RelayPartnerSet>(Patience);
        AwaitAssert(() => Assert.Equal(2, Journaled<RelayEstablished>().Count), Patience);
        // A client that lost its RelaySetup (or failed to apply it) is pointed at its leg again.
        Assert.Equal(ClientLeg, ExpectDelivered(edge, Command.BodyOneofCase.RelaySetup).RelaySetup.RelayEndpoint);
    }

    [Fact]
    public async Task Direct_path_that_stops_handshaking_for_the_stale_time_is_relayed()
    {
        var exits = Exits with { PathStaleAfter = TimeSpan.FromSeconds(2) };
        var entity = StartWithRelay(exits);
        var edge = ConnectClient(entity);
        var assignmentId = await ActivateExit(entity, edge);
        var handshake = Clock.GetUtcNow();
        entity.Tell(Report(handshake));

        var opened = ReportUntilRelayOpens(entity, exitHandshake: handshake);

        Assert.True(Clock.GetUtcNow() - handshake >= exits.PathStaleAfter, $"relayed {Clock.GetUtcNow() - handshake} after the handshake");
        Assert.Equal((assignmentId, RelaySides.Client), (opened.AssignmentId, opened.Side));
        Legs.ExpectMsg<OpenRelayRequest>(Patience);
        Legs.ExpectMsg<RelayPartnerSet>(Patience);
        Assert.Equal(ClientLeg, ExpectDelivered(edge, Command.BodyOneofCase.RelaySetup).RelaySetup.RelayEndpoint);
    }

    [Fact]
    public async Task Relayed_client_tries_the_direct_path_after_the_backoff_and_a_direct_handshake_closes_both_legs()
    {
        var entity = StartWithRelay();
        var edge = ConnectClient(entity);
        var assignmentId = await Relayed(entity, edge);
        var relayedHandshake = Clock.GetUtcNow();
        entity.Tell(Report(relayedHandshake));

        Advance(entity, Exits.DirectRetry);

        // The exit's region unpins the exit first; only then is the client pointed back at the direct endpoint.
        AwaitAssert(() => Assert.Equal(new ReturnDirectRequest { AssignmentId = assignmentId, Region = ExitRegion }, Assert.Single(Allocator.ReturnDirectCalls)),
            Patience);
        var teardown = ExpectDelivered(edge, Command.BodyOneofCase.RelayTeardown);
        Assert.Equal((assignmentId, ExitEndpoint), (teardown.RelayTeardown.AssignmentId, teardown.RelayTeardown.DirectEndpoint));
        entity.Tell(new CommandAnswered(PeerId, Done(teardown.CommandId)));
        Advance(entity, ReportInterval);
        entity.Tell(Report(Clock.GetUtcNow()));

        Assert.Equal(new RelayLegsClosed(assignmentId), Legs.FishForMessage<RelayLegsClosed>(_ => true, Patience));
        AwaitAssert(() => Assert.Equal(assignmentId, Assert.Single(Allocator.CloseRelayCalls).AssignmentId), Patience);
        Assert.Equal(assignmentId, Assert.Single(Journaled<RelayClosed>()).AssignmentId);
        var held = Assert.Single(State(entity).Assignments);
        Assert.Equal((ExitAssignmentRecord.Direct, ""), (held.Path, held.ClientRelayLeg));
    }

    private IActorRef StartWithRelay(ExitSettings? exits = null, PeerSessionSettings? settings = null)
    {
        Allocator.RespondToRelay = request =>
        {
            Legs.Ref.Tell(request.Clone());
            return ExitRegionAnswers(request);
        };
        return Sys.ActorOf(PeerSession.Props(PeerId, Region, settings ?? Settings, Enrollment, PeersRegion.Ref, Clock,
            new ExitServices(exits ?? Exits, Allocator, Pools.Ref, Relay), SessionLog));
    }

    /// <summary>Enrolls the peer as a client and attaches a probe as its edge, its stream coming from <paramref name="remoteAddress"/>.</summary>
    private TestProbe ConnectClient(IActorRef entity, string remoteAddress = ClientAddress) => AttachFrom(entity, Enroll(entity), remoteAddress);

    private TestProbe AttachFrom(IActorRef entity, string sessionId, string remoteAddress)
    {
        var edge = CreateTestProbe();
        entity.Tell(new AttachStream(PeerId, sessionId, edge.Ref, remoteAddress), edge.Ref);
        edge.ExpectMsg(new StreamAttached(PeerId, sessionId), Patience);
        return edge;
    }

    /// <summary>Has the client ask for an exit, the region allocate it and the client apply its half; returns the assignment id.</summary>
    private async Task<string> ActivateExit(IActorRef entity, TestProbe edge)
    {
        entity.Tell(new RequestExit(PeerId, ExitRegion, ClientKey));
        var allocation = await Allocator.NextAllocationAsync();
        var assignmentId = allocation.Request.AssignmentId;
        allocation.Allocate(new ExitAssignmentRecord(assignmentId, ExitRegion, ExitPeer, ExitKey, ExitEndpoint, "100.96.0.2/32", "100.96.0.1/24",
            PeerId, Region, ClientKey, ExitAssignmentRecord.Active));
        var setup = ExpectDelivered(edge, Command.BodyOneofCase.SetupExit);
        entity.Tell(new CommandAnswered(PeerId, Done(setup.CommandId)));
        edge.FishForMessage<PeerAssignments>(shown => shown.Assignments.Any(a => a.State == ExitAssignmentRecord.Active), Patience);
        return assignmentId;
    }

    /// <summary>An active exit whose direct path failed, relayed and the client's RelaySetup applied; returns the assignment id.</summary>
    private async Task<string> Relayed(IActorRef entity, TestProbe edge)
    {
        var assignmentId = await ActivateExit(entity, edge);
        ReportUntilRelayOpens(entity);
        Legs.ExpectMsg<OpenRelayRequest>(Patience);
        Legs.ExpectMsg<RelayPartnerSet>(Patience);
        var relaySetup = ExpectDelivered(edge, Command.BodyOneofCase.RelaySetup);
        entity.Tell(new CommandAnswered(PeerId, Done(relaySetup.CommandId)));
        AwaitAssert(() => Assert.Empty(State(entity).InFlightCommandIds), Patience);
        return assignmentId;
    }

    /// <summary>The client's StatusReport: the exit (handshake at <paramref name="exitHandshake"/>, null: none yet) and another peer.</summary>
    private HandshakesReported Report(DateTimeOffset? exitHandshake) =>
        new(PeerId, [new ReportedHandshake(OtherKey, Clock.GetUtcNow()), new ReportedHandshake(ExitKey, exitHandshake)]);

    /// <summary>
    /// Reports like an agent, every <see cref="ReportInterval"/> of the clock, until this SuperNode's relay leg opens (within
    /// the path's stale time and a few timeouts); returns that call.
    /// </summary>
    private RelayLegOpened ReportUntilRelayOpens(IActorRef entity, DateTimeOffset? exitHandshake = null)
    {
        var from = Clock.GetUtcNow();
        while (Clock.GetUtcNow() - from < Exits.PathStaleAfter + FewTimeouts)
        {
            entity.Tell(Report(exitHandshake));
            State(entity);
            if (Legs.HasMessages)
                return Assert.IsType<RelayLegOpened>(Legs.ReceiveOne(TimeSpan.Zero));
            Advance(entity, ReportInterval);
        }

        Assert.Fail($"no relay leg was opened within {Clock.GetUtcNow() - from} of reports without a handshake with the exit");
        return null!;
    }

    /// <summary>Reports no handshake with the exit like an agent for <paramref name="duration"/> of the clock; no relay leg may be touched.</summary>
    private void ReportWithoutRelay(IActorRef entity, TimeSpan duration)
    {
        for (var from = Clock.GetUtcNow(); Clock.GetUtcNow() - from < duration;)
        {
            entity.Tell(Report(exitHandshake: null));
            Advance(entity, ReportInterval);
            Legs.ExpectNoMsg(TimeSpan.Zero);
        }
    }

    /// <summary>The next command of kind <paramref name="body"/> delivered to the edge (other messages are passed over).</summary>
    private static Command ExpectDelivered(TestProbe edge, Command.BodyOneofCase body) =>
        edge.FishForMessage<DeliverCommand>(delivered => delivered.Command.BodyCase == body, Patience, $"a {body} delivered").Command;
}

/// <summary>Tests that listen to the <c>MyDvpn</c> spans: alone, so that no other test's commands get a trace_parent.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class TracingCollection
{
    public const string Name = "Tracing";
}
