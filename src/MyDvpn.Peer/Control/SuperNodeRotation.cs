using MyDvpn.Common;

namespace MyDvpn.Peer.Control;

/// <summary>
/// The SuperNodes a peer may dial: those configured with <c>--supernode</c>, merged with the region's list from the
/// latest AuthResponse. <see cref="Current"/> is the one to dial next: the last good one until it fails, then the
/// next in turn. Not thread-safe: one owner (the <see cref="ControlChannel"/>).
/// </summary>
public sealed class SuperNodeRotation
{
    private readonly IReadOnlyList<HostPort> configured;
    private List<HostPort> endpoints;
    private int index;

    public SuperNodeRotation(IReadOnlyList<HostPort> configured)
    {
        if (configured.Count == 0)
            throw new ArgumentException("at least one SuperNode is needed", nameof(configured));
        this.configured = configured;
        endpoints = [.. configured.Distinct()];
    }

    public HostPort Current => endpoints[index];

    public IReadOnlyList<HostPort> Endpoints => endpoints;

    /// <summary>The current SuperNode failed: the next one is tried.</summary>
    public void MoveNext() => index = (index + 1) % endpoints.Count;

    /// <summary>
    /// Takes the region's SuperNodes from an AuthResponse: the list becomes the configured ones plus these (the
    /// latest list replaces the one learned before). The current SuperNode stays current and stays listed even if
    /// the region's list leaves it out, since it is the last good one.
    /// </summary>
    public void Learn(IEnumerable<HostPort> region)
    {
        var current = Current;
        var merged = configured.Concat(region).Distinct().ToList();
        var at = merged.IndexOf(current);
        if (at < 0)
        {
            merged.Insert(0, current);
            at = 0;
        }
        endpoints = merged;
        index = at;
    }
}
