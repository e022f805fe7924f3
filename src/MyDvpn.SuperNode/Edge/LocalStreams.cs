using System.Collections.Concurrent;
using MyDvpn.Protocol.Control;

namespace MyDvpn.SuperNode.Edge;

/// <summary>What one open stream on this SuperNode looks like from outside (admin sessions).</summary>
public sealed record StreamInfo(
    string PeerId,
    PeerRole Role,
    string SessionId,
    string RemoteAddress,
    DateTimeOffset ConnectedSince,
    TimeSpan? LastRtt,
    int CommandsInFlight = 0,
    System.Collections.Immutable.ImmutableList<Exits.ExitAssignmentRecord>? Assignments = null);

/// <summary>
/// The streams this SuperNode holds. Each EdgeStream actor publishes its own entry (an immutable
/// record swapped whole) so the admin API can list them without asking every actor. A stream's first entry and its
/// removal are noted in <paramref name="sightings"/> (when given) for the directory.
/// </summary>
public sealed class LocalStreams(string superNodeId, string region, PeerSightings? sightings = null, TimeProvider? time = null)
{
    private readonly ConcurrentDictionary<string, StreamInfo> streams = new();
    private int opening;
    private int exits;

    public string SuperNodeId { get; } = superNodeId;
    public string Region { get; } = region;

    public int Count => streams.Count;

    /// <summary>The streams of peers that serve as exits (role exit or both): what the directory's report calls exits available here.</summary>
    public int Exits => Volatile.Read(ref exits);

    public IReadOnlyCollection<StreamInfo> Snapshot() => [.. streams.Values];

    public void Publish(StreamInfo info)
    {
        if (streams.TryAdd(info.SessionId, info))
        {
            if (ServesExits(info))
                Interlocked.Increment(ref exits);
            sightings?.Seen(info.PeerId, info.Role, info.ConnectedSince, connected: true);
        }
        else
        {
            // A stream's role is fixed at authentication: an update never changes the count.
            streams[info.SessionId] = info;
        }
    }

    public void Remove(string sessionId)
    {
        if (streams.TryRemove(sessionId, out var ended))
        {
            if (ServesExits(ended))
                Interlocked.Decrement(ref exits);
            sightings?.Seen(ended.PeerId, ended.Role, (time ?? TimeProvider.System).GetUtcNow(), connected: false);
        }
    }

    private static bool ServesExits(StreamInfo info) => info.Role is PeerRole.Exit or PeerRole.Both;

    /// <summary>Reserves a place for a stream being authenticated; false at capacity.</summary>
    public bool TryReserve(int capacity)
    {
        if (Interlocked.Increment(ref opening) + streams.Count > capacity)
        {
            Interlocked.Decrement(ref opening);
            return false;
        }
        return true;
    }

    public void Release() => Interlocked.Decrement(ref opening);
}
