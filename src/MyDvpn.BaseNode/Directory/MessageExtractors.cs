using MyDvpn.Hosting;

namespace MyDvpn.BaseNode.Directory;

/// <summary>Names of the directory's sharded entity types.</summary>
public static class DirectoryEntityTypes
{
    public const string Directory = "directory";
    public const string RegionIndex = "directory-region-index";
}

/// <summary>Routes <see cref="IWithRegion"/> messages to the region's <see cref="DirectoryEntity"/>.</summary>
public sealed class DirectoryMessageExtractor() : EntityMessageExtractor<IWithRegion>(ShardCount, message => message.Region)
{
    public const int ShardCount = 50;
}

/// <summary>Routes every <see cref="IRegionIndexCommand"/> to the single <see cref="RegionIndexEntity"/>.</summary>
public sealed class RegionIndexMessageExtractor() : EntityMessageExtractor<IRegionIndexCommand>(shardCount: 1, _ => RegionIndexEntity.EntityId);
