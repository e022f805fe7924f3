using Akka.Cluster.Sharding;

namespace MyDvpn.BaseNode.Directory;

/// <summary>Names of the directory's sharded entity types.</summary>
public static class DirectoryEntityTypes
{
    public const string Directory = "directory";
    public const string RegionIndex = "directory-region-index";
}

/// <summary>Routes <see cref="IWithRegion"/> messages to the region's <see cref="DirectoryEntity"/>.</summary>
public sealed class DirectoryMessageExtractor : HashCodeMessageExtractor
{
    public const int ShardCount = 50;

    public DirectoryMessageExtractor()
        : base(ShardCount)
    {
    }

    public override string? EntityId(object message) => message switch
    {
        IWithRegion withRegion => withRegion.Region,
        _ => null,
    };
}

/// <summary>Routes every <see cref="IRegionIndexCommand"/> to the single <see cref="RegionIndexEntity"/>.</summary>
public sealed class RegionIndexMessageExtractor : HashCodeMessageExtractor
{
    public RegionIndexMessageExtractor()
        : base(maxNumberOfShards: 1)
    {
    }

    public override string? EntityId(object message) => message switch
    {
        IRegionIndexCommand => RegionIndexEntity.EntityId,
        _ => null,
    };
}
