using System.Collections.Immutable;

namespace MyDvpn.BaseNode.Directory;

/// <summary>The persisted part of one SuperNode's entry: load and last report time live in memory only.</summary>
public sealed record SuperNodeRecord(SuperNodeInfo Info, SuperNodeStatus Status, DateTimeOffset RegisteredAt);

/// <summary>
/// The durable state of one region's directory: its SuperNodes by id. Pure: <see cref="Apply"/> folds an event into
/// a new state and the <c>Decide…</c> methods turn a command into the events it causes; neither does any I/O.
/// </summary>
public sealed record DirectoryState(string Region, ImmutableDictionary<string, SuperNodeRecord> SuperNodes)
{
    public static DirectoryState Empty(string region) =>
        new(region, ImmutableDictionary<string, SuperNodeRecord>.Empty);

    public DirectoryState Apply(IDirectoryEvent evt) => evt switch
    {
        SuperNodeRegistered e => this with
        {
            SuperNodes = SuperNodes.SetItem(
                e.Info.SuperNodeId,
                new SuperNodeRecord(e.Info, SuperNodeStatus.Up, e.At)),
        },
        SuperNodeMarkedDown e => WithStatus(e.SuperNodeId, SuperNodeStatus.Down, from: SuperNodeStatus.Up),
        SuperNodeLeft e => WithStatus(e.SuperNodeId, SuperNodeStatus.Left, from: null),
        _ => throw new ArgumentException($"Unknown directory event {evt.GetType().Name}", nameof(evt)),
    };

    /// <summary>
    /// A report registers the SuperNode when it is new, when any field of its info changed, or when it was down or
    /// gone; a report of an Up SuperNode with unchanged info causes no event (only its in-memory load changes).
    /// </summary>
    public SuperNodeRegistered? DecideReport(SuperNodeInfo info, DateTimeOffset now) =>
        SuperNodes.TryGetValue(info.SuperNodeId, out var known)
        && known.Status == SuperNodeStatus.Up
        && known.Info == info
            ? null
            : new SuperNodeRegistered(info, now);

    /// <summary>A SuperNode that is known and has not left yet leaves; anything else causes no event.</summary>
    public SuperNodeLeft? DecideDeregister(string superNodeId, DateTimeOffset now) =>
        SuperNodes.TryGetValue(superNodeId, out var known) && known.Status != SuperNodeStatus.Left
            ? new SuperNodeLeft(superNodeId, now)
            : null;

    /// <summary>
    /// Every Up SuperNode whose last report (null: none known) is older than <paramref name="downAfter"/> is marked
    /// down, in id order.
    /// </summary>
    public ImmutableList<SuperNodeMarkedDown> DecideSilent(
        Func<string, DateTimeOffset?> lastReportAt,
        DateTimeOffset now,
        TimeSpan downAfter) =>
        SuperNodes.Values
            .Where(n => n.Status == SuperNodeStatus.Up
                        && (lastReportAt(n.Info.SuperNodeId) is not { } last || now - last > downAfter))
            .OrderBy(n => n.Info.SuperNodeId, StringComparer.Ordinal)
            .Select(n => new SuperNodeMarkedDown(n.Info.SuperNodeId, now))
            .ToImmutableList();

    /// <summary>Value equality over the SuperNodes' contents (the dictionary itself compares by reference).</summary>
    public bool Equals(DirectoryState? other) =>
        other is not null
        && Region == other.Region
        && SuperNodes.Count == other.SuperNodes.Count
        && SuperNodes.All(kv => other.SuperNodes.TryGetValue(kv.Key, out var o) && o == kv.Value);

    public override int GetHashCode() => HashCode.Combine(Region, SuperNodes.Count);

    /// <summary>The form this state is stored in as a snapshot (see <see cref="DirectorySnapshot"/>).</summary>
    public DirectorySnapshot ToSnapshot() =>
        new(Region, SuperNodes.Values.OrderBy(n => n.Info.SuperNodeId, StringComparer.Ordinal).ToImmutableList());

    public static DirectoryState FromSnapshot(DirectorySnapshot snapshot) =>
        new(snapshot.Region, snapshot.SuperNodes.ToImmutableDictionary(n => n.Info.SuperNodeId));

    private DirectoryState WithStatus(string superNodeId, SuperNodeStatus status, SuperNodeStatus? from) =>
        SuperNodes.TryGetValue(superNodeId, out var known) && (from is null || known.Status == from)
            ? this with { SuperNodes = SuperNodes.SetItem(superNodeId, known with { Status = status }) }
            : this;
}

/// <summary>
/// A <see cref="DirectoryState"/> as stored in the snapshot store. Akka's default JSON serializer (Newtonsoft with
/// reference preservation) cannot read an <see cref="ImmutableDictionary{TKey,TValue}"/> back, but it round-trips an
/// <see cref="ImmutableList{T}"/>; the list is ordered by SuperNode id.
/// </summary>
public sealed record DirectorySnapshot(string Region, ImmutableList<SuperNodeRecord> SuperNodes);
