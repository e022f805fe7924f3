using MyDvpn.Protocol.Control;
using MyDvpn.Protocol.SuperNode;
using MyDvpn.SuperNode.Exits;
using static MyDvpn.SuperNode.Tests.Exits.Flows.PoolStates;

namespace MyDvpn.SuperNode.Tests.Exits.Flows;

/// <summary>Exit health: lost after the grace, drained by the operator, and the clients of both asked to move.</summary>
public sealed class ExitHealthTests
{
    private static readonly TimeSpan Grace = Settings.LostAfter;

    /// <summary>exit-a serves client-1 (assignment a-1) and client-2 (a-2); exit-b is online with room.</summary>
    private static PoolState Serving()
    {
        var state = Empty().Online("exit-a", "exit-b");
        foreach (var (id, client) in new[] { ("a-1", "client-1"), ("a-2", "client-2") })
        {
            var setup = state.Decide(Request(id, client) with { Avoid = ["exit-b"] });
            state = setup.Then(Acked(setup.Issued(Command.BodyOneofCase.SetupExit), Key(0xE1))).State;
        }
        return state;
    }

    private static IEnumerable<RotateClientRequest> Moves(PoolDecision decision) => decision.Effects.OfType<PoolEffect.MoveClient>().Select(m => m.Request);

    [Fact]
    public void An_exit_whose_stream_ended_takes_no_clients_and_is_lost_unless_it_is_back_within_the_grace()
    {
        var offline = Serving().Decide(new ExitOffline(Region, "exit-a"), T0);

        var grace = offline.Effect<PoolEffect.StartTimer>();
        Assert.Equal((ExitAnnouncements.GraceTimerPrefix + "exit-a", Grace, new ExitGraceOver("exit-a", T0)), (grace.Key, grace.Delay, grace.Message));
        Assert.Equal(ExitStates.Disconnected, offline.State.View(T0).Exits.Single(e => e.PeerId == "exit-a").State);
        Assert.Empty(Moves(offline));

        var back = offline.Then(new ExitOnline(Region, "exit-a", 10, ExitAddress, null), T0 + Grace / 2);
        Assert.Equal(new PoolEffect.CancelTimer(ExitAnnouncements.GraceTimerPrefix + "exit-a"), back.Effect<PoolEffect.CancelTimer>());
        Assert.Empty(back.State.Decide(grace.Message, T0 + Grace).Effects);
        Assert.Equal(ExitStates.Online, back.State.View(T0 + Grace).Exits.Single(e => e.PeerId == "exit-a").State);
    }

    [Fact]
    public void A_lost_exits_clients_are_each_asked_to_move_avoiding_it()
    {
        var offline = Serving().Decide(new ExitOffline(Region, "exit-a"), T0);

        var lost = offline.Then(new ExitGraceOver("exit-a", T0), T0 + Grace);

        Assert.Equal(["a-1", "a-2"], Moves(lost).Select(m => m.AssignmentId));
        var move = Moves(lost).First();
        Assert.Equal((ClientRegion, "client-1", "exit-a", RotationReason.ExitLost), (move.Region, move.ClientPeerId, move.ExitPeerId, move.Reason));
        Assert.Contains("did not come back", move.Detail);
        Assert.Equal(ExitStates.Lost, lost.State.View(T0 + Grace).Exits.Single(e => e.PeerId == "exit-a").State);
    }

    [Fact]
    public void An_exit_that_stopped_announcing_itself_is_lost_at_the_next_look()
    {
        var state = Serving();
        var silent = T0 + Settings.ExitOfflineAfter + TimeSpan.FromSeconds(1);

        var tick = state.Decide(HealthTick.Instance, silent);

        // Neither exit announced itself since T0 here.
        Assert.Equal(["a-1", "a-2"], Moves(tick).Select(m => m.AssignmentId));
        Assert.All(tick.State.View(silent).Exits, e => Assert.Equal(ExitStates.Lost, e.State));
    }

    [Fact]
    public void A_client_still_on_a_lost_exit_is_asked_again_after_the_rotation_retry_and_no_more_once_released()
    {
        var lost = Serving().Decide(new ExitOffline(Region, "exit-a"), T0).Then(new ExitGraceOver("exit-a", T0), T0 + Grace);
        var announced = lost.State with { Exits = lost.State.Exits.Announced("exit-b", new ExitPresence(10, "203.0.113.4", null, T0 + Grace)) };

        Assert.Empty(Moves(announced.Decide(HealthTick.Instance, T0 + Grace + Settings.RotationRetry / 2)));
        var again = announced.Decide(HealthTick.Instance, T0 + Grace + Settings.RotationRetry);
        Assert.Equal(["a-1", "a-2"], Moves(again).Select(m => m.AssignmentId));

        var released = again.Then(new ReleaseExit(Region, "a-1", "the client moved"), T0 + Grace + Settings.RotationRetry);
        var later = released.Then(HealthTick.Instance, T0 + Grace + Settings.RotationRetry * 2);
        Assert.Equal(["a-2"], Moves(later).Select(m => m.AssignmentId));
    }

    [Fact]
    public void A_drained_exit_takes_no_new_clients_its_clients_are_moved_and_undrain_takes_it_back()
    {
        var drained = Serving().Decide(new DrainExit(Region, "exit-a"), T0);

        Assert.Equal(new ExitDrained("exit-a", T0), Assert.Single(drained.Events));
        var started = Assert.IsType<ExitDrainStarted>(drained.Reply());
        Assert.Equal(("exit-a", true), (started.PeerId, started.Known));
        Assert.Equal([new MovingClient("a-1", "client-1", ClientRegion), new MovingClient("a-2", "client-2", ClientRegion)], started.Moving);
        Assert.All(Moves(drained), m => Assert.Equal(RotationReason.ExitDrained, m.Reason));
        Assert.Equal(ExitStates.Drained, drained.State.View(T0).Exits.Single(e => e.PeerId == "exit-a").State);

        // A new client goes to exit-b, though exit-a is the least loaded... but drained.
        var next = drained.Then(Request("a-3", "client-3"), T0);
        Assert.Equal("exit-b", next.Issued(Command.BodyOneofCase.SetupExit).PeerId);

        var undrained = drained.Then(new UndrainExit(Region, "exit-a"), T0);
        Assert.Equal(new ExitUndrained("exit-a", T0), Assert.Single(undrained.Events));
        Assert.Equal(new ExitUndrainResult("exit-a", WasDrained: true), undrained.Reply());
        Assert.Equal(new ExitUndrainResult("exit-a", WasDrained: false), undrained.Then(new UndrainExit(Region, "exit-a"), T0).Reply());
        Assert.DoesNotContain("exit-a", undrained.State.Durable.Drained);
    }

    [Fact]
    public void With_every_other_exit_drained_or_avoided_the_refusal_says_so()
    {
        var state = Serving().Decide(new DrainExit(Region, "exit-b"), T0).State;

        var refused = state.Decide(Request("a-9", "client-9") with { Avoid = ["exit-a"] }, T0);

        var refusal = Assert.IsType<ExitAllocationRefused>(refused.Answer(Awaited.Allocation, "a-9"));
        Assert.Equal(RefusalReason.NoExitAvailable, refusal.Reason);
        Assert.Contains("drained: exit-b", refusal.Detail);
        Assert.Contains("the one the client leaves: exit-a", refusal.Detail);
    }

    private static ExitPathFailed PathFailed(string assignmentId, string client, bool relayed = false, string exit = "exit-a") =>
        new(Region, assignmentId, exit, client, relayed, "client heard nothing back");

    [Fact]
    public void One_clients_direct_path_breaking_is_its_own_affair_but_a_second_client_makes_the_exit_stale()
    {
        var first = Serving().Decide(PathFailed("a-1", "client-1"), T0);

        Assert.Empty(Moves(first));
        Assert.Equal(ExitStates.Online, first.State.View(T0).Exits.Single(e => e.PeerId == "exit-a").State);

        var second = first.Then(PathFailed("a-2", "client-2"), T0 + TimeSpan.FromSeconds(30));

        Assert.Equal(["a-1", "a-2"], Moves(second).Select(m => m.AssignmentId));
        Assert.All(Moves(second), m => Assert.Equal((RotationReason.ExitStale, "exit-a"), (m.Reason, m.ExitPeerId)));
        Assert.Equal(ExitStates.Stale, second.State.View(T0).Exits.Single(e => e.PeerId == "exit-a").State);
        // Its announcements go on (its control stream is alive): it stays stale and takes no new client.
        var announced = second.Then(new ExitOnline(Region, "exit-a", 10, ExitAddress, null), T0 + TimeSpan.FromSeconds(31))
            .Then(new ExitOnline(Region, "exit-b", 10, ExitAddress, null), T0 + TimeSpan.FromSeconds(31));
        Assert.Equal(ExitStates.Stale, announced.State.View(T0).Exits.Single(e => e.PeerId == "exit-a").State);
        // A new client gets the other exit; the stale one only when no other fits (it may still carry traffic).
        var setup = announced.State.Decide(Request("a-3", "client-3"), T0 + TimeSpan.FromSeconds(32));
        Assert.Equal("exit-b", setup.Effect<PoolEffect.Issue>().PeerId);
        var lastResort = announced.State.Decide(Request("a-4", "client-4") with { Avoid = ["exit-b"] }, T0 + TimeSpan.FromSeconds(32));
        Assert.Equal("exit-a", lastResort.Effect<PoolEffect.Issue>().PeerId);
    }

    [Fact]
    public void Reports_older_than_the_window_do_not_add_up()
    {
        var first = Serving().Decide(PathFailed("a-1", "client-1"), T0);

        var second = first.Then(PathFailed("a-2", "client-2"), T0 + Settings.StaleWindow);

        Assert.Empty(Moves(second));
        Assert.Equal(ExitStates.Online, second.State.View(T0).Exits.Single(e => e.PeerId == "exit-a").State);
    }

    [Fact]
    public void The_only_client_whose_relayed_path_broke_too_makes_its_exit_stale()
    {
        var state = Empty().Online("exit-a", "exit-b");
        var setup = state.Decide(Request("a-1", "client-1") with { Avoid = ["exit-b"] });
        state = setup.Then(Acked(setup.Issued(Command.BodyOneofCase.SetupExit), Key(0xE1))).State;

        var direct = state.Decide(PathFailed("a-1", "client-1"), T0);
        Assert.Empty(Moves(direct));

        var relayed = direct.Then(PathFailed("a-1", "client-1", relayed: true), T0 + TimeSpan.FromSeconds(20));

        var move = Assert.Single(Moves(relayed));
        Assert.Equal((RotationReason.ExitStale, "a-1"), (move.Reason, move.AssignmentId));
        Assert.Contains("relayed ones too", move.Detail);
    }

    [Fact]
    public void A_report_of_an_assignment_that_is_not_that_clients_on_that_exit_is_ignored()
    {
        var state = Serving();

        Assert.Empty(state.Decide(PathFailed("a-1", "client-2"), T0).State.Exits.Complaints);
        Assert.Empty(state.Decide(PathFailed("a-1", "client-1", exit: "exit-b"), T0).State.Exits.Complaints);
        Assert.Empty(state.Decide(PathFailed("a-9", "client-1"), T0).State.Exits.Complaints);
    }

    [Fact]
    public void A_stale_exit_takes_clients_again_after_the_stale_time()
    {
        var stale = Serving().Decide(PathFailed("a-1", "client-1"), T0).Then(PathFailed("a-2", "client-2"), T0).State;

        // Its control stream lives: it keeps announcing itself meanwhile.
        var announced = new ExitOnline(Region, "exit-a", 10, ExitAddress, null);
        var almost = T0 + Settings.StaleFor - TimeSpan.FromSeconds(1);
        var during = stale.Decide(announced, almost).Then(HealthTick.Instance, almost);
        Assert.Equal(ExitStates.Stale, during.State.View(almost).Exits.Single(e => e.PeerId == "exit-a").State);

        var after = during.Then(announced, T0 + Settings.StaleFor).Then(HealthTick.Instance, T0 + Settings.StaleFor);

        Assert.Empty(after.State.Exits.Stale);
        Assert.Empty(Moves(after));
    }

    [Fact]
    public void A_drain_survives_a_snapshot()
    {
        var drained = Serving().Decide(new DrainExit(Region, "exit-a"), T0).State.Durable;

        Assert.Equal(["exit-a"], ExitPoolState.FromSnapshot(drained.ToSnapshot()).Drained);
    }

    [Fact]
    public void The_pool_counts_its_exits_in_each_state()
    {
        var state = Serving().Online("exit-c", "exit-d", "exit-e")
            .Decide(new DrainExit(Region, "exit-b"), T0)
            .Then(new ExitOffline(Region, "exit-c"), T0)
            .Then(new ExitOffline(Region, "exit-a"), T0)
            .Then(new ExitGraceOver("exit-a", T0), T0 + Grace)
            .Then(new ExitOffline(Region, "exit-d"), T0 + Grace)
            .Then(new ExitGraceOver("exit-d", T0 + Grace), T0 + Grace + Grace).State;

        // exit-a (with a subnet) and exit-d (never used) are lost, exit-b drained, exit-c disconnected, exit-e online.
        Assert.Equal(
            [(ExitStates.Disconnected, 1), (ExitStates.Drained, 1), (ExitStates.Lost, 2), (ExitStates.Offline, 0), (ExitStates.Online, 1), (ExitStates.Stale, 0)],
            state.ExitCounts().Select(c => (c.Key, c.Value)));
        Assert.All(ExitStates.All, s => Assert.Equal(0, Empty().ExitCounts()[s]));
    }
}
