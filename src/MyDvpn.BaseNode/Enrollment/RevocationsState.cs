using System.Collections.Immutable;

namespace MyDvpn.BaseNode.Enrollment;

/// <summary>
/// Every revoked peer, in version order (versions are 1, 2, 3, … without gaps), and by peer id. Pure:
/// <see cref="Apply"/> folds an event in, <see cref="DecideRevoke"/> turns a revocation into an event or none.
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
        if (evt.Version != Version + 1)
        {
            // Versions are what SuperNodes catch up by; a gap or a repeat would make them skip or replay entries.
            throw new InvalidOperationException(
                $"Revocation of {evt.PeerId} has version {evt.Version}; the next version is {Version + 1}");
        }

        var entry = new RevocationEntry(evt.PeerId, evt.Version, evt.At);
        return new RevocationsState(ByVersion.Add(entry), ByPeer.SetItem(evt.PeerId, entry));
    }

    /// <summary>A peer not yet revoked gets the next version; a revoked one causes no event.</summary>
    public PeerRevoked? DecideRevoke(string peerId, DateTimeOffset now) =>
        ByPeer.ContainsKey(peerId) ? null : new PeerRevoked(peerId, Version + 1, now);

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
        snapshot.Revocations.Aggregate(Empty, (state, r) => state.Apply(new PeerRevoked(r.PeerId, r.Version, r.At)));
}

/// <summary>
/// A <see cref="RevocationsState"/> as stored in the snapshot store: the list in version order (Akka's default JSON
/// serializer round-trips an <see cref="ImmutableList{T}"/>, not an <see cref="ImmutableDictionary{TKey,TValue}"/>).
/// </summary>
public sealed record RevocationsSnapshot(ImmutableList<RevocationEntry> Revocations);
