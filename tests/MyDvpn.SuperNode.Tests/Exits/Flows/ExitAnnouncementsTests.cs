using MyDvpn.Protocol.Control;
using MyDvpn.SuperNode.Exits;
using static MyDvpn.SuperNode.Tests.Exits.Flows.PoolStates;

namespace MyDvpn.SuperNode.Tests.Exits.Flows;

/// <summary>Which exits the pool counts as online — announced, withdrawn, silent — as pure decisions.</summary>
public sealed class ExitAnnouncementsTests
{
    [Fact]
    public void An_announcement_records_the_exit_with_the_time_it_was_heard()
    {
        var decision = Empty().Decide(new ExitOnline(Region, "exit-a", 4, ExitAddress, TimeSpan.FromMilliseconds(3)), T0.AddSeconds(7));

        Assert.Equal(new ExitPresence(4, ExitAddress, TimeSpan.FromMilliseconds(3), T0.AddSeconds(7)), decision.State.Exits.Online["exit-a"]);
        Assert.Empty(decision.Events);
        Assert.Empty(decision.Effects);
    }

    [Fact]
    public void A_withdrawn_exit_is_forgotten_and_one_not_known_changes_nothing()
    {
        var state = Empty().Online("exit-a");

        var offline = state.Decide(new ExitOffline(Region, "exit-a"));
        var unknown = offline.Then(new ExitOffline(Region, "exit-a"));

        Assert.Empty(offline.State.Exits.Online);
        Assert.Single(offline.Effects.OfType<PoolEffect.Log>());
        Assert.Empty(unknown.Effects);
    }

    [Fact]
    public void An_exit_silent_past_the_limit_is_forgotten_before_the_pick_and_one_heard_within_it_is_picked()
    {
        var state = Empty().Announced("exit-a", T0, rtt: 1).Announced("exit-b", T0.AddSeconds(15), rtt: 9);
        var now = T0 + Settings.ExitOfflineAfter + TimeSpan.FromSeconds(1);

        var decision = state.Decide(Request("as-1"), now);

        Assert.Equal("exit-b", decision.Issued(Command.BodyOneofCase.SetupExit).PeerId);
        Assert.Equal(["exit-b"], decision.State.Exits.Online.Keys);
        Assert.Contains(decision.Effects.OfType<PoolEffect.Log>(), log => log.Args.Contains("exit-a"));
    }

    [Fact]
    public void An_exit_silent_exactly_the_limit_still_counts()
    {
        var state = Empty().Online("exit-a");

        var decision = state.Decide(Request("as-1"), T0 + Settings.ExitOfflineAfter);

        Assert.Equal("exit-a", decision.Issued(Command.BodyOneofCase.SetupExit).PeerId);
    }

    [Fact]
    public void The_view_forgets_silent_exits_and_counts_failures_only_within_the_cooldown()
    {
        var state = Empty().Online("exit-a", "exit-b") with
        {
            Exits = Empty().Online("exit-a", "exit-b").Exits.Failed("exit-a", T0).Failed("exit-a", T0.AddSeconds(5)).Failed("exit-b", T0.AddSeconds(-40)),
        };

        var view = Assert.IsType<ExitPoolSnapshotView>(state.Decide(new GetExitPool(Region), T0.AddSeconds(10)).Reply());
        var later = state.Decide(new GetExitPool(Region), T0 + Settings.ExitOfflineAfter + TimeSpan.FromSeconds(1));

        Assert.Equal([("exit-a", true, 2), ("exit-b", true, 0)], view.Exits.Select(e => (e.PeerId, e.Online, e.RecentFailures)));
        Assert.Empty(Assert.IsType<ExitPoolSnapshotView>(later.Reply()).Exits);
        Assert.Empty(later.State.Exits.Online);
    }
}
