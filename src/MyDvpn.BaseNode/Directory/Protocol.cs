using System.Collections.Immutable;

namespace MyDvpn.BaseNode.Directory;

/// <summary>A message addressed to the directory entity of one region (the sharding key).</summary>
public interface IWithRegion
{
    string Region { get; }
}

/// <summary>What a SuperNode tells the directory about itself; any change of a field is a re-registration.</summary>
public sealed record SuperNodeInfo(
    string SuperNodeId,
    string Region,
    string GrpcEndpoint,
    string PublicIp,
    int RelayPortLow,
    int RelayPortHigh,
    int Capacity);

/// <summary>The load a SuperNode reports every few seconds. Kept in memory only, never persisted.</summary>
public sealed record SuperNodeLoad(int ConnectedPeers, int ExitsAvailable)
{
    public static readonly SuperNodeLoad None = new(0, 0);
}

public enum SuperNodeStatus
{
    Up,
    Down,
    Left,
}

/// <summary>
/// One SuperNode as the directory sees it. <see cref="Load"/> is <see cref="SuperNodeLoad.None"/> unless the
/// SuperNode is <see cref="SuperNodeStatus.Up"/>. <see cref="RegisteredAt"/> is the time of the latest
/// (re-)registration.
/// </summary>
public sealed record SuperNodeView(
    SuperNodeInfo Info,
    SuperNodeLoad Load,
    SuperNodeStatus Status,
    DateTimeOffset RegisteredAt,
    DateTimeOffset LastReportAt);

/// <summary>Registers a SuperNode or refreshes its load. Reply: <see cref="ReportAccepted"/>.</summary>
public sealed record ReportSuperNode(SuperNodeInfo Info, SuperNodeLoad Load) : IWithRegion
{
    public string Region => Info.Region;
}

public sealed record ReportAccepted(string Region, string SuperNodeId);

/// <summary>
/// A SuperNode left its region's cluster. Reply: <see cref="SuperNodeDeregistered"/>, also when the SuperNode is
/// unknown or already gone (idempotent).
/// </summary>
public sealed record DeregisterSuperNode(string Region, string SuperNodeId) : IWithRegion;

public sealed record SuperNodeDeregistered(string Region, string SuperNodeId);

/// <summary>Reply: <see cref="RegionView"/>.</summary>
public sealed record GetRegion(string Region) : IWithRegion;

/// <summary>A region's SuperNodes, ordered by <see cref="SuperNodeInfo.SuperNodeId"/>.</summary>
public sealed record RegionView(string Region, ImmutableList<SuperNodeView> SuperNodes);

/// <summary>A message for the region index (one entity, <see cref="RegionIndexEntity.EntityId"/>).</summary>
public interface IRegionIndexCommand
{
}

/// <summary>Reply: <see cref="RegionAdded"/>. Idempotent; persists only when the region is new.</summary>
public sealed record AddRegion(string Region) : IRegionIndexCommand;

public sealed record RegionAdded(string Region);

/// <summary>Reply: <see cref="RegionNames"/>.</summary>
public sealed record GetRegionNames : IRegionIndexCommand
{
    public static readonly GetRegionNames Instance = new();
}

public sealed record RegionNames(ImmutableSortedSet<string> Regions);
