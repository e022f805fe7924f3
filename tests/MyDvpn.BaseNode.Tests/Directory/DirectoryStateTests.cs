using System.Collections.Immutable;
using MyDvpn.BaseNode.Directory;

namespace MyDvpn.BaseNode.Tests.Directory;

public sealed class DirectoryStateTests
{
    private static readonly DateTimeOffset T0 = new(2030, 1, 1, 12, 0, 0, TimeSpan.Zero);

    private static readonly SuperNodeInfo Alpha = new("sn-alpha", "eu-west", "10.0.0.1:7443", "203.0.113.1", 40000, 40999, 500);
    private static readonly SuperNodeInfo Beta = new("sn-beta", "eu-west", "10.0.0.2:7443", "203.0.113.2", 41000, 41999, 300);

    private static readonly DirectoryState Empty = DirectoryState.Empty("eu-west");

    [Fact]
    public void Registered_adds_an_up_supernode_with_its_registration_time()
    {
        var state = Empty.Apply(new SuperNodeRegistered(Alpha, T0));

        var record = Assert.Single(state.SuperNodes).Value;
        Assert.Equal(new SuperNodeRecord(Alpha, SuperNodeStatus.Up, T0), record);
        Assert.Equal("eu-west", state.Region);
    }

    [Fact]
    public void Apply_leaves_the_original_state_unchanged()
    {
        var before = Empty.Apply(new SuperNodeRegistered(Alpha, T0));

        _ = before.Apply(new SuperNodeMarkedDown(Alpha.SuperNodeId, T0.AddSeconds(7)));

        Assert.Equal(SuperNodeStatus.Up, before.SuperNodes[Alpha.SuperNodeId].Status);
    }

    [Fact]
    public void Marked_down_sets_an_up_supernode_down_and_keeps_its_info()
    {
        var state = Empty
            .Apply(new SuperNodeRegistered(Alpha, T0))
            .Apply(new SuperNodeMarkedDown(Alpha.SuperNodeId, T0.AddSeconds(7)));

        Assert.Equal(new SuperNodeRecord(Alpha, SuperNodeStatus.Down, T0), state.SuperNodes[Alpha.SuperNodeId]);
    }

    [Fact]
    public void Left_sets_the_supernode_left_whether_it_was_up_or_down()
    {
        var state = Empty
            .Apply(new SuperNodeRegistered(Alpha, T0))
            .Apply(new SuperNodeRegistered(Beta, T0))
            .Apply(new SuperNodeMarkedDown(Beta.SuperNodeId, T0.AddSeconds(7)))
            .Apply(new SuperNodeLeft(Alpha.SuperNodeId, T0.AddSeconds(8)))
            .Apply(new SuperNodeLeft(Beta.SuperNodeId, T0.AddSeconds(9)));

        Assert.Equal(SuperNodeStatus.Left, state.SuperNodes[Alpha.SuperNodeId].Status);
        Assert.Equal(SuperNodeStatus.Left, state.SuperNodes[Beta.SuperNodeId].Status);
    }

    [Fact]
    public void Marked_down_does_not_revive_a_supernode_that_left()
    {
        var state = Empty
            .Apply(new SuperNodeRegistered(Alpha, T0))
            .Apply(new SuperNodeLeft(Alpha.SuperNodeId, T0.AddSeconds(1)))
            .Apply(new SuperNodeMarkedDown(Alpha.SuperNodeId, T0.AddSeconds(7)));

        Assert.Equal(SuperNodeStatus.Left, state.SuperNodes[Alpha.SuperNodeId].Status);
    }

    [Fact]
    public void Events_for_an_unknown_supernode_change_nothing()
    {
        var state = Empty.Apply(new SuperNodeRegistered(Alpha, T0));

        Assert.Equal(state, state.Apply(new SuperNodeMarkedDown("sn-unknown", T0)));
        Assert.Equal(state, state.Apply(new SuperNodeLeft("sn-unknown", T0)));
    }

    [Fact]
    public void Re_registration_with_changed_info_replaces_the_info_and_registration_time()
    {
        var moved = Alpha with { GrpcEndpoint = "10.0.0.9:7443", Capacity = 800 };

        var state = Empty
            .Apply(new SuperNodeRegistered(Alpha, T0))
            .Apply(new SuperNodeRegistered(moved, T0.AddMinutes(1)));

        Assert.Equal(new SuperNodeRecord(moved, SuperNodeStatus.Up, T0.AddMinutes(1)), Assert.Single(state.SuperNodes).Value);
    }

    [Theory]
    [InlineData(SuperNodeStatus.Down)]
    [InlineData(SuperNodeStatus.Left)]
    public void Registered_again_after_down_or_left_is_up(SuperNodeStatus before)
    {
        var state = Empty
            .Apply(new SuperNodeRegistered(Alpha, T0))
            .Apply(before == SuperNodeStatus.Down
                ? new SuperNodeMarkedDown(Alpha.SuperNodeId, T0.AddSeconds(7))
                : new SuperNodeLeft(Alpha.SuperNodeId, T0.AddSeconds(7)))
            .Apply(new SuperNodeRegistered(Alpha, T0.AddSeconds(10)));

        Assert.Equal(new SuperNodeRecord(Alpha, SuperNodeStatus.Up, T0.AddSeconds(10)), state.SuperNodes[Alpha.SuperNodeId]);
    }

    [Fact]
    public void Report_of_a_new_supernode_registers_it()
    {
        Assert.Equal(new SuperNodeRegistered(Alpha, T0), Empty.DecideReport(Alpha, T0));
    }

    [Fact]
    public void Report_of_an_up_supernode_with_unchanged_info_causes_no_event()
    {
        var state = Empty.Apply(new SuperNodeRegistered(Alpha, T0));

        Assert.Null(state.DecideReport(Alpha with { }, T0.AddSeconds(2)));
    }

    [Fact]
    public void Report_with_any_changed_field_registers_again()
    {
        var state = Empty.Apply(new SuperNodeRegistered(Alpha, T0));
        var changed = new[]
        {
            Alpha with { GrpcEndpoint = "10.0.0.9:7443" },
            Alpha with { PublicIp = "203.0.113.9" },
            Alpha with { RelayPortLow = 40001 },
            Alpha with { RelayPortHigh = 40998 },
            Alpha with { Capacity = 501 },
        };

        foreach (var info in changed)
        {
            Assert.Equal(new SuperNodeRegistered(info, T0.AddSeconds(2)), state.DecideReport(info, T0.AddSeconds(2)));
        }
    }

    [Theory]
    [InlineData(SuperNodeStatus.Down)]
    [InlineData(SuperNodeStatus.Left)]
    public void Report_of_a_down_or_left_supernode_registers_it_again(SuperNodeStatus status)
    {
        var state = Empty with
        {
            SuperNodes = ImmutableDictionary<string, SuperNodeRecord>.Empty
                .Add(Alpha.SuperNodeId, new SuperNodeRecord(Alpha, status, T0)),
        };

        Assert.Equal(new SuperNodeRegistered(Alpha, T0.AddSeconds(9)), state.DecideReport(Alpha, T0.AddSeconds(9)));
    }

    [Fact]
    public void Deregister_of_an_unknown_or_already_left_supernode_causes_no_event()
    {
        var state = Empty
            .Apply(new SuperNodeRegistered(Alpha, T0))
            .Apply(new SuperNodeLeft(Alpha.SuperNodeId, T0.AddSeconds(1)));

        Assert.Null(state.DecideDeregister(Alpha.SuperNodeId, T0.AddSeconds(2)));
        Assert.Null(state.DecideDeregister("sn-unknown", T0.AddSeconds(2)));
    }

    [Fact]
    public void Deregister_of_an_up_or_down_supernode_makes_it_leave()
    {
        var state = Empty
            .Apply(new SuperNodeRegistered(Alpha, T0))
            .Apply(new SuperNodeRegistered(Beta, T0))
            .Apply(new SuperNodeMarkedDown(Beta.SuperNodeId, T0.AddSeconds(7)));

        Assert.Equal(new SuperNodeLeft(Alpha.SuperNodeId, T0.AddSeconds(8)), state.DecideDeregister(Alpha.SuperNodeId, T0.AddSeconds(8)));
        Assert.Equal(new SuperNodeLeft(Beta.SuperNodeId, T0.AddSeconds(8)), state.DecideDeregister(Beta.SuperNodeId, T0.AddSeconds(8)));
    }

    [Fact]
    public void Only_up_supernodes_silent_longer_than_the_grace_are_marked_down()
    {
        var gamma = Alpha with { SuperNodeId = "sn-gamma" };
        var state = Empty
            .Apply(new SuperNodeRegistered(Alpha, T0))
            .Apply(new SuperNodeRegistered(Beta, T0))
            .Apply(new SuperNodeRegistered(gamma, T0))
            .Apply(new SuperNodeMarkedDown(gamma.SuperNodeId, T0.AddSeconds(7)));
        var now = T0.AddSeconds(10);
        var lastReports = new Dictionary<string, DateTimeOffset>
        {
            [Alpha.SuperNodeId] = now.AddSeconds(-7), // silent too long
            [Beta.SuperNodeId] = now.AddSeconds(-6), // exactly the grace: still up
            [gamma.SuperNodeId] = now.AddSeconds(-60), // already down
        };

        var downs = state.DecideSilent(id => lastReports.TryGetValue(id, out var at) ? at : null, now, TimeSpan.FromSeconds(6));

        Assert.Equal([new SuperNodeMarkedDown(Alpha.SuperNodeId, now)], downs);
    }

    [Fact]
    public void States_with_equal_contents_are_equal()
    {
        var a = Empty.Apply(new SuperNodeRegistered(Alpha, T0)).Apply(new SuperNodeRegistered(Beta, T0));
        var b = Empty.Apply(new SuperNodeRegistered(Beta, T0)).Apply(new SuperNodeRegistered(Alpha, T0));

        Assert.Equal(a, b);
        Assert.NotEqual(a, b.Apply(new SuperNodeLeft(Beta.SuperNodeId, T0)));
        Assert.NotEqual(a, DirectoryState.Empty("us-east") with { SuperNodes = a.SuperNodes });
    }
}
