using Akka.Actor;
using Akka.Persistence;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using MyDvpn.Hosting;

namespace MyDvpn.BaseNode.Certificates;

/// <summary>
/// The directory's certificate revocation list (sharded entity type <see cref="CrlEntityTypes.Crl"/>, a single entity
/// <see cref="EntityId"/>): the latest list the operator published, which SuperNodes fetch when their report's
/// acknowledgement shows a higher CRL number than theirs, and every BaseNode enforces (<see cref="CrlFollower"/>).
/// Each event holds a whole list, so a snapshot every <c>snapshotEvery</c> events keeps recovery to one list.
/// </summary>
public sealed class CrlEntity : ReceivePersistentActor
{
    public const string EntityId = "crl";
    public const int DefaultSnapshotEvery = 5;

    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private readonly Snapshots _snapshots;

    private CrlState _state = CrlState.Empty;

    public CrlEntity(TimeProvider time, int snapshotEvery, ILogger logger)
    {
        _time = time;
        _log = logger;
        _snapshots = new Snapshots(this, snapshotEvery, _log, "Certificate revocation list");

        Recover<SnapshotOffer>(offer => _snapshots.Restore<CrlState>(offer, snapshot => _state = snapshot));
        Recover<CrlPublished>(evt => _state = _state.Apply(evt));

        Command<PublishCrl>(HandlePublish);
        Command<GetCrl>(_ => Sender.Tell(new CurrentCrl(_state.Number, _state.Der)));
        Command<ISnapshotResponse>(_snapshots.Handle);
    }

    public override string PersistenceId => EntityId;

    /// <param name="timeProvider">The clock of publication times; the system clock when null.</param>
    /// <param name="logger">Where the entity logs; nowhere when null.</param>
    public static Props Props(TimeProvider? timeProvider = null, int snapshotEvery = DefaultSnapshotEvery, ILogger? logger = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(snapshotEvery, 1);
        var time = timeProvider ?? TimeProvider.System;
        var log = logger ?? NullLogger.Instance;
        return Akka.Actor.Props.Create(() => new CrlEntity(time, snapshotEvery, log));
    }

    private void HandlePublish(PublishCrl publish)
    {
        var sender = Sender;
        var (published, refusal) = _state.DecidePublish(publish.Number, publish.Der, _time.GetUtcNow());
        if (published is null)
        {
            sender.Tell(new CrlRefused(_state.Number, refusal));
            return;
        }

        Persist(published, evt =>
        {
            _state = _state.Apply(evt);
            _snapshots.AfterPersisted(() => _state);
            _log.LogInformation("Certificate revocation list number {Number} published", evt.Number);
            sender.Tell(new CrlRecorded(evt.Number));
        });
    }
}

/// <summary>Names of the certificate entities' sharded types.</summary>
public static class CrlEntityTypes
{
    public const string Crl = "crl";
}

/// <summary>Registry key of the CRL shard region.</summary>
public sealed class CrlShard;

/// <summary>Routes every <see cref="ICrlCommand"/> to the single <see cref="CrlEntity"/>.</summary>
public sealed class CrlMessageExtractor() : EntityMessageExtractor<ICrlCommand>(shardCount: 1, _ => CrlEntity.EntityId);
