using MyDvpn.BaseNode.Enrollment;

namespace MyDvpn.BaseNode.Tests.Enrollment;

/// <summary>The pure decisions of a token: which check wins when several fail, and which roles a token admits.</summary>
public sealed class EnrollmentTokenStateTests
{
    private static readonly DateTimeOffset T0 = new(2030, 1, 1, 12, 0, 0, TimeSpan.Zero);
    private static readonly TokenCredential Credential = TokenCredential.Generate();
    private static readonly string Key = Convert.ToBase64String(new byte[32]);

    private static EnrollmentTokenState Created(EnrollmentRole role = EnrollmentRole.Client, int uses = 1) =>
        EnrollmentTokenState.Empty(Credential.TokenId).Apply(
            new TokenCreated(Credential.TokenId, Credential.SecretSha256, role, "eu-west", uses, T0.AddHours(1), T0));

    private static RedeemToken Redeem(
        string peerId = "peer-1",
        EnrollmentRole role = EnrollmentRole.Client,
        string region = "eu-west",
        string? secretSha256 = null,
        string? key = null) =>
        new(Credential.TokenId, secretSha256 ?? Credential.SecretSha256, peerId, role, region, key ?? Key);

    [Theory]
    [InlineData(EnrollmentRole.Client, EnrollmentRole.Client, true)]
    [InlineData(EnrollmentRole.Client, EnrollmentRole.Exit, false)]
    [InlineData(EnrollmentRole.Client, EnrollmentRole.Both, false)]
    [InlineData(EnrollmentRole.Exit, EnrollmentRole.Exit, true)]
    [InlineData(EnrollmentRole.Exit, EnrollmentRole.Client, false)]
    [InlineData(EnrollmentRole.Exit, EnrollmentRole.Both, false)]
    [InlineData(EnrollmentRole.Both, EnrollmentRole.Client, true)]
    [InlineData(EnrollmentRole.Both, EnrollmentRole.Exit, true)]
    [InlineData(EnrollmentRole.Both, EnrollmentRole.Both, true)]
    [InlineData(EnrollmentRole.Client, EnrollmentRole.SuperNode, false)]
    [InlineData(EnrollmentRole.Both, EnrollmentRole.SuperNode, false)]
    [InlineData(EnrollmentRole.SuperNode, EnrollmentRole.SuperNode, false)]
    public void Token_role_admits_only_its_claims(EnrollmentRole granted, EnrollmentRole claimed, bool admitted)
    {
        Assert.Equal(admitted, EnrollmentTokenState.Allows(granted, claimed));
    }

    [Fact]
    public void Wrong_secret_wins_over_every_other_problem_so_nothing_leaks_without_it()
    {
        var expiredAndUsedUp = Created().Apply(new TokenRedeemed("peer-0", Key, T0));
        var wrong = TokenCredential.Generate().SecretSha256;

        var decision = expiredAndUsedUp.DecideRedeem(
            Redeem(role: EnrollmentRole.Exit, region: "us-east", secretSha256: wrong), T0.AddDays(1));

        Assert.Equal(TokenRefusal.BadToken, Assert.IsType<RedeemDecision.Refuse>(decision).Reason);
    }

    [Fact]
    public void Token_never_created_is_a_bad_token()
    {
        var decision = EnrollmentTokenState.Empty(Credential.TokenId).DecideRedeem(Redeem(), T0);

        Assert.Equal(TokenRefusal.BadToken, Assert.IsType<RedeemDecision.Refuse>(decision).Reason);
    }

    [Fact]
    public void Peer_that_redeemed_gets_its_success_again_after_expiry_and_use_up()
    {
        var state = Created().Apply(new TokenRedeemed("peer-1", Key, T0));

        Assert.Same(RedeemDecision.AlreadyRedeemed.Instance, state.DecideRedeem(Redeem(), T0.AddDays(1)));
    }

    [Fact]
    public void Expiry_is_checked_before_uses()
    {
        var usedUp = Created().Apply(new TokenRedeemed("peer-0", Key, T0));

        var decision = usedUp.DecideRedeem(Redeem(), T0.AddHours(1));

        Assert.Equal(TokenRefusal.TokenExpired, Assert.IsType<RedeemDecision.Refuse>(decision).Reason);
    }

    [Fact]
    public void Redeeming_counts_a_use_and_records_the_key()
    {
        var state = Created(uses: 3);

        var redeemed = Assert.IsType<RedeemDecision.Redeem>(state.DecideRedeem(Redeem(), T0)).Event;
        var after = state.Apply(redeemed);

        Assert.Equal(new TokenRedeemed("peer-1", Key, T0), redeemed);
        Assert.Equal(3, state.UsesLeft);
        Assert.Equal(2, after.UsesLeft);
        Assert.Equal(new TokenRedemption("peer-1", Key, T0), after.Redemptions["peer-1"]);
    }

    public static TheoryData<CreateToken, string> InvalidCreates() => new()
    {
        { Create() with { Role = EnrollmentRole.SuperNode }, "never SuperNodes" },
        { Create() with { Role = (EnrollmentRole)0 }, "never role 0" },
        { Create() with { Region = "EU" }, "region" },
        { Create() with { Uses = 0 }, "uses" },
        { Create() with { Uses = TokenLimits.MaxUses + 1 }, "uses" },
        { Create() with { Ttl = TimeSpan.Zero }, "time to live" },
        { Create() with { SecretSha256 = "secret" }, "SHA-256" },
        { Create() with { TokenId = "0000000000000000" }, "not this token's" },
    };

    [Theory]
    [MemberData(nameof(InvalidCreates))]
    public void Invalid_token_is_not_created_and_the_problem_says_why(CreateToken create, string expectedProblem)
    {
        Assert.Null(EnrollmentTokenState.Empty(Credential.TokenId).DecideCreate(create, T0, out var problem));

        Assert.Contains(expectedProblem, problem, StringComparison.Ordinal);
    }

    [Fact]
    public void Token_is_created_once()
    {
        Assert.Null(Created().DecideCreate(Create(), T0, out var problem));
        Assert.Contains("taken", problem, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("bad id!", "eu-west", 1, 32, "peer id")]
    [InlineData("peer-1", "EU", 1, 32, "region")]
    [InlineData("peer-1", "eu-west", 0, 32, "role 0")]
    [InlineData("peer-1", "eu-west", 1, 31, "32 bytes")]
    [InlineData("peer-1", "eu-west", 1, 33, "32 bytes")]
    public void Malformed_redeem_is_named(string peerId, string region, int role, int keyLength, string expectedProblem)
    {
        var redeem = Redeem(peerId, (EnrollmentRole)role, region, key: Convert.ToBase64String(new byte[keyLength]));

        Assert.Contains(expectedProblem, EnrollmentTokenState.CheckRedeem(redeem), StringComparison.Ordinal);
        Assert.Null(EnrollmentTokenState.CheckRedeem(Redeem()));
    }

    [Fact]
    public void A_revoked_token_refuses_a_new_peer_but_gives_the_peer_it_enrolled_its_enrollment_again()
    {
        var revoked = Created(uses: 3).Apply(new TokenRedeemed("peer-1", Key, T0)).Apply(new TokenRevoked(T0.AddMinutes(1), "ops"));

        var refusal = Assert.IsType<RedeemDecision.Refuse>(revoked.DecideRedeem(Redeem("peer-2"), T0.AddMinutes(2)));

        Assert.Equal(TokenRefusal.TokenRevoked, refusal.Reason);
        Assert.Contains("revoked by ops", refusal.Detail, StringComparison.Ordinal);
        Assert.Same(RedeemDecision.AlreadyRedeemed.Instance, revoked.DecideRedeem(Redeem("peer-1"), T0.AddMinutes(2)));
    }

    [Fact]
    public void Only_a_token_that_exists_and_is_not_revoked_yet_is_revoked()
    {
        Assert.Null(EnrollmentTokenState.Empty(Credential.TokenId).DecideRevoke(T0, "ops"));
        var revoked = Created().DecideRevoke(T0, "ops");
        Assert.Equal(new TokenRevoked(T0, "ops"), revoked);
        Assert.Null(Created().Apply(revoked!).DecideRevoke(T0.AddMinutes(1), "ops"));
    }

    [Fact]
    public void A_view_shows_uses_left_expiry_and_the_enrolled_peers_but_not_the_secrets_hash()
    {
        var state = Created(uses: 2).Apply(new TokenRedeemed("peer-1", Key, T0));

        var view = state.View(T0.AddHours(1));

        Assert.Equal((true, 2, 1, true), (view.Exists, view.Uses, view.UsesLeft, view.Expired));
        Assert.Equal(["peer-1"], view.EnrolledPeers);
        Assert.DoesNotContain(Credential.SecretSha256, view.ToString(), StringComparison.Ordinal);
        Assert.False(EnrollmentTokenState.Empty(Credential.TokenId).View(T0).Exists);
    }

    private static CreateToken Create() =>
        new(Credential.TokenId, Credential.SecretSha256, EnrollmentRole.Client, "eu-west", 1, TimeSpan.FromHours(1));
}
