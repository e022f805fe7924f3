using System.Collections.Immutable;

namespace MyDvpn.BaseNode.Enrollment;

/// <summary>
/// Every change of the revocation list in version order (versions are 1, 2, 3, … without gaps: a revocation, or a
/// revocation taken back), and the peers revoked now by peer id. Pure: <see cref="Apply(PeerRevoked)"/> folds an event
/// in, <see cref="DecideRevoke"/> and <see cref="DecideUnrevoke"/> turn a command into an event or none.
/// </summary>
public sealed record RevocationsState(
    ImmutableList<RevocationEntry> ByVersion,
    ImmutableDictionary<string, RevocationEntry> ByPeer)
{
    public static readonly RevocationsState Empty = new(
        ImmutableList<RevocationEntry>.Empty,
        ImmutableDictionary.Create<string, RevocationEntry>(StringComparer.Ordinal));

    /// <summary>The highest version; 0 when nobody is revoked.</summary>
    public long Version => ByVersion.Count;

    public RevocationsState Apply(PeerRevoked evt)
    {
        var entry = new RevocationEntry(evt.PeerId, CheckNext(evt.PeerId, evt.Version), evt.At);
        return new RevocationsState(ByVersion.Add(entry), ByPeer.SetItem(evt.PeerId, entry));
    }

    public RevocationsState Apply(PeerUnrevoked evt) =>
        new(ByVersion.Add(new RevocationEntry(evt.PeerId, CheckNext(evt.PeerId, evt.Version), evt.At, Unrevoked: true)), ByPeer.Remove(evt.PeerId));

    /// <summary>A peer not yet revoked gets the next version; a revoked one causes no event.</summary>
    public PeerRevoked? DecideRevoke(string peerId, DateTimeOffset now) =>
        ByPeer.ContainsKey(peerId) ? null : new PeerRevoked(peerId, Version + 1, now);

    /// <summary>A revoked peer's revocation is taken back with the next version; a peer not revoked causes no event.</summary>
    public PeerUnrevoked? DecideUnrevoke(string peerId, string by, DateTimeOffset now) =>
        ByPeer.ContainsKey(peerId) ? new PeerUnrevoked(peerId, Version + 1, now, by) : null;

    /// <summary>The peers revoked now, in the order of their revocations.</summary>
    public ImmutableList<RevocationEntry> Revoked => [.. ByPeer.Values.OrderBy(r => r.Version)];

    private long CheckNext(string peerId, long version) =>
        // Versions are what SuperNodes catch up by; a gap or a repeat would make them skip or replay entries.
        version == Version + 1
            ? version
            : throw new InvalidOperationException($"The revocation change of {peerId} has version {version}; the next version is {Version + 1}");

    /// <summary>The revocations with a version above <paramref name="version"/>, in version order.</summary>
    public ImmutableList<RevocationEntry> After(long version) =>
        version <= 0 ? ByVersion
        : version >= Version ? ImmutableList<RevocationEntry>.Empty
        : ByVersion.GetRange((int)version, ByVersion.Count - (int)version);

    /// <summary>Value equality over the contents (the collections themselves compare by reference).</summary>
    public bool Equals(RevocationsState? other) => other is not null && ByVersion.SequenceEqual(other.ByVersion);

    public override int GetHashCode() => ByVersion.Count;

    /// <summary>The form this state is stored in as a snapshot (see <see cref="RevocationsSnapshot"/>).</summary>
    public RevocationsSnapshot ToSnapshot() => new(ByVersion);

    public static RevocationsState FromSnapshot(RevocationsSnapshot snapshot) =>
        snapshot.Revocations.Aggregate(Empty, (state, r) => r.Unrevoked
            ? state.Apply(new PeerUnrevoked(r.PeerId, r.Version, r.At, ""))
            : state.Apply(new PeerRevoked(r.PeerId, r.Version, r.At)));
}

/// <summary>
/// A <see cref="RevocationsState"/> as stored in the snapshot store: the list in version order (Akka's default JSON
/// serializer round-trips an <see cref="ImmutableList{T}"/>, not an <see cref="ImmutableDictionary{TKey,TValue}"/>).
/// </summary>
public sealed record RevocationsSnapshot(ImmutableList<RevocationEntry> Revocations);
