using Akka.Actor;
using Microsoft.Extensions.Logging;
using MyDvpn.BaseNode.Enrollment;
using Xunit.Abstractions;

namespace MyDvpn.BaseNode.Tests.Enrollment;

/// <summary>The enrollment token entity over a real SQLite journal.</summary>
public sealed class EnrollmentTokenEntityTests(ITestOutputHelper output) : SqliteTestKit(output)
{
    private static readonly TimeSpan Ttl = TimeSpan.FromHours(1);

    private readonly ManualTimeProvider _clock = new();
    private readonly TokenCredential _credential = TokenCredential.Generate();
    private readonly RecordingLogger _log = new(output, nameof(EnrollmentTokenEntity));

    private string PersistenceId => "enrollment-token-" + _credential.TokenId;

    [Fact]
    public void Created_token_is_issued_with_its_expiry_and_stores_only_the_secret_digest()
    {
        var token = Start();
        var t0 = _clock.GetUtcNow();

        token.Tell(Create(EnrollmentRole.Exit, uses: 3));

        Assert.Equal(new TokenIssued(_credential.TokenId, EnrollmentRole.Exit, "eu-west", 3, t0 + Ttl), ExpectMsg<TokenIssued>());
        var created = Assert.IsType<TokenCreated>(Assert.Single(JournalEvents(PersistenceId)));
        Assert.Equal(_credential.SecretSha256, created.SecretSha256);
        var secret = _credential.Text[(TokenCredential.TokenIdLength + 1)..];
        Assert.DoesNotContain(secret, created.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Creation_and_redemption_are_logged_with_the_token_its_region_and_the_peer_in_scope()
    {
        var token = Created();
        Redeem(token, "peer-1");

        var id = _credential.TokenId;
        Assert.Equal(
            [
                (LogLevel.Information, $"token_id={id}", "region=eu-west"),
                (LogLevel.Information, $"token_id={id}", "region=eu-west, peer_id=peer-1"),
            ],
            _log.Entries.Select(e => (e.Level, e.Scopes[^1], e.Scopes[0])));
        Assert.StartsWith($"Enrollment token {id} created: role Client, region eu-west, 1 uses", _log.Entries.First().Message, StringComparison.Ordinal);
        Assert.Equal($"Enrollment token {id} redeemed by peer peer-1, 0 uses left", _log.Entries.Last().Message);
    }

    [Fact]
    public void Single_use_token_enrolls_one_peer_and_then_is_used_up()
    {
        var token = Created();

        Assert.Equal(new TokenRedeemAccepted(_credential.TokenId, "peer-1", 0, AlreadyRedeemed: false), Redeem(token, "peer-1"));

        var refused = Assert.IsType<TokenRedeemRefused>(Redeem(token, "peer-2", Key(2)));
        Assert.Equal(TokenRefusal.TokenUsedUp, refused.Reason);
        Assert.Equal("peer-2", refused.PeerId);
        Assert.Equal([typeof(TokenCreated), typeof(TokenRedeemed)], JournalEvents(PersistenceId).Select(e => e.GetType()));
    }

    [Fact]
    public void Token_with_three_uses_enrolls_three_peers_counting_down()
    {
        var token = Created(uses: 3);

        Assert.Equal(
            [2, 1, 0],
            Enumerable.Range(1, 3).Select(i => Assert.IsType<TokenRedeemAccepted>(Redeem(token, $"peer-{i}", Key(i))).UsesLeft));
        Assert.Equal(TokenRefusal.TokenUsedUp, Refusal(Redeem(token, "peer-4", Key(4))));
    }

    [Fact]
    public void Token_is_refused_from_its_expiry_on_and_spends_nothing()
    {
        var token = Created(uses: 2);
        _clock.Advance(Ttl - TimeSpan.FromSeconds(1));
        Assert.IsType<TokenRedeemAccepted>(Redeem(token, "peer-1"));

        _clock.Advance(TimeSpan.FromSeconds(1));

        var refused = Assert.IsType<TokenRedeemRefused>(Redeem(token, "peer-2", Key(2)));
        Assert.Equal(TokenRefusal.TokenExpired, refused.Reason);
        Assert.Contains("expired", refused.Detail, StringComparison.Ordinal);
        Assert.Equal(2, JournalEvents(PersistenceId).Count);
    }

    [Fact]
    public void Wrong_secret_is_a_bad_token_and_spends_nothing()
    {
        var token = Created();

        var refused = Assert.IsType<TokenRedeemRefused>(
            Redeem(token, "peer-1", secretSha256: TokenCredential.Generate().SecretSha256));

        Assert.Equal(TokenRefusal.BadToken, refused.Reason);
        Assert.IsType<TokenRedeemAccepted>(Redeem(token, "peer-1"));
    }

    [Fact]
    public void Unknown_token_id_is_a_bad_token_and_persists_nothing()
    {
        var token = Start();

        Assert.Equal(TokenRefusal.BadToken, Refusal(Redeem(token, "peer-1")));
        Assert.Empty(JournalEvents(PersistenceId));
    }

    [Theory]
    [InlineData(EnrollmentRole.Client, EnrollmentRole.Exit)]
    [InlineData(EnrollmentRole.Exit, EnrollmentRole.Client)]
    [InlineData(EnrollmentRole.Exit, EnrollmentRole.Both)]
    [InlineData(EnrollmentRole.Both, EnrollmentRole.SuperNode)]
    public void Claim_of_a_role_the_token_does_not_grant_is_refused(EnrollmentRole granted, EnrollmentRole claimed)
    {
        var token = Created(granted);

        Assert.Equal(TokenRefusal.RoleNotAllowed, Refusal(Redeem(token, "peer-1", role: claimed)));
        Assert.Single(JournalEvents(PersistenceId));
    }

    [Theory]
    [InlineData(EnrollmentRole.Client)]
    [InlineData(EnrollmentRole.Exit)]
    [InlineData(EnrollmentRole.Both)]
    public void Both_token_enrolls_any_peer_role(EnrollmentRole claimed)
    {
        var token = Created(EnrollmentRole.Both);

        Assert.IsType<TokenRedeemAccepted>(Redeem(token, "peer-1", role: claimed));
    }

    [Fact]
    public void Peer_of_another_region_is_refused()
    {
        var token = Created();

        var refused = Assert.IsType<TokenRedeemRefused>(Redeem(token, "peer-1", region: "us-east"));

        Assert.Equal(TokenRefusal.WrongRegion, refused.Reason);
        Assert.Contains("eu-west", refused.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void Same_peer_and_key_again_succeeds_without_spending_a_use()
    {
        var token = Created(uses: 2);
        Redeem(token, "peer-1");

        Assert.Equal(new TokenRedeemAccepted(_credential.TokenId, "peer-1", 1, AlreadyRedeemed: true), Redeem(token, "peer-1"));
        Assert.Equal(2, JournalEvents(PersistenceId).Count);
        Assert.IsType<TokenRedeemAccepted>(Redeem(token, "peer-2", Key(2)));
    }

    [Fact]
    public void Same_peer_with_another_key_is_a_bad_token()
    {
        var token = Created(uses: 2);
        Redeem(token, "peer-1", Key(1));

        var refused = Assert.IsType<TokenRedeemRefused>(Redeem(token, "peer-1", Key(2)));

        Assert.Equal(TokenRefusal.BadToken, refused.Reason);
        Assert.Equal(2, JournalEvents(PersistenceId).Count);
    }

    [Fact]
    public void Uses_and_redemptions_come_back_from_the_journal_after_a_restart()
    {
        var token = Created(uses: 2);
        Redeem(token, "peer-1", Key(1));
        Stop(token);

        var recovered = Start();

        Assert.Equal(new TokenRedeemAccepted(_credential.TokenId, "peer-1", 1, AlreadyRedeemed: true), Redeem(recovered, "peer-1", Key(1)));
        Assert.Equal(TokenRefusal.BadToken, Refusal(Redeem(recovered, "peer-1", Key(9))));
        Assert.Equal(0, Assert.IsType<TokenRedeemAccepted>(Redeem(recovered, "peer-2", Key(2))).UsesLeft);
        Assert.Equal(TokenRefusal.TokenUsedUp, Refusal(Redeem(recovered, "peer-3", Key(3))));
    }

    [Fact]
    public void Token_id_is_created_once()
    {
        var token = Created();

        token.Tell(Create() with { SecretSha256 = TokenCredential.Generate().SecretSha256 });

        Assert.Contains("taken", Assert.IsType<ArgumentException>(ExpectMsg<Status.Failure>().Cause).Message, StringComparison.Ordinal);
        Assert.Single(JournalEvents(PersistenceId));
        Assert.IsType<TokenRedeemAccepted>(Redeem(token, "peer-1"));
    }

    [Fact]
    public void Supernode_token_is_refused_and_not_persisted()
    {
        var token = Start();

        token.Tell(Create(EnrollmentRole.SuperNode));

        Assert.IsType<ArgumentException>(ExpectMsg<Status.Failure>().Cause);
        Assert.Empty(JournalEvents(PersistenceId));
    }

    [Fact]
    public void Malformed_redeem_is_a_failure_and_not_persisted()
    {
        var token = Created();

        token.Tell(RedeemCommand("peer-1", Convert.ToBase64String(new byte[16])));

        Assert.IsType<ArgumentException>(ExpectMsg<Status.Failure>().Cause);
        Assert.Single(JournalEvents(PersistenceId));
    }

    private IActorRef Start() => Sys.ActorOf(EnrollmentTokenEntity.Props(_credential.TokenId, _clock, _log));

    private IActorRef Created(EnrollmentRole role = EnrollmentRole.Client, int uses = 1)
    {
        var token = Start();
        token.Tell(Create(role, uses));
        ExpectMsg<TokenIssued>();
        return token;
    }

    private CreateToken Create(EnrollmentRole role = EnrollmentRole.Client, int uses = 1) =>
        new(_credential.TokenId, _credential.SecretSha256, role, "eu-west", uses, Ttl);

    private RedeemToken RedeemCommand(
        string peerId,
        string? key = null,
        EnrollmentRole role = EnrollmentRole.Client,
        string region = "eu-west",
        string? secretSha256 = null) =>
        new(_credential.TokenId, secretSha256 ?? _credential.SecretSha256, peerId, role, region, key ?? Key(1));

    private ITokenRedeemReply Redeem(
        IActorRef token,
        string peerId,
        string? key = null,
        EnrollmentRole role = EnrollmentRole.Client,
        string region = "eu-west",
        string? secretSha256 = null)
    {
        token.Tell(RedeemCommand(peerId, key, role, region, secretSha256));
        return ExpectMsg<ITokenRedeemReply>();
    }

    private static TokenRefusal Refusal(ITokenRedeemReply reply) => Assert.IsType<TokenRedeemRefused>(reply).Reason;

    /// <summary>A distinct 32-byte public key per number.</summary>
    private static string Key(int n) => Convert.ToBase64String(Enumerable.Repeat((byte)n, 32).ToArray());
}
