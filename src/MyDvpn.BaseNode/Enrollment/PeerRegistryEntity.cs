using Akka.Actor;
using Akka.Persistence;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace MyDvpn.BaseNode.Enrollment;

/// <summary>
/// The peers enrolled in every region and when SuperNodes last saw them (sharded entity type
/// <see cref="EnrollmentEntityTypes.PeerRegistry"/>, a single entity <see cref="EntityId"/>): what <c>admin peers</c>
/// lists, offline peers too, and what <c>admin revoke</c> checks a peer id against. Told, never asked to record: an
/// enrollment or a SuperNode's report does not wait for it, and its writes are batched (<c>PersistAsync</c>), so what it
/// answers may lag a write in flight. A snapshot every <c>snapshotEvery</c> events keeps recovery short.
/// </summary>
public sealed class PeerRegistryEntity : ReceivePersistentActor
{
    public const string EntityId = "peers";
    public const int DefaultSnapshotEvery = 200;

    private readonly TimeProvider _time;
    private readonly Hosting.Snapshots _snapshots;

    private PeerRegistryState _state = PeerRegistryState.Empty;

    public PeerRegistryEntity(TimeProvider time, int snapshotEvery, ILogger logger)
    {
        _time = time;
        _snapshots = new Hosting.Snapshots(this, snapshotEvery, logger, "Peer registry");

        Recover<SnapshotOffer>(offer => _snapshots.Restore<EnrolledPeers>(offer, snapshot => _state = PeerRegistryState.FromSnapshot(snapshot)));
        Recover<PeerEnrollmentRecorded>(evt => _state = _state.Apply(evt));
        Recover<PeersSighted>(evt => _state = _state.Apply(evt));

        Command<RecordEnrollment>(record =>
        {
            if (_state.DecideEnrollment(record, _time.GetUtcNow()) is { } recorded)
                PersistAsync(recorded, evt => Persisted(_state.Apply(evt)));
        });
        Command<RecordSightings>(record =>
        {
            if (_state.DecideSightings(record) is { } sighted)
                PersistAsync(sighted, evt => Persisted(_state.Apply(evt)));
        });
        Command<GetEnrolledPeers>(_ => Sender.Tell(new EnrolledPeers([.. _state.Peers.Values])));
        Command<GetEnrolledPeer>(get => Sender.Tell(new EnrolledPeerOf(get.PeerId, _state.Of(get.PeerId).FirstOrDefault())));
        Command<GetPeerCounts>(_ => Sender.Tell(_state.Counts()));
        Command<ISnapshotResponse>(_snapshots.Handle);
    }

    public override string PersistenceId => "enrollment-peer-registry";

    public static Props Props(TimeProvider? timeProvider = null, int snapshotEvery = DefaultSnapshotEvery, ILogger? logger = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(snapshotEvery, 1);
        var time = timeProvider ?? TimeProvider.System;
        var log = logger ?? NullLogger.Instance;
        return Akka.Actor.Props.Create(() => new PeerRegistryEntity(time, snapshotEvery, log));
    }

    private void Persisted(PeerRegistryState state)
    {
        _state = state;
        _snapshots.AfterPersisted(_state.ToSnapshot);
    }
}
