using System.Collections.Immutable;
using MyDvpn.Common;

namespace MyDvpn.Peer.Control;

/// <summary>
/// The SuperNodes a peer may dial: those configured with <c>--supernode</c>, merged with the region's list from the
/// latest AuthResponse. <see cref="Current"/> is the one to dial next: the last good one until it fails, then the
/// next in turn. An immutable value: moving on and learning give a new rotation.
/// </summary>
public sealed record SuperNodeRotation
{
    public SuperNodeRotation(IReadOnlyList<HostPort> configured)
    {
        if (configured.Count == 0)
            throw new ArgumentException("at least one SuperNode is needed", nameof(configured));
        Configured = [.. configured];
        Known = [.. configured.Distinct()];
    }

    public HostPort Current => Known[Index];

    public IReadOnlyList<HostPort> Endpoints => Known;

    private ImmutableArray<HostPort> Configured { get; init; }

    private ImmutableArray<HostPort> Known { get; init; }

    private int Index { get; init; }

    /// <summary>The current SuperNode failed: the next one is tried.</summary>
    public SuperNodeRotation MoveNext() => this with { Index = (Index + 1) % Known.Length };

    /// <summary>
    /// Takes the region's SuperNodes from an AuthResponse: the list becomes the configured ones plus these (the
    /// latest list replaces the one learned before). The current SuperNode stays current and stays listed even if
    /// the region's list leaves it out, since it is the last good one.
    /// </summary>
    public SuperNodeRotation Learn(IEnumerable<HostPort> region)
    {
        var current = Current;
        var merged = Configured.Concat(region).Distinct().ToList();
        var at = merged.IndexOf(current);
        if (at < 0)
        {
            merged.Insert(0, current);
            at = 0;
        }
        return this with { Known = [.. merged], Index = at };
    }

    public bool Equals(SuperNodeRotation? other) =>
        other is not null && Index == other.Index && Known.SequenceEqual(other.Known) && Configured.SequenceEqual(other.Configured);

    public override int GetHashCode() => HashCode.Combine(Current, Known.Length);
}
