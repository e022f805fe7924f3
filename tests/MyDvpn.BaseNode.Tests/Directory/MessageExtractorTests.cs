using MyDvpn.BaseNode.Directory;

namespace MyDvpn.BaseNode.Tests.Directory;

public sealed class MessageExtractorTests
{
    private static readonly SuperNodeInfo Info = new("sn-1", "eu-west", "10.0.0.1:7443", "203.0.113.1", 40000, 40999, 100);

    private static readonly object[] MessagesForEuWest =
    [
        new ReportSuperNode(Info, new SuperNodeLoad(1, 2)),
        new DeregisterSuperNode("eu-west", "sn-1"),
        new GetRegion("eu-west"),
    ];

    public static TheoryData<object> RegionMessages() => new(MessagesForEuWest);

    [Theory]
    [MemberData(nameof(RegionMessages))]
    public void Directory_entity_id_is_the_region(object message)
    {
        var extractor = new DirectoryMessageExtractor();

        Assert.Equal("eu-west", extractor.EntityId(message));
        Assert.Same(message, extractor.EntityMessage(message));
    }

    [Fact]
    public void Messages_of_one_region_go_to_one_shard_within_the_fixed_shard_count()
    {
        var extractor = new DirectoryMessageExtractor();
        var shardIds = MessagesForEuWest.Select(m => extractor.ShardId(extractor.EntityId(m)!, m)).Distinct().ToList();

        var shardId = Assert.Single(shardIds);
        Assert.InRange(int.Parse(shardId, System.Globalization.CultureInfo.InvariantCulture), 0, DirectoryMessageExtractor.ShardCount - 1);
    }

    public static TheoryData<object> UnknownMessages() => ["hello", 42, new AddRegion("eu-west")];

    [Theory]
    [MemberData(nameof(UnknownMessages))]
    public void Directory_extractor_returns_null_for_unknown_messages(object message)
    {
        Assert.Null(new DirectoryMessageExtractor().EntityId(message));
    }

    [Fact]
    public void Region_index_commands_go_to_the_single_regions_entity()
    {
        var extractor = new RegionIndexMessageExtractor();

        Assert.Equal("regions", extractor.EntityId(new AddRegion("eu-west")));
        Assert.Equal("regions", extractor.EntityId(GetRegionNames.Instance));
        Assert.Equal(RegionIndexEntity.EntityId, "regions");
    }

    [Fact]
    public void Region_index_extractor_returns_null_for_unknown_messages()
    {
        var extractor = new RegionIndexMessageExtractor();

        Assert.Null(extractor.EntityId("hello"));
        Assert.Null(extractor.EntityId(new GetRegion("eu-west")));
    }

    [Fact]
    public void Entity_type_names_are_stable()
    {
        Assert.Equal("directory", DirectoryEntityTypes.Directory);
        Assert.Equal("directory-region-index", DirectoryEntityTypes.RegionIndex);
    }
}
