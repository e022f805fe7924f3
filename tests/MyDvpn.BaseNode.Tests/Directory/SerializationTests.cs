using System.Collections.Immutable;
using Akka.Serialization;
using MyDvpn.BaseNode.Directory;

namespace MyDvpn.BaseNode.Tests.Directory;

/// <summary>
/// Messages cross the BaseNode cluster and events/snapshots go to the journal through Akka's default serializer:
/// every one must come back equal (the SQLite recovery tests cover the stored path end to end).
/// </summary>
public sealed class SerializationTests : Akka.TestKit.Xunit2.TestKit
{
    private static readonly DateTimeOffset At = new(2030, 1, 1, 12, 0, 0, TimeSpan.FromHours(2));
    private static readonly SuperNodeInfo Info = new("sn-1", "eu-west", "10.0.0.1:7443", "203.0.113.1", 40000, 40999, 100);

    public static TheoryData<object> Records() =>
    [
        new ReportSuperNode(Info, new SuperNodeLoad(3, 1)),
        new ReportAccepted("eu-west", "sn-1"),
        new DeregisterSuperNode("eu-west", "sn-1"),
        new SuperNodeDeregistered("eu-west", "sn-1"),
        new GetRegion("eu-west"),
        new AddRegion("eu-west"),
        new RegionAdded("eu-west"),
        GetRegionNames.Instance,
        new SuperNodeRegistered(Info, At),
        new SuperNodeMarkedDown("sn-1", At),
        new SuperNodeLeft("sn-1", At),
        new RegionIndexed("eu-west"),
    ];

    [Theory]
    [MemberData(nameof(Records))]
    public void Record_round_trips_through_the_default_serializer(object message)
    {
        Assert.Equal(message, RoundTrip(message));
    }

    [Fact]
    public void Region_view_round_trips_with_its_immutable_list()
    {
        var view = new RegionView("eu-west", [
            new SuperNodeView(Info, new SuperNodeLoad(3, 1), SuperNodeStatus.Up, At, At.AddSeconds(2)),
            new SuperNodeView(Info with { SuperNodeId = "sn-2" }, SuperNodeLoad.None, SuperNodeStatus.Left, At, At),
        ]);

        var back = Assert.IsType<RegionView>(RoundTrip(view));

        Assert.Equal(view.Region, back.Region);
        Assert.Equal(view.SuperNodes, back.SuperNodes);
    }

    [Fact]
    public void Region_names_round_trip_with_their_sorted_set()
    {
        var names = new RegionNames(ImmutableSortedSet.Create(StringComparer.Ordinal, "us-east", "eu-west", "ap-1"));

        var back = Assert.IsType<RegionNames>(RoundTrip(names));

        Assert.Equal(["ap-1", "eu-west", "us-east"], back.Regions);
    }

    [Fact]
    public void Directory_state_round_trips_as_a_snapshot()
    {
        var state = DirectoryState.Empty("eu-west")
            .Apply(new SuperNodeRegistered(Info, At))
            .Apply(new SuperNodeRegistered(Info with { SuperNodeId = "sn-2" }, At))
            .Apply(new SuperNodeLeft("sn-2", At));

        var back = Assert.IsType<DirectorySnapshot>(RoundTrip(state.ToSnapshot()));
        var restored = DirectoryState.FromSnapshot(back);

        Assert.Equal(state, restored);
        Assert.Equal(SuperNodeStatus.Down, restored.Apply(new SuperNodeMarkedDown("sn-1", At)).SuperNodes["sn-1"].Status);
    }

    [Fact]
    public void Empty_directory_state_round_trips_as_a_snapshot()
    {
        var back = Assert.IsType<DirectorySnapshot>(RoundTrip(DirectoryState.Empty("eu-west").ToSnapshot()));

        Assert.Equal(DirectoryState.Empty("eu-west"), DirectoryState.FromSnapshot(back));
    }

    private object RoundTrip(object message)
    {
        var serializer = Sys.Serialization.FindSerializerFor(message);
        var bytes = serializer.ToBinary(message);
        return Sys.Serialization.Deserialize(bytes, serializer.Identifier, Serialization.ManifestFor(serializer, message));
    }
}
