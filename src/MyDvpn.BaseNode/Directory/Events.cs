namespace MyDvpn.BaseNode.Directory;

/// <summary>An event in a region's directory journal (<see cref="DirectoryEntity"/>).</summary>
public interface IDirectoryEvent
{
}

/// <summary>
/// A SuperNode registered: the first time, with changed <see cref="SuperNodeInfo"/>, or when it reports again
/// after being marked down or leaving.
/// </summary>
public sealed record SuperNodeRegistered(SuperNodeInfo Info, DateTimeOffset At) : IDirectoryEvent;

/// <summary>A SuperNode stopped reporting for longer than the grace period.</summary>
public sealed record SuperNodeMarkedDown(string SuperNodeId, DateTimeOffset At) : IDirectoryEvent;

/// <summary>A SuperNode left its region's cluster.</summary>
public sealed record SuperNodeLeft(string SuperNodeId, DateTimeOffset At) : IDirectoryEvent;

/// <summary>A region became known to the region index (<see cref="RegionIndexEntity"/>).</summary>
public sealed record RegionIndexed(string Region);
