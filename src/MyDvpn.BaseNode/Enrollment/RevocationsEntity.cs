using Akka.Actor;
using Akka.Persistence;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using MyDvpn.Common;
using MyDvpn.Hosting;

namespace MyDvpn.BaseNode.Enrollment;

/// <summary>
/// The cluster-wide list of revoked peers (sharded entity type <see cref="EnrollmentEntityTypes.Revocations"/>, a
/// single entity <see cref="EntityId"/>). A revocation taken back is one more change, so the journal only grows: a
/// snapshot every <c>snapshotEvery</c> events keeps recovery short.
/// </summary>
public sealed class RevocationsEntity : ReceivePersistentActor
{
    public const string EntityId = "revocations";
    public const int DefaultSnapshotEvery = 100;

    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private readonly Snapshots _snapshots;

    private RevocationsState _state = RevocationsState.Empty;

    public RevocationsEntity(TimeProvider time, int snapshotEvery, ILogger logger)
    {
        _time = time;
        _log = logger;
        _snapshots = new Snapshots(this, snapshotEvery, _log, "Revocations");

        Recover<SnapshotOffer>(offer =>
            _snapshots.Restore<RevocationsSnapshot>(offer, snapshot => _state = RevocationsState.FromSnapshot(snapshot)));
        Recover<PeerRevoked>(evt => _state = _state.Apply(evt));
        Recover<PeerUnrevoked>(evt => _state = _state.Apply(evt));

        Command<RevokePeer>(HandleRevoke);
        Command<UnrevokePeer>(HandleUnrevoke);
        Command<GetRevokedPeers>(_ => Sender.Tell(new RevokedPeers(_state.Revoked, _state.Version)));
        Command<GetRevocationsAfter>(get =>
            Sender.Tell(new RevocationsAfter(_state.After(get.Version), _state.Version)));
        Command<GetRevocationVersion>(_ => Sender.Tell(new RevocationVersion(_state.Version)));
        Command<GetRevocation>(get =>
            Sender.Tell(new RevocationOf(get.PeerId, _state.ByPeer.GetValueOrDefault(get.PeerId))));
        Command<ISnapshotResponse>(_snapshots.Handle);
    }

    public override string PersistenceId => EntityId;

    /// <param name="timeProvider">The clock for revocation times; the system clock when null.</param>
    /// <param name="logger">Where the entity logs, each revocation in a <c>peer_id</c> scope; nowhere when null.</param>
    public static Props Props(TimeProvider? timeProvider = null, int snapshotEvery = DefaultSnapshotEvery, ILogger? logger = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(snapshotEvery, 1);
        var time = timeProvider ?? TimeProvider.System;
        var log = logger ?? NullLogger.Instance;
        return Akka.Actor.Props.Create(() => new RevocationsEntity(time, snapshotEvery, log));
    }

    private void HandleRevoke(RevokePeer revoke)
    {
        var sender = Sender;
        if (!NodeId.IsValid(revoke.PeerId, out var problem))
        {
            // The edge validates first; an invalid id here is a caller bug and must not enter the journal.
            sender.Tell(new Status.Failure(new ArgumentException($"peer id '{revoke.PeerId}' {problem}", nameof(revoke))));
            return;
        }

        var revoked = _state.DecideRevoke(revoke.PeerId, _time.GetUtcNow());
        if (revoked is null)
        {
            sender.Tell(new PeerRevocationRecorded(_state.ByPeer[revoke.PeerId], AlreadyRevoked: true));
            return;
        }

        Persist(revoked, evt =>
        {
            _state = _state.Apply(evt);
            _snapshots.AfterPersisted(_state.ToSnapshot);

            using (_log.BeginScope(new LogScope(("peer_id", evt.PeerId))))
                _log.LogInformation("Peer {PeerId} revoked: revocation version {Version}", evt.PeerId, evt.Version);
            sender.Tell(new PeerRevocationRecorded(_state.ByPeer[evt.PeerId], AlreadyRevoked: false));
        });
    }

    private void HandleUnrevoke(UnrevokePeer unrevoke)
    {
        var sender = Sender;
        if (!NodeId.IsValid(unrevoke.PeerId, out var problem))
        {
            sender.Tell(new Status.Failure(new ArgumentException($"peer id '{unrevoke.PeerId}' {problem}", nameof(unrevoke))));
            return;
        }

        if (_state.DecideUnrevoke(unrevoke.PeerId, unrevoke.By, _time.GetUtcNow()) is not { } unrevoked)
        {
            sender.Tell(new PeerUnrevocationRecorded(unrevoke.PeerId, 0));
            return;
        }

        Persist(unrevoked, evt =>
        {
            _state = _state.Apply(evt);
            _snapshots.AfterPersisted(_state.ToSnapshot);

            using (_log.BeginScope(new LogScope(("peer_id", evt.PeerId))))
                _log.LogWarning("Security event: the revocation of peer {PeerId} was taken back by {Admin}: revocation version {Version}", evt.PeerId, evt.By,
                    evt.Version);
            sender.Tell(new PeerUnrevocationRecorded(evt.PeerId, evt.Version));
        });
    }
}
