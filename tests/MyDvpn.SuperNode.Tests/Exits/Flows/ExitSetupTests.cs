using Grpc.Core;
using MyDvpn.Protocol.Control;
using MyDvpn.SuperNode.Exits;
using MyDvpn.SuperNode.Sessions;
using static MyDvpn.SuperNode.Tests.Exits.Flows.PoolStates;

namespace MyDvpn.SuperNode.Tests.Exits.Flows;

/// <summary>An allocation's setups, from the pick to the exit's answer or silence, as pure decisions.</summary>
public sealed class ExitSetupTests
{
    [Fact]
    public void A_request_reserves_the_preferred_exit_and_sends_it_setup_exit_once_its_timer_runs()
    {
        var decision = Empty().Online("exit-a", "exit-b").Decide(Request("as-1"));

        Assert.Equal([new ExitSubnetAssigned("exit-a", 0)], decision.Events.Take(1));
        var reserved = Assert.IsType<AssignmentReserved>(decision.Events[1]);
        Assert.Equal(("as-1", "exit-a", "client-1", T0), (reserved.AssignmentId, reserved.ExitPeerId, reserved.ClientPeerId, reserved.At));
        Assert.Equal(new PoolEffect.Await(Awaited.Allocation, "as-1"), decision.Effects[0]);
        var setup = decision.Issued(Command.BodyOneofCase.SetupExit);
        Assert.Equal(("exit-a", ExitSide.Exit, "100.96.0.2/32"), (setup.PeerId, setup.Command.SetupExit.Side, setup.Command.SetupExit.Peer.AllowedIps.Single()));
        Assert.Equal(T0 + Settings.AckTimeout, setup.Command.Deadline.ToDateTimeOffset());
        var timer = decision.Effect<PoolEffect.StartTimer>();
        Assert.Equal(new PoolEffect.StartTimer(ExitSetup.TimerPrefix + "as-1", new SetupOverdue("as-1", setup.Command.CommandId),
            Settings.AckTimeout + ExitSettings.OverdueGrace), timer);
        Assert.True(decision.Effects.IndexOf(timer) < decision.Effects.IndexOf(setup), "the timer runs before anyone can see the command");
        var pending = decision.State.Setups["as-1"];
        Assert.Equal(["exit-a"], pending.Tried);
        Assert.Equal(("exit-a", setup.Command.CommandId), (pending.ExitPeerId, pending.CommandId));
        Assert.Empty(decision.Effects.OfType<PoolEffect.Answer>());
    }

    [Fact]
    public void The_exits_ack_activates_the_assignment_and_answers_everyone_waiting_for_it()
    {
        var first = Empty().Online("exit-a").Decide(Request("as-1"));
        var again = first.Then(Request("as-1"));
        Assert.Empty(again.Events);
        Assert.Equal([new PoolEffect.Await(Awaited.Allocation, "as-1")], again.Effects);

        var acked = again.Then(Acked(first.Issued(Command.BodyOneofCase.SetupExit), Key(0xE1)), T0.AddSeconds(1));

        var activated = Assert.IsType<AssignmentActivated>(Assert.Single(acked.Events));
        Assert.Equal(("as-1", $"{ExitAddress}:51820", T0.AddSeconds(1)), (activated.AssignmentId, activated.ExitEndpoint, activated.At));
        var allocated = Assert.IsType<ExitAllocated>(acked.Answer(Awaited.Allocation, "as-1")).Assignment;
        Assert.Equal(("exit-a", ExitAssignmentRecord.Active, "100.96.0.2/32"), (allocated.ExitPeerId, allocated.State, allocated.ClientAddress));
        Assert.Equal(Key(0xE1), allocated.ExitPublicKey);
        Assert.Equal(new PoolEffect.CancelTimer(ExitSetup.TimerPrefix + "as-1"), acked.Effect<PoolEffect.CancelTimer>());
        Assert.Empty(acked.State.Setups);
        Assert.Empty(acked.Commands());
    }

    [Fact]
    public void An_exit_claiming_an_endpoint_on_another_address_gets_its_streams_address_a_warning_and_a_count()
    {
        var first = Empty().Online("exit-a").Decide(Request("as-1"));

        var acked = first.Then(Acked(first.Issued(Command.BodyOneofCase.SetupExit), Key(0xE1), endpoint: "203.0.113.50:53"), T0.AddSeconds(1));

        var activated = Assert.IsType<AssignmentActivated>(Assert.Single(acked.Events));
        Assert.Equal($"{ExitAddress}:51820", activated.ExitEndpoint);
        Assert.Equal($"{ExitAddress}:51820", Assert.IsType<ExitAllocated>(acked.Answer(Awaited.Allocation, "as-1")).Assignment.ExitEndpoint);
        var warning = Assert.Single(acked.Effects.OfType<PoolEffect.Log>(), l => l.Level == Microsoft.Extensions.Logging.LogLevel.Warning);
        Assert.StartsWith("Security event: exit {ExitPeerId} claimed endpoint {Claimed}", warning.Template);
        Assert.Equal(new object?[] { "exit-a", "203.0.113.50:53" }, warning.Args.Take(2));
        Assert.Single(acked.Effects.OfType<PoolEffect.CountRefusedEndpoint>());
    }

    [Fact]
    public void An_exit_claiming_an_endpoint_on_its_streams_address_keeps_its_port_without_a_warning()
    {
        var first = Empty().Online("exit-a").Decide(Request("as-1"));

        var acked = first.Then(Acked(first.Issued(Command.BodyOneofCase.SetupExit), Key(0xE1), endpoint: $"{ExitAddress}:40001"), T0.AddSeconds(1));

        Assert.Equal($"{ExitAddress}:40001", Assert.IsType<AssignmentActivated>(Assert.Single(acked.Events)).ExitEndpoint);
        Assert.DoesNotContain(acked.Effects, e => e is PoolEffect.CountRefusedEndpoint or PoolEffect.Log { Level: Microsoft.Extensions.Logging.LogLevel.Warning });
    }

    [Fact]
    public void An_exit_that_refuses_is_rolled_back_kept_out_and_the_next_exit_tried()
    {
        var first = Empty().Online("exit-a", "exit-b").Decide(Request("as-1"));

        var refused = first.Then(Refused(first.Issued(Command.BodyOneofCase.SetupExit), "wg0 is missing"), T0.AddSeconds(1));

        Assert.Equal([typeof(AssignmentCancelled), typeof(ExitSubnetAssigned), typeof(AssignmentReserved)], refused.Events.Select(e => e.GetType()));
        Assert.Equal([("exit-a", Command.BodyOneofCase.RemoveExit), ("exit-b", Command.BodyOneofCase.SetupExit)], refused.Commands());
        var remove = refused.Issued(Command.BodyOneofCase.RemoveExit).Command;
        Assert.Equal(("as-1", ExitSide.Exit), (remove.RemoveExit.AssignmentId, remove.RemoveExit.Side));
        Assert.Equal("setup rolled back: exit-a did not set up the client: COMMAND_ERROR_DATAPLANE: wg0 is missing", remove.RemoveExit.Reason);
        Assert.Equal(T0.AddSeconds(1) + Settings.RemoveDeadline, remove.Deadline.ToDateTimeOffset());
        Assert.Equal(new ExitFailures(1, T0.AddSeconds(1)), refused.State.Exits.Failures["exit-a"]);
        Assert.Equal(["exit-a", "exit-b"], refused.State.Setups["as-1"].Tried);
        Assert.Equal("100.96.1.2/32", refused.Issued(Command.BodyOneofCase.SetupExit).Command.SetupExit.Peer.AllowedIps.Single());
        Assert.Empty(refused.Effects.OfType<PoolEffect.Answer>());
    }

    [Fact]
    public void An_exit_silent_until_its_timer_is_rolled_back_and_a_timer_of_an_earlier_try_changes_nothing()
    {
        var first = Empty().Online("exit-a", "exit-b").Decide(Request("as-1"));
        var overdue = first.Effect<PoolEffect.StartTimer>().Message;

        var silent = first.Then(overdue, T0 + Settings.AckTimeout + ExitSettings.OverdueGrace);

        Assert.IsType<AssignmentCancelled>(silent.Events[0]);
        Assert.Equal("setup rolled back: exit-a did not answer SetupExit within 5 s",
            silent.Issued(Command.BodyOneofCase.RemoveExit).Command.RemoveExit.Reason);
        Assert.Equal("exit-b", silent.Issued(Command.BodyOneofCase.SetupExit).PeerId);
        var late = silent.Then(overdue);
        Assert.Equal((0, 0), (late.Events.Count, late.Effects.Count));
    }

    [Fact]
    public void After_max_attempts_the_waiters_hear_the_setup_failed_with_what_each_exit_did()
    {
        var first = Empty().Online("exit-a", "exit-b", "exit-c").Decide(Request("as-1"));
        var second = first.Then(Refused(first.Issued(Command.BodyOneofCase.SetupExit), "full"));

        var last = second.Then(Acked(second.Issued(Command.BodyOneofCase.SetupExit), Key(0xE2)[..5]));

        var refusal = Assert.IsType<ExitAllocationRefused>(last.Answer(Awaited.Allocation, "as-1"));
        Assert.Equal((RefusalReason.ExitSetupFailed, StatusCode.Unavailable), (refusal.Reason, refusal.Code));
        Assert.Equal("exit-a did not set up the client: COMMAND_ERROR_DATAPLANE: full; "
            + "exit-b did not set up the client: it answered without its WireGuard public key", refusal.Detail);
        Assert.Equal([("exit-b", Command.BodyOneofCase.RemoveExit)], last.Commands());
        Assert.Empty(last.State.Setups);
        Assert.Empty(last.State.Durable.Assignments);
    }

    [Fact]
    public void An_exit_without_an_endpoint_or_a_known_address_fails_the_setup()
    {
        var first = Empty(Settings with { MaxExitAttempts = 1 }).Announced("exit-a", T0, address: "").Decide(Request("as-1"));

        var acked = first.Then(Acked(first.Issued(Command.BodyOneofCase.SetupExit), Key(0xE1)));

        var refusal = Assert.IsType<ExitAllocationRefused>(acked.Answer(Awaited.Allocation, "as-1"));
        Assert.Equal("exit-a gave no endpoint the SuperNode can vouch for and its public address is unknown", refusal.Detail);
        Assert.Equal([("exit-a", Command.BodyOneofCase.RemoveExit)], acked.Commands());
    }

    [Fact]
    public void No_exit_left_after_a_failure_says_what_happened_then_why_none_is_left()
    {
        var first = Empty(Settings with { MaxExitAttempts = 3 }).Online("exit-a").Decide(Request("as-1"));

        var refused = first.Then(Refused(first.Issued(Command.BodyOneofCase.SetupExit), "down"));

        var refusal = Assert.IsType<ExitAllocationRefused>(refused.Answer(Awaited.Allocation, "as-1"));
        Assert.Equal(RefusalReason.ExitSetupFailed, refusal.Reason);
        Assert.StartsWith("exit-a did not set up the client: COMMAND_ERROR_DATAPLANE: down; then no free exit in region us-east", refusal.Detail);
        Assert.Contains("already tried for this request: exit-a", refusal.Detail);
    }

    [Fact]
    public void A_request_for_another_client_or_region_or_one_being_rolled_back_is_refused_with_the_catalogues_status()
    {
        var first = Empty().Online("exit-a").Decide(Request("as-1"));
        var state = first.Then(Acked(first.Issued(Command.BodyOneofCase.SetupExit), Key(0xE1))).State;
        // Reserved in the journal with no setup under way: the restart that cut it short is rolling it back.
        var cutShort = first.State with { Setups = Empty().Setups };

        Assert.Equal((RefusalReason.MalformedMessage, StatusCode.InvalidArgument), ReasonOf(state.Decide(Request("as-1", client: "client-2")).Reply()));
        Assert.Equal((RefusalReason.WrongRegion, StatusCode.PermissionDenied), ReasonOf(state.Decide(Request("as-9") with { Region = "ap-south" }).Reply()));
        Assert.Equal((RefusalReason.Unavailable, StatusCode.Unavailable), ReasonOf(cutShort.Decide(Request("as-1")).Reply()));
    }

    [Fact]
    public void An_active_assignment_asked_for_again_is_answered_at_once()
    {
        var first = Empty().Online("exit-a").Decide(Request("as-1"));
        var state = first.Then(Acked(first.Issued(Command.BodyOneofCase.SetupExit), Key(0xE1))).State;

        var again = state.Decide(Request("as-1"));

        Assert.Equal("as-1", Assert.IsType<ExitAllocated>(again.Reply()).Assignment.AssignmentId);
        Assert.Equal((0, 1), (again.Events.Count, again.Effects.Count));
    }

    private static (RefusalReason, StatusCode) ReasonOf(object reply)
    {
        var refusal = Assert.IsType<ExitAllocationRefused>(reply);
        return (refusal.Reason, refusal.Code);
    }
}
