using Grpc.Core;
using MyDvpn.Protocol.Control;
using MyDvpn.SuperNode.Exits;

namespace MyDvpn.SuperNode.Tests.Exits;

/// <summary>The pure part of the exit pool: which exit is picked, which addresses are handed out, and the snapshot.</summary>
public sealed class ExitPoolStateTests
{
    private const string Region = "us-east";
    private static readonly DateTimeOffset Now = new(2030, 1, 1, 12, 0, 0, TimeSpan.Zero);
    private static readonly ExitSettings Settings = ExitSettings.Default;
    private static readonly TunnelAddressing Addressing = Settings.Addressing();
    private static readonly Dictionary<string, ExitFailures> NoFailures = [];

    [Fact]
    public void Least_loaded_online_exit_is_picked()
    {
        // exit-a serves 1 of 2 (half full), exit-b 1 of 10: exit-b, although exit-a answers faster.
        var state = Empty().With("exit-a", 0, "old-1").With("exit-b", 1, "old-2");
        var online = Online(("exit-a", 2, Ms(1)), ("exit-b", 10, Ms(50)));

        Assert.Equal("exit-b", Pick(state, online));
    }

    [Fact]
    public void Equally_loaded_exits_are_told_apart_by_the_lower_rtt_and_an_unknown_rtt_comes_last()
    {
        var online = Online(("exit-a", 10, null), ("exit-b", 10, Ms(30)), ("exit-c", 10, Ms(20)));

        Assert.Equal("exit-c", Pick(Empty(), online));
        Assert.Equal("exit-b", Pick(Empty(), online, tried: ["exit-c"]));
        Assert.Equal("exit-a", Pick(Empty(), online, tried: ["exit-c", "exit-b"]));
    }

    [Fact]
    public void Full_tried_and_cooling_exits_are_skipped()
    {
        var state = Empty().With("exit-full", 0, "old-1");
        var online = Online(("exit-full", 1, Ms(1)), ("exit-tried", 10, Ms(1)), ("exit-cooling", 10, Ms(1)), ("exit-ok", 10, Ms(90)));
        var failures = new Dictionary<string, ExitFailures> { ["exit-cooling"] = new(1, Now - Settings.FailureCooldown / 2) };

        Assert.Equal("exit-ok", Pick(state, online, tried: ["exit-tried"], failures: failures));
    }

    [Fact]
    public void An_exit_within_its_cooldown_is_picked_when_no_other_fits()
    {
        // exit-b failed a setup 10 s ago (a slow first setup on a loaded host); exit-c is drained, exit-a full.
        var state = Empty().With("exit-a", 0, "old-1").Apply(new ExitDrained("exit-c", Now));
        var online = Online(("exit-a", 1, Ms(1)), ("exit-b", 10, Ms(1)), ("exit-c", 10, Ms(1)));
        var failures = new Dictionary<string, ExitFailures> { ["exit-b"] = new(1, Now - TimeSpan.FromSeconds(10)) };

        Assert.Equal("exit-b", Pick(state, online, failures: failures));
    }

    [Fact]
    public void Of_several_exits_within_their_cooldown_the_least_loaded_is_picked()
    {
        var state = Empty().With("exit-a", 0, "old-1");
        var online = Online(("exit-a", 10, Ms(1)), ("exit-b", 10, Ms(50)));
        var failures = new Dictionary<string, ExitFailures> { ["exit-a"] = new(1, Now), ["exit-b"] = new(3, Now) };

        Assert.Equal("exit-b", Pick(state, online, failures: failures));
    }

    [Fact]
    public void Exit_whose_failure_cooldown_is_over_is_picked_again()
    {
        var online = Online(("exit-a", 10, Ms(1)));
        var failures = new Dictionary<string, ExitFailures> { ["exit-a"] = new(3, Now - Settings.FailureCooldown) };

        Assert.Equal("exit-a", Pick(Empty(), online, failures: failures));
    }

    [Fact]
    public void Exits_with_equal_load_and_rtt_prefer_the_one_with_fewer_failures()
    {
        var online = Online(("exit-a", 10, Ms(5)), ("exit-b", 10, Ms(5)));
        var failures = new Dictionary<string, ExitFailures> { ["exit-a"] = new(2, Now - Settings.FailureCooldown * 2) };

        Assert.Equal("exit-b", Pick(Empty(), online, failures: failures));
    }

    [Fact]
    public void Refusal_says_when_no_exit_is_online()
    {
        var refusal = Refusal(Empty(), Online());

        Assert.Equal(StatusCode.ResourceExhausted, refusal.Code);
        Assert.Equal(RefusalReason.NoExitAvailable, refusal.Reason);
        Assert.Equal($"region {Region} has no exit online", refusal.Detail);
    }

    [Fact]
    public void Refusal_names_every_exit_at_capacity_with_its_counts_and_every_tried_one()
    {
        var state = Empty().With("exit-a", 0, "c-1").With("exit-a", 0, "c-2").With("exit-b", 1, "c-3");
        var online = Online(("exit-a", 2, Ms(1)), ("exit-b", 1, Ms(1)), ("exit-c", 5, Ms(1)), ("exit-d", 5, Ms(1)));
        var failures = new Dictionary<string, ExitFailures> { ["exit-c"] = new(1, Now) };

        var refusal = Refusal(state, online, tried: ["exit-d", "exit-c"], failures: failures);

        Assert.Equal((StatusCode.ResourceExhausted, RefusalReason.NoExitAvailable), (refusal.Code, refusal.Reason));
        Assert.Equal(
            $"no free exit in region {Region} (4 online; at capacity: exit-a 2/2, exit-b 1/1; "
            + "already tried for this request: exit-c, exit-d)",
            refusal.Detail);
    }

    [Fact]
    public void Capacity_is_capped_by_what_the_subnet_holds()
    {
        var settings = Settings with { TunnelPool = "10.9.0.0/24", SubnetPrefixLength = 30 };
        var addressing = settings.Addressing();
        var state = Empty().Apply(new ExitSubnetAssigned("exit-a", 0)).Apply(Reserved("c-1", "exit-a", 2));

        var decision = state.DecideReservation(Request("c-2"), Online(("exit-a", 100, Ms(1))), [], NoFailures, Now, settings, addressing);

        Assert.Contains("exit-a 1/1", Assert.IsType<ReservationDecision.Refuse>(decision).Refusal.Detail);
    }

    [Fact]
    public void New_exit_gets_the_lowest_free_subnet_and_its_first_client_the_first_client_host()
    {
        var state = Empty().Apply(new ExitSubnetAssigned("exit-a", 0)).Apply(new ExitSubnetAssigned("exit-c", 2));
        var request = Request("as-1");

        var decision = state.DecideReservation(request, Online(("exit-b", 10, Ms(1))), [], NoFailures, Now, Settings, Addressing);

        var reserve = Assert.IsType<ReservationDecision.Reserve>(decision);
        Assert.Equal("exit-b", reserve.ExitPeerId);
        Assert.Equal(2, reserve.Events.Count);
        Assert.Equal(new ExitSubnetAssigned("exit-b", 1), reserve.Events[0]);
        var reserved = Assert.IsType<AssignmentReserved>(reserve.Events[1]);
        Assert.Equal(
            ("as-1", "exit-b", TunnelAddressing.FirstClientHost, "client-1", "eu-west", Now),
            (reserved.AssignmentId, reserved.ExitPeerId, reserved.Host, reserved.ClientPeerId, reserved.ClientRegion, reserved.At));
        Assert.Equal(request.ClientPublicKey, reserved.ClientPublicKey);
    }

    [Fact]
    public void Exit_with_a_subnet_gets_no_new_one_and_the_lowest_free_host_is_used()
    {
        var state = Empty().Apply(new ExitSubnetAssigned("exit-a", 7))
            .Apply(Reserved("as-1", "exit-a", 2)).Apply(Reserved("as-2", "exit-a", 3)).Apply(Reserved("as-3", "exit-a", 4));
        state = state.Apply(new AssignmentReleased("as-2", "client left", Now));

        var reserve = Assert.IsType<ReservationDecision.Reserve>(
            state.DecideReservation(Request("as-4"), Online(("exit-a", 10, Ms(1))), [], NoFailures, Now, Settings, Addressing));

        Assert.Equal(3, Assert.IsType<AssignmentReserved>(Assert.Single(reserve.Events)).Host);
    }

    [Fact]
    public void Host_of_a_cancelled_reservation_is_handed_out_again()
    {
        var state = Empty().Apply(new ExitSubnetAssigned("exit-a", 0)).Apply(Reserved("as-1", "exit-a", 2));
        state = state.Apply(new AssignmentCancelled("as-1", "exit refused", Now));

        var reserve = Assert.IsType<ReservationDecision.Reserve>(
            state.DecideReservation(Request("as-2"), Online(("exit-a", 1, Ms(1))), [], NoFailures, Now, Settings, Addressing));

        Assert.Equal(2, Assert.IsType<AssignmentReserved>(Assert.Single(reserve.Events)).Host);
        Assert.Equal(0, state.ClientsOf("exit-a"));
    }

    [Fact]
    public void Exits_never_share_a_subnet()
    {
        var state = Empty();
        var online = new Dictionary<string, ExitPresence>();
        for (var i = 0; i < 20; i++)
        {
            online[$"exit-{i:00}"] = new ExitPresence(1, "", Ms(i), Now);
            var decision = state.DecideReservation(Request($"as-{i}"), online, [], NoFailures, Now, Settings, Addressing);
            foreach (var evt in Assert.IsType<ReservationDecision.Reserve>(decision).Events)
                state = state.Apply(evt);
        }

        Assert.Equal(20, state.Subnets.Count);
        Assert.Equal(Enumerable.Range(0, 20), state.Subnets.Values.Order());
        Assert.All(state.Assignments.Values, a => Assert.Equal(TunnelAddressing.FirstClientHost, a.Host));
        var addresses = state.Assignments.Values.Select(a => state.Record(a, Addressing).ClientAddress).ToList();
        Assert.Equal(addresses.Count, addresses.Distinct().Count());
    }

    [Fact]
    public void Exit_is_refused_when_the_tunnel_pool_has_no_subnet_left()
    {
        var settings = Settings with { TunnelPool = "10.9.0.0/29", SubnetPrefixLength = 30 };
        // exit-a is offline with a client, exit-b online: neither gives its subnet up.
        var state = Empty().Apply(new ExitSubnetAssigned("exit-a", 0)).Apply(Reserved("as-0", "exit-a", 2)).Apply(new ExitSubnetAssigned("exit-b", 1));

        var decision = state.DecideReservation(Request("as-1"), Online(("exit-b", 0, Ms(1)), ("exit-c", 1, Ms(1))), [], NoFailures, Now, settings, settings.Addressing());

        var refusal = Assert.IsType<ReservationDecision.Refuse>(decision).Refusal;
        Assert.Equal((StatusCode.ResourceExhausted, RefusalReason.NoExitAvailable), (refusal.Code, refusal.Reason));
        Assert.Contains("no free /30", refusal.Detail);
        Assert.Contains("exit-c", refusal.Detail);
        Assert.Contains("each by an exit online or with clients", refusal.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void Activation_makes_the_assignment_active_with_the_exit_key_and_endpoint()
    {
        var exitKey = Key(9);
        var state = Empty().Apply(new ExitSubnetAssigned("exit-a", 3)).Apply(Reserved("as-1", "exit-a", 2));
        Assert.Equal(ExitAssignmentRecord.SettingUp, state.Record(state.Assignments["as-1"], Addressing).State);

        state = state.Apply(new AssignmentActivated("as-1", exitKey, "198.51.100.7:51820", Now.AddSeconds(1)));

        var record = state.Record(state.Assignments["as-1"], Addressing);
        Assert.Equal(
            ("as-1", Region, "exit-a", "198.51.100.7:51820", "100.96.3.2/32", "100.96.3.1/24", "client-as-1", "eu-west", ExitAssignmentRecord.Active),
            (record.AssignmentId, record.Region, record.ExitPeerId, record.ExitEndpoint, record.ClientAddress, record.ExitAddress, record.ClientPeerId,
                record.ClientRegion, record.State));
        Assert.Equal(exitKey, record.ExitPublicKey);
        Assert.Equal(Key(1), record.ClientPublicKey);
    }

    [Fact]
    public void Activation_of_an_unknown_assignment_changes_nothing()
    {
        var state = Empty().Apply(new ExitSubnetAssigned("exit-a", 0));

        Assert.Same(state, state.Apply(new AssignmentActivated("gone", Key(9), "198.51.100.7:51820", Now)));
    }

    [Fact]
    public void Snapshot_round_trip_keeps_subnets_and_assignments()
    {
        var state = Empty().Apply(new ExitSubnetAssigned("exit-a", 0)).Apply(new ExitSubnetAssigned("exit-b", 4))
            .Apply(Reserved("as-1", "exit-a", 2)).Apply(Reserved("as-2", "exit-b", 5))
            .Apply(new AssignmentActivated("as-1", Key(9), "198.51.100.7:51820", Now));

        var restored = ExitPoolState.FromSnapshot(state.ToSnapshot());

        Assert.Equal(Region, restored.Region);
        Assert.Equal(state.Subnets.OrderBy(kv => kv.Key), restored.Subnets.OrderBy(kv => kv.Key));
        Assert.Equal(state.Assignments.Keys.Order(), restored.Assignments.Keys.Order());
        foreach (var (id, assignment) in state.Assignments)
            Assert.Equal(state.Record(assignment, Addressing).ToProto(), restored.Record(restored.Assignments[id], Addressing).ToProto());
        // The restored state decides as the original would: exit-b keeps subnet 4 (no new one) and gets host 2 next.
        var next = Assert.IsType<ReservationDecision.Reserve>(
            restored.DecideReservation(Request("as-3"), Online(("exit-b", 10, Ms(1))), [], NoFailures, Now, Settings, Addressing));
        Assert.Equal(2, Assert.IsType<AssignmentReserved>(Assert.Single(next.Events)).Host);
        Assert.Equal(2, restored.ClientsOf("exit-a") + restored.ClientsOf("exit-b"));
    }

    [Fact]
    public void An_exit_offline_keeps_its_subnet_while_another_is_free()
    {
        var twoSubnets = TunnelAddressing.Parse("100.96.0.0/23", 24);
        var state = Empty().Apply(new ExitSubnetAssigned("gone", 0));

        var reserve = Assert.IsType<ReservationDecision.Reserve>(
            state.DecideReservation(Request("as-1"), Online(("exit-new", 10, Ms(1))), [], NoFailures, Now, Settings, twoSubnets));

        Assert.Equal(new ExitSubnetAssigned("exit-new", 1), reserve.Events[0]);
        Assert.DoesNotContain(reserve.Events, e => e is ExitSubnetReleased);
    }

    [Fact]
    public void Once_every_subnet_is_owned_an_exit_offline_and_without_clients_gives_its_subnet_up()
    {
        var twoSubnets = TunnelAddressing.Parse("100.96.0.0/23", 24);
        var state = Empty()
            .Apply(new ExitSubnetAssigned("gone-with-client", 0)).Apply(Reserved("as-0", "gone-with-client", 2))
            .Apply(new ExitSubnetAssigned("gone", 1));

        var reserve = Assert.IsType<ReservationDecision.Reserve>(
            state.DecideReservation(Request("as-1"), Online(("exit-new", 10, Ms(1))), [], NoFailures, Now, Settings, twoSubnets));

        Assert.Equal([new ExitSubnetReleased("gone", 1), new ExitSubnetAssigned("exit-new", 1)], reserve.Events.Take(2));
        var after = reserve.Events.Aggregate(state, (x, e) => x.Apply(e));
        Assert.Equal(new Dictionary<string, int> { ["gone-with-client"] = 0, ["exit-new"] = 1 }, after.Subnets.OrderBy(kv => kv.Key).ToDictionary());
        Assert.Equal("100.96.1.2/32", after.Record(after.Assignments["as-1"], twoSubnets).ClientAddress);
    }

    private static ExitPoolState Empty() => ExitPoolState.Empty(Region);

    private static TimeSpan Ms(int milliseconds) => TimeSpan.FromMilliseconds(milliseconds);

    private static byte[] Key(byte fill) => Enumerable.Repeat(fill, 32).ToArray();

    private static AllocateExit Request(string assignmentId) => new(Region, assignmentId, "client-1", "eu-west", Key(1));

    private static AssignmentReserved Reserved(string assignmentId, string exit, int host) =>
        new(assignmentId, exit, host, "client-" + assignmentId, "eu-west", Key(1), Now);

    private static Dictionary<string, ExitPresence> Online(params (string PeerId, int Capacity, TimeSpan? Rtt)[] exits) =>
        exits.ToDictionary(e => e.PeerId, e => new ExitPresence(e.Capacity, "198.51.100.1", e.Rtt, Now));

    private static string Pick(
        ExitPoolState state,
        Dictionary<string, ExitPresence> online,
        string[]? tried = null,
        Dictionary<string, ExitFailures>? failures = null) =>
        Assert.IsType<ReservationDecision.Reserve>(
            state.DecideReservation(Request("new"), online, tried ?? [], failures ?? NoFailures, Now, Settings, Addressing)).ExitPeerId;

    private static ExitAllocationRefused Refusal(
        ExitPoolState state,
        Dictionary<string, ExitPresence> online,
        string[]? tried = null,
        Dictionary<string, ExitFailures>? failures = null) =>
        Assert.IsType<ReservationDecision.Refuse>(
            state.DecideReservation(Request("new"), online, tried ?? [], failures ?? NoFailures, Now, Settings, Addressing)).Refusal;
}

/// <summary>Builds pool states for the tests: an exit with a subnet and a client on it.</summary>
internal static class ExitPoolStateBuilding
{
    /// <summary><paramref name="exit"/> owns <paramref name="subnet"/> and serves one more (active) client.</summary>
    public static ExitPoolState With(this ExitPoolState state, string exit, int subnet, string assignmentId)
    {
        if (!state.Subnets.ContainsKey(exit))
            state = state.Apply(new ExitSubnetAssigned(exit, subnet));
        var host = TunnelAddressing.FirstClientHost + state.ClientsOf(exit);
        var at = new DateTimeOffset(2030, 1, 1, 11, 0, 0, TimeSpan.Zero);
        return state
            .Apply(new AssignmentReserved(assignmentId, exit, host, "client-" + assignmentId, "eu-west", new byte[32], at))
            .Apply(new AssignmentActivated(assignmentId, new byte[32], "198.51.100.1:51820", at));
    }
}
