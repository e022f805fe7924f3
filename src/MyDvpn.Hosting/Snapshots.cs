using Akka.Persistence;
using Microsoft.Extensions.Logging;

namespace MyDvpn.Hosting;

/// <summary>
/// The snapshots of one persistent entity: restored from the snapshot offered at recovery, a new one saved every
/// <paramref name="every"/> events, the older ones deleted once it is saved, and the snapshot store's failures logged (the
/// journal still holds the events, so a failed snapshot only makes a later recovery longer).
/// <para>
/// The entity calls <see cref="Restore{TSnapshot}"/> from <c>Recover&lt;SnapshotOffer&gt;</c>, <see cref="AfterPersisted"/>
/// once it applied a persisted event, and registers <c>Command&lt;ISnapshotResponse&gt;(snapshots.Handle)</c>.
/// </para>
/// </summary>
/// <param name="entity">The entity whose snapshots these are.</param>
/// <param name="every">How many events between two snapshots (at least 1).</param>
/// <param name="warn">Logs a warning of the entity (its cause, a message template with <c>{Entity}</c> first, the arguments).</param>
/// <param name="name">How the log names the entity, e.g. <c>Session of peer laptop-1</c>.</param>
public sealed class Snapshots(Eventsourced entity, int every, Action<Exception?, string, object?[]> warn, string name)
{
    private readonly int _every = every >= 1 ? every : throw new ArgumentOutOfRangeException(nameof(every), every, "must be at least 1");

    /// <summary>Snapshots of an entity that logs through an <see cref="ILogger"/> (its scopes name it already).</summary>
    public Snapshots(Eventsourced entity, int every, ILogger log, string name)
#pragma warning disable CA2254 // The templates are this class's constants.
        : this(entity, every, (cause, template, args) => log.LogWarning(cause, template, args), name)
#pragma warning restore CA2254
    {
    }

    /// <summary>Hands the offered snapshot to <paramref name="restore"/>; one of another type is logged and ignored.</summary>
    public void Restore<TSnapshot>(SnapshotOffer offer, Action<TSnapshot> restore)
    {
        if (offer.Snapshot is TSnapshot snapshot)
            restore(snapshot);
        else
            warn(null, "{Entity}: ignoring a snapshot of unknown type {SnapshotType}", [name, offer.Snapshot.GetType()]);
    }

    /// <summary>Saves <paramref name="snapshot"/>'s result when the event just persisted is the Nth since the last snapshot.</summary>
    public void AfterPersisted(Func<object> snapshot) => AfterPersisted(1, snapshot);

    /// <summary>
    /// Saves <paramref name="snapshot"/>'s result (the state after all of them) when one of the <paramref name="events"/> just
    /// persisted together was the Nth since the last snapshot.
    /// </summary>
    public void AfterPersisted(int events, Func<object> snapshot)
    {
        if (entity.LastSequenceNr / _every != (entity.LastSequenceNr - events) / _every)
            entity.SaveSnapshot(snapshot());
    }

    /// <summary>The snapshot store's answers: a saved snapshot deletes the older ones; failures are logged. False for others.</summary>
    public bool Handle(ISnapshotResponse response)
    {
        switch (response)
        {
            case SaveSnapshotSuccess success:
                entity.DeleteSnapshots(new SnapshotSelectionCriteria(success.Metadata.SequenceNr - 1));
                return true;
            case SaveSnapshotFailure failure:
                warn(failure.Cause, "{Entity}: saving a snapshot at {SequenceNr} failed", [name, failure.Metadata.SequenceNr]);
                return true;
            case DeleteSnapshotsSuccess:
                return true;
            case DeleteSnapshotsFailure failure:
                warn(failure.Cause, "{Entity}: deleting old snapshots failed", [name]);
                return true;
            default:
                return false;
        }
    }
}
