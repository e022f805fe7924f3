using Akka.Actor;
using Akka.Persistence;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using MyDvpn.Hosting;

namespace MyDvpn.BaseNode.Enrollment;

/// <summary>
/// One enrollment token (sharded entity type <see cref="EnrollmentEntityTypes.Token"/>, entity id = token id). Its
/// journal is the creation and one event per use, at most <see cref="TokenLimits.MaxUses"/> + 1 events, so no
/// snapshots are taken. An id that was never created answers every redemption with
/// <see cref="TokenRefusal.BadToken"/> and persists nothing.
/// </summary>
public sealed class EnrollmentTokenEntity : ReceivePersistentActor
{
    /// <summary>The persistence id of a token is this prefix followed by the token id.</summary>
    public const string PersistenceIdPrefix = "enrollment-token-";

    private readonly TimeProvider _time;
    private readonly ILogger _log;

    private EnrollmentTokenState _state;

    public EnrollmentTokenEntity(string tokenId, TimeProvider time, ILogger logger)
    {
        _time = time;
        _log = new ScopedLogger(logger, ("token_id", tokenId));
        _state = EnrollmentTokenState.Empty(tokenId);
        PersistenceId = PersistenceIdPrefix + tokenId;

        Recover<IEnrollmentTokenEvent>(evt => _state = _state.Apply(evt));

        Command<CreateToken>(HandleCreate);
        Command<RedeemToken>(HandleRedeem);
        Command<RevokeToken>(HandleRevoke);
        Command<GetToken>(_ => Sender.Tell(_state.View(_time.GetUtcNow())));
    }

    public override string PersistenceId { get; }

    /// <param name="timeProvider">The clock for creation, expiry and redemption times; the system clock when null.</param>
    /// <param name="logger">
    /// Where the entity logs, in a <c>token_id</c> scope (with the token's <c>region</c>, and the redeeming <c>peer_id</c>);
    /// nowhere when null.
    /// </param>
    public static Props Props(string tokenId, TimeProvider? timeProvider = null, ILogger? logger = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(tokenId);
        var time = timeProvider ?? TimeProvider.System;
        var log = logger ?? NullLogger.Instance;
        return Akka.Actor.Props.Create(() => new EnrollmentTokenEntity(tokenId, time, log));
    }

    private void HandleCreate(CreateToken create)
    {
        var sender = Sender;
        var created = _state.DecideCreate(create, _time.GetUtcNow(), out var problem);
        if (created is null)
        {
            // The edge validates first and ids are random: this is a caller bug or a 64-bit collision.
            sender.Tell(new Status.Failure(new ArgumentException(problem, nameof(create))));
            return;
        }

        Persist(created, evt =>
        {
            _state = _state.Apply(evt);
            using (_log.BeginScope(new LogScope(("region", evt.Region))))
                _log.LogInformation("Enrollment token {TokenId} created: role {Role}, region {Region}, {Uses} uses, expires {ExpiresAt}", evt.TokenId,
                    evt.Role, evt.Region, evt.Uses, evt.ExpiresAt);
            sender.Tell(new TokenIssued(evt.TokenId, evt.Role, evt.Region, evt.Uses, evt.ExpiresAt));
        });
    }

    private void HandleRevoke(RevokeToken revoke)
    {
        var sender = Sender;
        if (_state.DecideRevoke(_time.GetUtcNow(), revoke.By) is not { } revoked)
        {
            sender.Tell(_state.View(_time.GetUtcNow()));
            return;
        }

        Persist(revoked, evt =>
        {
            _state = _state.Apply(evt);
            _log.LogWarning("Enrollment token {TokenId} revoked by {Admin}: it enrolls nobody from now on", _state.TokenId, evt.By);
            sender.Tell(_state.View(_time.GetUtcNow()));
        });
    }

    private void HandleRedeem(RedeemToken redeem)
    {
        var sender = Sender;
        if (EnrollmentTokenState.CheckRedeem(redeem) is { } problem)
        {
            // Malformed input must not enter the journal; the gRPC edge refuses it before it gets here.
            sender.Tell(new Status.Failure(new ArgumentException(problem, nameof(redeem))));
            return;
        }

        switch (_state.DecideRedeem(redeem, _time.GetUtcNow()))
        {
            case RedeemDecision.Refuse refuse:
                sender.Tell(new TokenRedeemRefused(_state.TokenId, redeem.PeerId, refuse.Reason, refuse.Detail));
                break;
            case RedeemDecision.AlreadyRedeemed:
                sender.Tell(new TokenRedeemAccepted(_state.TokenId, redeem.PeerId, _state.UsesLeft, AlreadyRedeemed: true));
                break;
            case RedeemDecision.Redeem redeemed:
                // Persist (not PersistAsync) stashes other commands until this use is counted: two peers racing
                // for the last use cannot both get it.
                Persist(redeemed.Event, evt =>
                {
                    _state = _state.Apply(evt);
                    using (_log.BeginScope(new LogScope(("region", _state.Created?.Region ?? ""), ("peer_id", evt.PeerId))))
                        _log.LogInformation("Enrollment token {TokenId} redeemed by peer {PeerId}, {UsesLeft} uses left", _state.TokenId, evt.PeerId,
                            _state.UsesLeft);
                    sender.Tell(new TokenRedeemAccepted(_state.TokenId, evt.PeerId, _state.UsesLeft, AlreadyRedeemed: false));
                });
                break;
        }
    }
}
