using System.Collections.Immutable;
using MyDvpn.Common;

namespace MyDvpn.BaseNode.Enrollment;

/// <summary>
/// A peer the directory knows enrolled in a region: from its token's redemption (with the token and when) or, for a peer
/// enrolled before the directory kept this record, from a SuperNode that saw it connect (no token then).
/// </summary>
/// <param name="LastSeen">When a SuperNode last saw its stream authenticate or end (or it enrolled); null: never.</param>
/// <param name="Connected">The last a SuperNode said: its stream was open (true) or had ended (false).</param>
public sealed record EnrolledPeer(
    string PeerId,
    string Region,
    EnrollmentRole Role,
    string? TokenId,
    DateTimeOffset? EnrolledAt,
    DateTimeOffset? LastSeen,
    bool Connected);

/// <summary>
/// The peers enrolled in every region, by region and peer id (a peer id is a peer's within its region). Pure:
/// <see cref="Apply(PeerEnrollmentRecorded)"/> folds an event in, the <c>Decide…</c> methods turn a command into an event
/// or none (nothing new, or nothing valid).
/// </summary>
public sealed record PeerRegistryState(ImmutableSortedDictionary<(string Region, string PeerId), EnrolledPeer> Peers)
{
    public static readonly PeerRegistryState Empty = new(ImmutableSortedDictionary.Create<(string Region, string PeerId), EnrolledPeer>(
        Comparer<(string Region, string PeerId)>.Create((a, b) =>
            string.CompareOrdinal(a.Region, b.Region) is var byRegion and not 0 ? byRegion : string.CompareOrdinal(a.PeerId, b.PeerId))));

    /// <summary>Every enrollment of <paramref name="peerId"/>, in any region.</summary>
    public IEnumerable<EnrolledPeer> Of(string peerId) => Peers.Values.Where(p => p.PeerId == peerId);

    public PeerRegistryState Apply(PeerEnrollmentRecorded evt)
    {
        var key = (evt.Region, evt.PeerId);
        var known = Peers.GetValueOrDefault(key);
        return new PeerRegistryState(Peers.SetItem(key, new EnrolledPeer(evt.PeerId, evt.Region, evt.Role, evt.TokenId, evt.At,
            Later(known?.LastSeen, evt.At), known?.Connected ?? false)));
    }

    public PeerRegistryState Apply(PeersSighted evt) =>
        new(evt.Sightings.Aggregate(Peers, (peers, seen) =>
        {
            var key = (seen.Region, seen.PeerId);
            if (!peers.TryGetValue(key, out var known))
                return peers.SetItem(key, new EnrolledPeer(seen.PeerId, seen.Region, seen.Role, null, null, seen.At, seen.Connected));
            return known.LastSeen is { } last && last > seen.At ? peers : peers.SetItem(key, known with { LastSeen = seen.At, Connected = seen.Connected });
        }));

    /// <summary>The peers of each region by role, connected or not (<see cref="PeerCounts"/>), in region order.</summary>
    public PeerCounts Counts() =>
        new([.. Peers.Values
            .GroupBy(p => (p.Region, p.Role, p.Connected))
            .Select(g => new PeerCount(g.Key.Region, g.Key.Role, g.Key.Connected, g.Count()))]);

    /// <summary>An enrollment not recorded yet (with this token); null for one recorded already or one that is malformed.</summary>
    public PeerEnrollmentRecorded? DecideEnrollment(RecordEnrollment record, DateTimeOffset now)
    {
        if (!IsValid(record.PeerId, record.Region, record.Role) || !TokenCredential.IsTokenId(record.TokenId))
            return null;
        return Peers.TryGetValue((record.Region, record.PeerId), out var known) && known.TokenId == record.TokenId
            ? null
            : new PeerEnrollmentRecorded(record.PeerId, record.Region, record.Role, record.TokenId, now);
    }

    /// <summary>
    /// The sightings that tell something new (a peer not known, or seen later than recorded), of the reporting SuperNode's
    /// region only; null when none does.
    /// </summary>
    public PeersSighted? DecideSightings(RecordSightings record)
    {
        var news = record.Sightings
            .Where(s => s.Region == record.Region && IsValid(s.PeerId, s.Region, s.Role))
            // Within one report, the last word on each peer.
            .GroupBy(s => s.PeerId, StringComparer.Ordinal)
            .Select(g => g.OrderBy(s => s.At).Last())
            .Where(s => !Peers.TryGetValue((s.Region, s.PeerId), out var known) || known.LastSeen is not { } last || s.At >= last)
            .ToImmutableList();
        return news.IsEmpty ? null : new PeersSighted(news);
    }

    private static bool IsValid(string peerId, string region, EnrollmentRole role) =>
        NodeId.IsValid(peerId, out _) && RegionName.IsValid(region, out _) && role is EnrollmentRole.Client or EnrollmentRole.Exit or EnrollmentRole.Both;

    private static DateTimeOffset Later(DateTimeOffset? a, DateTimeOffset b) => a is { } known && known > b ? known : b;

    /// <summary>Value equality over the contents (the dictionary itself compares by reference).</summary>
    public bool Equals(PeerRegistryState? other) => other is not null && Peers.Values.SequenceEqual(other.Peers.Values);

    public override int GetHashCode() => Peers.Count;

    /// <summary>The form this state is stored in as a snapshot: the list (Akka's JSON serializer round-trips a list, not a dictionary).</summary>
    public EnrolledPeers ToSnapshot() => new([.. Peers.Values]);

    public static PeerRegistryState FromSnapshot(EnrolledPeers snapshot) =>
        new(snapshot.Peers.Aggregate(Empty.Peers, (peers, p) => peers.SetItem((p.Region, p.PeerId), p)));
}
