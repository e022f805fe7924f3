using Akka.Event;
using Akka.Persistence;

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
/// <param name="log">The entity's log.</param>
/// <param name="name">How the log names the entity, e.g. <c>Session of peer laptop-1</c>.</param>
public sealed class Snapshots(Eventsourced entity, int every, ILoggingAdapter log, string name)
{
    private readonly int _every = every >= 1 ? every : throw new ArgumentOutOfRangeException(nameof(every), every, "must be at least 1");

    /// <summary>Hands the offered snapshot to <paramref name="restore"/>; one of another type is logged and ignored.</summary>
    public void Restore<TSnapshot>(SnapshotOffer offer, Action<TSnapshot> restore)
    {
        if (offer.Snapshot is TSnapshot snapshot)
            restore(snapshot);
        else
            log.Warning("{0}: ignoring a snapshot of unknown type {1}", name, offer.Snapshot.GetType());
    }

    /// <summary>Saves <paramref name="snapshot"/>'s result when the event just persisted is the Nth since the last snapshot.</summary>
    public void AfterPersisted(Func<object> snapshot)
    {
        if (entity.LastSequenceNr % _every == 0)
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
                log.Warning(failure.Cause, "{0}: saving a snapshot at {1} failed", name, failure.Metadata.SequenceNr);
                return true;
            case DeleteSnapshotsSuccess:
                return true;
            case DeleteSnapshotsFailure failure:
                log.Warning(failure.Cause, "{0}: deleting old snapshots failed", name);
                return true;
            default:
                return false;
        }
    }
}
