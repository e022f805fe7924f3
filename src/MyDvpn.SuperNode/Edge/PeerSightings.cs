using Google.Protobuf.WellKnownTypes;
using MyDvpn.Protocol.Control;
using MyDvpn.Protocol.Directory;

namespace MyDvpn.SuperNode.Edge;

/// <summary>
/// The peers whose streams authenticated or ended on this SuperNode since the directory last acknowledged a report
/// (<see cref="LocalStreams"/> notes them, <see cref="DirectoryRegistrar"/> sends them): the last word on each peer, so
/// the directory knows when an offline peer was last seen. Bounded: past <see cref="MaxPending"/> peers a new one is
/// left out until a report goes through (its next connection or end is noted again). Thread-safe.
/// </summary>
public sealed class PeerSightings
{
    /// <summary>At most this many peers wait for a report: a SuperNode cut off from the directory for long stays small.</summary>
    public const int MaxPending = 100_000;

    private readonly Lock gate = new();
    private Dictionary<string, PeerSighting> pending = new(StringComparer.Ordinal);

    public int Pending
    {
        get
        {
            lock (gate)
                return pending.Count;
        }
    }

    public void Seen(string peerId, PeerRole role, DateTimeOffset at, bool connected)
    {
        var sighting = new PeerSighting { PeerId = peerId, Role = (int)role, At = Timestamp.FromDateTimeOffset(at), Connected = connected };
        lock (gate)
            Keep(pending, sighting);
    }

    /// <summary>Everything pending, for a report; <see cref="PutBack"/> it when the report fails.</summary>
    public IReadOnlyList<PeerSighting> Take()
    {
        lock (gate)
        {
            var taken = pending;
            pending = new Dictionary<string, PeerSighting>(StringComparer.Ordinal);
            return [.. taken.Values];
        }
    }

    /// <summary>A report that did not go through: its sightings wait for the next, unless a later one of the peer came since.</summary>
    public void PutBack(IEnumerable<PeerSighting> sightings)
    {
        lock (gate)
        {
            foreach (var sighting in sightings)
                Keep(pending, sighting);
        }
    }

    private static void Keep(Dictionary<string, PeerSighting> into, PeerSighting sighting)
    {
        if (into.TryGetValue(sighting.PeerId, out var known))
        {
            if (known.At.ToDateTimeOffset() <= sighting.At.ToDateTimeOffset())
                into[sighting.PeerId] = sighting;
        }
        else if (into.Count < MaxPending)
        {
            into[sighting.PeerId] = sighting;
        }
    }
}
