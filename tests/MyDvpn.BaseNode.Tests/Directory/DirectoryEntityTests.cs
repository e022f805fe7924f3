using Akka.Actor;
using MyDvpn.BaseNode.Directory;
using Xunit.Abstractions;

namespace MyDvpn.BaseNode.Tests.Directory;

/// <summary>
/// The directory entity over a real SQLite journal and snapshot store, on a manual clock: its silence check fires when a
/// test moves the clock, never on its own.
/// </summary>
public sealed class DirectoryEntityTests(ITestOutputHelper output) : SqliteTestKit(output)
{
    private const string Region = "eu-west";
    private const string PersistenceId = "directory-eu-west";

    /// <summary>The silence check every 100 ms of the test's clock, a 300 ms grace.</summary>
    private static readonly DirectorySettings Fast = new(TimeSpan.FromMilliseconds(100), TimeSpan.FromMilliseconds(300), 100);

    private static readonly SuperNodeInfo Alpha = new("sn-alpha", Region, "10.0.0.1:7443", "203.0.113.1", 40000, 40999, 500);
    private static readonly SuperNodeInfo Beta = new("sn-beta", Region, "10.0.0.2:7443", "203.0.113.2", 41000, 41999, 300);

    private readonly ManualTimeProvider _clock = new();
    private readonly TestOutputLogger _log = new(output, nameof(DirectoryEntity));

    [Fact]
    public void Reported_supernode_is_up_with_its_load()
    {
        var entity = Start();
        var t0 = _clock.GetUtcNow();

        entity.Tell(new ReportSuperNode(Alpha, new SuperNodeLoad(12, 3)));
        ExpectMsg(new ReportAccepted(Region, Alpha.SuperNodeId));

        var view = GetRegion(entity);
        Assert.Equal(Region, view.Region);
        Assert.Equal([new SuperNodeView(Alpha, new SuperNodeLoad(12, 3), SuperNodeStatus.Up, t0, t0)], view.SuperNodes);
    }

    [Fact]
    public void Region_view_is_ordered_by_supernode_id()
    {
        var entity = Start();

        Report(entity, Beta with { SuperNodeId = "sn-c" });
        Report(entity, Beta);
        Report(entity, Alpha);

        Assert.Equal(["sn-alpha", "sn-beta", "sn-c"], GetRegion(entity).SuperNodes.Select(n => n.Info.SuperNodeId));
    }

    [Fact]
    public void Latest_report_updates_load_and_report_time_but_not_registration_time()
    {
        var entity = Start();
        var t0 = _clock.GetUtcNow();
        Report(entity, Alpha, new SuperNodeLoad(1, 1));
        var t1 = _clock.Advance(TimeSpan.FromMilliseconds(200));

        Report(entity, Alpha, new SuperNodeLoad(7, 0));

        var node = Assert.Single(GetRegion(entity).SuperNodes);
        Assert.Equal(new SuperNodeView(Alpha, new SuperNodeLoad(7, 0), SuperNodeStatus.Up, t0, t1), node);
    }

    [Fact]
    public void Silent_supernode_is_marked_down_and_a_reporting_one_stays_up()
    {
        var entity = Start();
        Report(entity, Alpha);
        Report(entity, Beta);

        // Beta keeps reporting while Alpha is silent for 400 ms of a 300 ms grace; then the clock stops.
        _clock.Advance(TimeSpan.FromMilliseconds(200));
        Report(entity, Beta);
        _clock.Advance(TimeSpan.FromMilliseconds(200));
        Report(entity, Beta);

        Assert.Equal(SuperNodeStatus.Down, Status(entity, Alpha));
        var nodes = GetRegion(entity).SuperNodes;
        Assert.Equal(SuperNodeStatus.Up, nodes.Single(n => n.Info == Beta).Status);
        Assert.Equal(SuperNodeLoad.None, nodes.Single(n => n.Info == Alpha).Load);
        Assert.Contains(new SuperNodeMarkedDown(Alpha.SuperNodeId, _clock.GetUtcNow()), JournalEvents(PersistenceId));
    }

    [Fact]
    public void Silent_supernode_is_marked_down_by_the_system_clock()
    {
        // The host's wiring: no clock given, the system's runs the check (a generous wait, for a loaded machine).
        var entity = Sys.ActorOf(DirectoryEntity.Props(Region, Fast, logger: _log));
        Report(entity, Alpha);

        AwaitAssert(() => Assert.Equal(SuperNodeStatus.Down, Status(entity, Alpha)), TimeSpan.FromSeconds(15));
    }

    [Fact]
    public void Silent_supernode_is_not_marked_down_before_its_grace_has_passed()
    {
        var entity = Start();
        Report(entity, Alpha);

        _clock.Advance(TimeSpan.FromMilliseconds(300));

        // Three silence checks ran; a silence of exactly the grace is not past it.
        Assert.Equal(SuperNodeStatus.Up, Status(entity, Alpha));
        Assert.Equal([typeof(SuperNodeRegistered)], JournalEvents(PersistenceId).Select(e => e.GetType()));
    }

    [Fact]
    public void Down_supernode_that_reports_again_is_up_and_registered_again()
    {
        var entity = Start();
        Report(entity, Alpha);
        _clock.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(SuperNodeStatus.Down, Status(entity, Alpha));
        var back = _clock.GetUtcNow();

        Report(entity, Alpha, new SuperNodeLoad(4, 2));

        Assert.Equal(
            new SuperNodeView(Alpha, new SuperNodeLoad(4, 2), SuperNodeStatus.Up, back, back),
            Assert.Single(GetRegion(entity).SuperNodes));
        Assert.Equal(
            [typeof(SuperNodeRegistered), typeof(SuperNodeMarkedDown), typeof(SuperNodeRegistered)],
            JournalEvents(PersistenceId).Select(e => e.GetType()));
    }

    [Fact]
    public void Deregistered_supernode_is_left_and_deregister_is_idempotent()
    {
        var entity = Start();
        Report(entity, Alpha);

        entity.Tell(new DeregisterSuperNode(Region, Alpha.SuperNodeId));
        ExpectMsg(new SuperNodeDeregistered(Region, Alpha.SuperNodeId));
        entity.Tell(new DeregisterSuperNode(Region, Alpha.SuperNodeId));
        ExpectMsg(new SuperNodeDeregistered(Region, Alpha.SuperNodeId));
        entity.Tell(new DeregisterSuperNode(Region, "sn-unknown"));
        ExpectMsg(new SuperNodeDeregistered(Region, "sn-unknown"));

        var node = Assert.Single(GetRegion(entity).SuperNodes);
        Assert.Equal((SuperNodeStatus.Left, SuperNodeLoad.None), (node.Status, node.Load));
        Assert.Equal([typeof(SuperNodeRegistered), typeof(SuperNodeLeft)], JournalEvents(PersistenceId).Select(e => e.GetType()));
    }

    [Fact]
    public void Left_supernode_is_not_marked_down_later()
    {
        var entity = Start();
        Report(entity, Alpha);
        Report(entity, Beta);
        entity.Tell(new DeregisterSuperNode(Region, Alpha.SuperNodeId));
        ExpectMsg<SuperNodeDeregistered>();

        _clock.Advance(TimeSpan.FromSeconds(1));

        Assert.Equal(SuperNodeStatus.Down, Status(entity, Beta));
        Assert.Equal(SuperNodeStatus.Left, Status(entity, Alpha));
        Assert.DoesNotContain(JournalEvents(PersistenceId), e => e is SuperNodeMarkedDown { SuperNodeId: "sn-alpha" });
    }

    [Fact]
    public void Unchanged_reports_persist_nothing_and_changed_info_persists_a_registration()
    {
        var entity = Start();
        Report(entity, Alpha, new SuperNodeLoad(1, 0));
        for (var i = 2; i <= 5; i++)
        {
            _clock.Advance(TimeSpan.FromMilliseconds(50));
            Report(entity, Alpha with { }, new SuperNodeLoad(i, 0));
        }

        Assert.Equal([typeof(SuperNodeRegistered)], JournalEvents(PersistenceId).Select(e => e.GetType()));

        var moved = Alpha with { GrpcEndpoint = "10.0.0.9:7443" };
        Report(entity, moved);

        Assert.Equal(
            [new SuperNodeRegistered(Alpha, _clock.GetUtcNow().AddMilliseconds(-200)), new SuperNodeRegistered(moved, _clock.GetUtcNow())],
            JournalEvents(PersistenceId));
    }

    [Fact]
    public void Registrations_come_back_from_the_journal_after_a_restart()
    {
        var entity = Start();
        var t0 = _clock.GetUtcNow();
        Report(entity, Alpha, new SuperNodeLoad(9, 9));
        Report(entity, Beta);
        entity.Tell(new DeregisterSuperNode(Region, Beta.SuperNodeId));
        ExpectMsg<SuperNodeDeregistered>();
        Stop(entity);

        var recoveredAt = _clock.Advance(TimeSpan.FromMilliseconds(250));
        var recovered = Start();

        // Load is not persisted; the last report counts as "now" so Alpha gets a full grace period.
        Assert.Equal(
            [
                new SuperNodeView(Alpha, SuperNodeLoad.None, SuperNodeStatus.Up, t0, recoveredAt),
                new SuperNodeView(Beta, SuperNodeLoad.None, SuperNodeStatus.Left, t0, t0),
            ],
            GetRegion(recovered).SuperNodes);
    }

    [Fact]
    public void Recovered_up_supernode_that_stays_silent_is_marked_down_after_the_grace()
    {
        var entity = Start();
        Report(entity, Alpha);
        Stop(entity);
        var recovered = Start();
        Assert.Equal(SuperNodeStatus.Up, Status(recovered, Alpha));

        _clock.Advance(TimeSpan.FromSeconds(1));

        Assert.Equal(SuperNodeStatus.Down, Status(recovered, Alpha));
    }

    [Fact]
    public async Task State_is_recovered_from_a_snapshot_when_older_events_are_gone()
    {
        var entity = Start(Fast with { SnapshotEvery = 2 });
        var t0 = _clock.GetUtcNow();
        var moved = Alpha with { Capacity = 900 };
        Report(entity, Alpha); // 1
        Report(entity, Beta); // 2: snapshot
        Report(entity, moved); // 3
        entity.Tell(new DeregisterSuperNode(Region, Beta.SuperNodeId)); // 4: snapshot
        ExpectMsg<SuperNodeDeregistered>();
        var gamma = Alpha with { SuperNodeId = "sn-gamma" };
        Report(entity, gamma); // 5

        var expected = DirectoryState.Empty(Region)
            .Apply(new SuperNodeRegistered(moved, t0))
            .Apply(new SuperNodeRegistered(Beta, t0))
            .Apply(new SuperNodeLeft(Beta.SuperNodeId, t0));
        await AwaitAssertAsync(async () =>
        {
            var snapshot = await LatestSnapshotAsync(PersistenceId);
            Assert.Equal(4, snapshot?.Metadata.SequenceNr);
            Assert.Equal(expected, DirectoryState.FromSnapshot(Assert.IsType<DirectorySnapshot>(snapshot!.Snapshot)));
        }, TimeSpan.FromSeconds(5));
        // Older snapshots are deleted once a newer one is saved.
        await AwaitAssertAsync(async () => Assert.Null(await LatestSnapshotAsync(PersistenceId, maxSequenceNr: 3)), TimeSpan.FromSeconds(5));
        Stop(entity);

        // Only the snapshot can bring events 1–4 back now.
        var probe = CreateTestProbe();
        Journal.Tell(new Akka.Persistence.DeleteMessagesTo(PersistenceId, 4, probe.Ref));
        probe.ExpectMsg<Akka.Persistence.DeleteMessagesSuccess>();
        Assert.Equal([new SuperNodeRegistered(gamma, t0)], JournalEvents(PersistenceId));

        var recovered = Start(Fast with { SnapshotEvery = 2 });

        Assert.Equal(
            [
                (moved, SuperNodeStatus.Up),
                (Beta, SuperNodeStatus.Left),
                (gamma, SuperNodeStatus.Up),
            ],
            GetRegion(recovered).SuperNodes.Select(n => (n.Info, n.Status)));
    }

    [Fact]
    public void Invalid_settings_are_refused_naming_the_setting()
    {
        var ex = Assert.Throws<ArgumentException>(() =>
            DirectoryEntity.Props(Region, new DirectorySettings(TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(1), 100)));
        Assert.Equal("DownAfter", ex.ParamName);
        Assert.Equal("SnapshotEvery", Assert.Throws<ArgumentException>(() =>
            DirectoryEntity.Props(Region, DirectorySettings.Default with { SnapshotEvery = 0 })).ParamName);
    }

    private IActorRef Start(DirectorySettings? settings = null) =>
        Sys.ActorOf(DirectoryEntity.Props(Region, settings ?? Fast, _clock, _log));

    private void Report(IActorRef entity, SuperNodeInfo info, SuperNodeLoad? load = null)
    {
        entity.Tell(new ReportSuperNode(info, load ?? SuperNodeLoad.None));
        ExpectMsg(new ReportAccepted(Region, info.SuperNodeId));
    }

    private RegionView GetRegion(IActorRef entity)
    {
        var probe = CreateTestProbe();
        entity.Tell(new GetRegion(Region), probe.Ref);
        return probe.ExpectMsg<RegionView>();
    }

    private SuperNodeStatus Status(IActorRef entity, SuperNodeInfo info) =>
        GetRegion(entity).SuperNodes.Single(n => n.Info.SuperNodeId == info.SuperNodeId).Status;
}
