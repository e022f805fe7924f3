using MyDvpn.Protocol.Control;
using MyDvpn.SuperNode.Exits;
using static MyDvpn.SuperNode.Tests.Exits.Flows.PoolStates;

namespace MyDvpn.SuperNode.Tests.Exits.Flows;

/// <summary>Releases — asked, during a setup, by a newer assignment, by a restart — as pure decisions.</summary>
public sealed class AssignmentReleaseTests
{
    [Fact]
    public void A_release_frees_the_address_tells_the_exit_and_a_second_one_finds_nothing()
    {
        var state = Active("as-1");

        var released = state.Decide(new ReleaseExit(Region, "as-1", "client shut down"), T0.AddMinutes(1));

        Assert.Equal([new AssignmentReleased("as-1", "client shut down", T0.AddMinutes(1))], released.Events);
        var remove = released.Issued(Command.BodyOneofCase.RemoveExit);
        Assert.Equal(("exit-a", "as-1", "client shut down"), (remove.PeerId, remove.Command.RemoveExit.AssignmentId, remove.Command.RemoveExit.Reason));
        Assert.Equal(ClientKey, remove.Command.RemoveExit.PeerPublicKey.ToByteArray());
        Assert.Equal(new ExitReleased("as-1", true), released.Reply());
        Assert.Equal(0, released.State.Durable.ClientsOf("exit-a"));
        var again = released.Then(new ReleaseExit(Region, "as-1", "again"));
        Assert.Equal(new ExitReleased("as-1", false), again.Reply());
        Assert.Empty(again.Events);
    }

    [Fact]
    public void A_release_during_the_setup_waits_and_is_carried_out_once_the_exit_acked()
    {
        var first = Empty().Online("exit-a").Decide(Request("as-1"));

        var asked = first.Then(new ReleaseExit(Region, "as-1", "client gave up"));
        Assert.Empty(asked.Events);
        Assert.Equal([new PoolEffect.Await(Awaited.Release, "as-1")], asked.Effects);

        var acked = asked.Then(Acked(first.Issued(Command.BodyOneofCase.SetupExit), Key(0xE1)));

        Assert.Equal([typeof(AssignmentActivated), typeof(AssignmentReleased)], acked.Events.Select(e => e.GetType()));
        Assert.IsType<ExitAllocated>(acked.Answer(Awaited.Allocation, "as-1"));
        Assert.Equal("client gave up", acked.Issued(Command.BodyOneofCase.RemoveExit).Command.RemoveExit.Reason);
        Assert.Equal(new ExitReleased("as-1", true), acked.Answer(Awaited.Release, "as-1"));
        var answers = acked.Effects.OfType<PoolEffect.Answer>().ToList();
        Assert.True(acked.Effects.IndexOf(acked.Issued(Command.BodyOneofCase.RemoveExit)) < acked.Effects.IndexOf(answers[1]),
            "the releaser hears of it once the exit was told");
        Assert.Empty(acked.State.Durable.Assignments);
    }

    [Fact]
    public void A_release_during_a_setup_that_fails_stops_the_search_for_another_exit()
    {
        var first = Empty().Online("exit-a", "exit-b").Decide(Request("as-1"));
        var asked = first.Then(new ReleaseExit(Region, "as-1", "client gave up"));

        var refused = asked.Then(Refused(first.Issued(Command.BodyOneofCase.SetupExit), "down"));

        Assert.Equal([typeof(AssignmentCancelled)], refused.Events.Select(e => e.GetType()));
        Assert.Equal([("exit-a", Command.BodyOneofCase.RemoveExit)], refused.Commands());
        var refusal = Assert.IsType<ExitAllocationRefused>(refused.Answer(Awaited.Allocation, "as-1"));
        Assert.StartsWith("released during the setup; exit-a did not set up the client", refusal.Detail);
        Assert.Equal(new ExitReleased("as-1", true), refused.Answer(Awaited.Release, "as-1"));
    }

    [Fact]
    public void A_new_assignment_of_a_client_supersedes_its_active_one_first_so_the_place_it_frees_counts()
    {
        var state = Active("as-1", capacity: 1);

        var second = state.Decide(Request("as-2"), T0.AddSeconds(10));

        Assert.Equal(new AssignmentReleased("as-1", "superseded by assignment as-2", T0.AddSeconds(10)), second.Events[0]);
        var reserved = Assert.IsType<AssignmentReserved>(Assert.Single(second.Events.Skip(1)));
        Assert.Equal(("as-2", "exit-a", TunnelAddressing.FirstClientHost), (reserved.AssignmentId, reserved.ExitPeerId, reserved.Host));
        Assert.Equal([("exit-a", Command.BodyOneofCase.RemoveExit), ("exit-a", Command.BodyOneofCase.SetupExit)], second.Commands());
        Assert.Equal("superseded by assignment as-2", second.Issued(Command.BodyOneofCase.RemoveExit).Command.RemoveExit.Reason);
    }

    [Fact]
    public void A_rotation_keeps_the_assignment_the_client_moves_away_from_until_its_session_releases_it()
    {
        var state = Active("as-1").Online("exit-a", "exit-b");

        var rotation = state.Decide(Request("as-2") with { Avoid = ["exit-a"], Keeps = "as-1" }, T0.AddSeconds(10));

        // Make-before-break: the client's traffic still goes through exit-a while exit-b sets up its half.
        Assert.DoesNotContain(rotation.Events, e => e is AssignmentReleased);
        var reserved = Assert.Single(rotation.Events.OfType<AssignmentReserved>());
        Assert.Equal("exit-b", reserved.ExitPeerId);
        Assert.Equal([("exit-b", Command.BodyOneofCase.SetupExit)], rotation.Commands());
        Assert.Equal(["as-1", "as-2"], rotation.State.Durable.Assignments.Keys.Order());
        var acked = rotation.Then(Acked(rotation.Issued(Command.BodyOneofCase.SetupExit), Key(0xE2)));
        Assert.Equal(["as-1", "as-2"], acked.State.Durable.Assignments.Keys.Order());

        var released = acked.Then(new ReleaseExit(Region, "as-1", "the client moved to assignment as-2"));
        Assert.Equal([("exit-a", Command.BodyOneofCase.RemoveExit)], released.Commands());
        Assert.Equal(["as-2"], released.State.Durable.Assignments.Keys);
    }

    [Fact]
    public void An_older_assignment_still_setting_up_is_released_when_its_setup_ends()
    {
        var first = Empty().Online("exit-a").Decide(Request("as-1"));
        var second = first.Then(Request("as-2"));
        Assert.Equal("superseded by assignment as-2", second.State.Setups["as-1"].ReleaseReason);
        Assert.Equal(["as-1", "as-2"], second.State.Durable.Assignments.Keys.Order());

        var acked = second.Then(Acked(first.Issued(Command.BodyOneofCase.SetupExit), Key(0xE1)));

        Assert.IsType<ExitAllocated>(acked.Answer(Awaited.Allocation, "as-1"));
        Assert.Equal([typeof(AssignmentActivated), typeof(AssignmentReleased)], acked.Events.Select(e => e.GetType()));
        Assert.Equal(["as-2"], acked.State.Durable.Assignments.Keys);
        Assert.Equal("as-1", acked.Issued(Command.BodyOneofCase.RemoveExit).Command.RemoveExit.AssignmentId);
    }

    [Fact]
    public void A_restart_cancels_the_setups_it_cut_short_tells_their_exits_and_keeps_active_ones()
    {
        var state = Active("as-1").Online("exit-a", "exit-b");
        state = state.Decide(Request("as-2", client: "client-2")).State with { Setups = Empty().Setups, Exits = Empty().Exits };

        var recovered = state.DecideRecovered(T0.AddMinutes(1));

        Assert.Equal([new AssignmentCancelled("as-2", AssignmentRelease.RestartReason, T0.AddMinutes(1))], recovered.Events);
        var remove = recovered.Issued(Command.BodyOneofCase.RemoveExit);
        Assert.Equal(("as-2", AssignmentRelease.RestartReason), (remove.Command.RemoveExit.AssignmentId, remove.Command.RemoveExit.Reason));
        Assert.Equal(["as-1"], recovered.State.Durable.Assignments.Keys);
        Assert.Equal(Microsoft.Extensions.Logging.LogLevel.Warning, recovered.Effect<PoolEffect.Log>().Level);
        var nothing = recovered.State.DecideRecovered(T0.AddMinutes(2));
        Assert.Empty(nothing.Events);
        // Nothing but the start of the pool's periodic look at its exits.
        Assert.Equal(ExitHealth.HealthTimer, Assert.IsType<PoolEffect.StartTimer>(Assert.Single(nothing.Effects)).Key);
    }

    /// <summary>A pool whose exit-a serves client-1 through assignment <paramref name="assignmentId"/>.</summary>
    private static PoolState Active(string assignmentId, int capacity = 10)
    {
        var first = Empty().Announced("exit-a", T0, capacity).Decide(Request(assignmentId));
        return first.Then(Acked(first.Issued(Command.BodyOneofCase.SetupExit), Key(0xE1))).State;
    }
}
