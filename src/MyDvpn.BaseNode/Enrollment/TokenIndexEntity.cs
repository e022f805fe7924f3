using System.Collections.Immutable;
using Akka.Actor;
using Akka.Persistence;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace MyDvpn.BaseNode.Enrollment;

/// <summary>
/// The ids of every enrollment token ever created, in the order they were (sharded entity type
/// <see cref="EnrollmentEntityTypes.TokenIndex"/>, a single entity <see cref="EntityId"/>): what <c>admin token list</c>
/// asks each token's <see cref="EnrollmentTokenEntity"/> about. An id is indexed before its token is created, so every
/// token is listed; an id whose creation failed lists as not existing and is left out. One event per token: a snapshot
/// every <c>snapshotEvery</c> keeps recovery short.
/// </summary>
public sealed class TokenIndexEntity : ReceivePersistentActor
{
    public const string EntityId = "tokens";
    public const int DefaultSnapshotEvery = 200;

    private readonly TimeProvider _time;
    private readonly Hosting.Snapshots _snapshots;

    private ImmutableList<string> _ids = [];

    public TokenIndexEntity(TimeProvider time, int snapshotEvery, ILogger logger)
    {
        _time = time;
        _snapshots = new Hosting.Snapshots(this, snapshotEvery, logger, "Token index");

        Recover<SnapshotOffer>(offer => _snapshots.Restore<TokenIds>(offer, snapshot => _ids = snapshot.Ids));
        Recover<TokenIndexed>(evt => _ids = _ids.Add(evt.TokenId));

        Command<IndexToken>(HandleIndex);
        Command<GetTokenIds>(_ => Sender.Tell(new TokenIds(_ids)));
        Command<ISnapshotResponse>(_snapshots.Handle);
    }

    public override string PersistenceId => "enrollment-token-index";

    public static Props Props(TimeProvider? timeProvider = null, int snapshotEvery = DefaultSnapshotEvery, ILogger? logger = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(snapshotEvery, 1);
        var time = timeProvider ?? TimeProvider.System;
        var log = logger ?? NullLogger.Instance;
        return Akka.Actor.Props.Create(() => new TokenIndexEntity(time, snapshotEvery, log));
    }

    private void HandleIndex(IndexToken index)
    {
        var sender = Sender;
        if (!TokenCredential.IsTokenId(index.TokenId))
        {
            // The edge makes the ids; anything else is a caller bug and must not enter the journal.
            sender.Tell(new Status.Failure(new ArgumentException($"'{index.TokenId}' is not a token id", nameof(index))));
            return;
        }

        // Ids are random: a repeat is the edge retrying. Looking it up is linear, and tokens are created by hand.
        if (_ids.Contains(index.TokenId))
        {
            sender.Tell(new TokenIdIndexed(index.TokenId));
            return;
        }

        Persist(new TokenIndexed(index.TokenId, _time.GetUtcNow()), evt =>
        {
            _ids = _ids.Add(evt.TokenId);
            _snapshots.AfterPersisted(() => new TokenIds(_ids));
            sender.Tell(new TokenIdIndexed(evt.TokenId));
        });
    }
}
