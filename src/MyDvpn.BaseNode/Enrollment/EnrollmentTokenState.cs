using System.Collections.Immutable;
using MyDvpn.Common;

namespace MyDvpn.BaseNode.Enrollment;

/// <summary>Defaults and bounds of enrollment tokens.</summary>
public static class TokenLimits
{
    public const int DefaultUses = 1;

    /// <summary>
    /// Every use is an event in the token's journal and a redemption held in its state, so a token stays small;
    /// enrolling more peers than this takes more tokens.
    /// </summary>
    public const int MaxUses = 1000;

    public const int PublicKeyLength = 32;

    public static readonly TimeSpan DefaultTtl = TimeSpan.FromHours(24);
}

/// <summary>One peer that redeemed a token, with the public key it registered (base64).</summary>
public sealed record TokenRedemption(string PeerId, string PublicKey, DateTimeOffset At);

/// <summary>What a <see cref="RedeemToken"/> comes to, decided by <see cref="EnrollmentTokenState.DecideRedeem"/>.</summary>
public abstract record RedeemDecision
{
    private RedeemDecision()
    {
    }

    public sealed record Refuse(TokenRefusal Reason, string Detail) : RedeemDecision;

    /// <summary>The same peer redeemed with the same key before: success, and nothing to persist.</summary>
    public sealed record AlreadyRedeemed : RedeemDecision
    {
        public static readonly AlreadyRedeemed Instance = new();
    }

    public sealed record Redeem(TokenRedeemed Event) : RedeemDecision;
}

/// <summary>
/// The durable state of one enrollment token: how it was created (null until then) and who redeemed it. Pure:
/// <see cref="Apply"/> folds an event in, the <c>Decide…</c> methods turn a command into events or a refusal.
/// </summary>
public sealed record EnrollmentTokenState(
    string TokenId,
    TokenCreated? Created,
    ImmutableDictionary<string, TokenRedemption> Redemptions)
{
    private const string BadTokenDetail = "the token is unknown or its secret is wrong";

    public static EnrollmentTokenState Empty(string tokenId) =>
        new(tokenId, null, ImmutableDictionary.Create<string, TokenRedemption>(StringComparer.Ordinal));

    public int UsesLeft => Created is null ? 0 : Math.Max(0, Created.Uses - Redemptions.Count);

    /// <summary>How an operator revoked the token; null while it is not revoked.</summary>
    public TokenRevoked? Revoked { get; init; }

    public EnrollmentTokenState Apply(IEnrollmentTokenEvent evt) => evt switch
    {
        TokenCreated e => this with { Created = e },
        TokenRevoked e => this with { Revoked = e },
        TokenRedeemed e => this with
        {
            Redemptions = Redemptions.SetItem(e.PeerId, new TokenRedemption(e.PeerId, e.PublicKey, e.At)),
        },
        _ => throw new ArgumentException($"Unknown enrollment token event {evt.GetType().Name}", nameof(evt)),
    };

    /// <param name="problem">Why the token cannot be created; empty when it can.</param>
    public TokenCreated? DecideCreate(CreateToken create, DateTimeOffset now, out string problem)
    {
        problem = CheckCreate(create) ?? string.Empty;
        return problem.Length == 0
            ? new TokenCreated(create.TokenId, create.SecretSha256, create.Role, create.Region, create.Uses,
                now + create.Ttl, now)
            : null;
    }

    /// <summary>
    /// The secret is checked first, so whoever does not hold it learns nothing about the token. A peer that
    /// redeemed before with the same key gets its success again even after the token expired or was used up: its
    /// enrollment happened, and a retry must not undo it.
    /// </summary>
    public RedeemDecision DecideRedeem(RedeemToken redeem, DateTimeOffset now)
    {
        if (Created is null || !TokenCredential.DigestsEqual(Created.SecretSha256, redeem.SecretSha256))
        {
            return new RedeemDecision.Refuse(TokenRefusal.BadToken, BadTokenDetail);
        }

        if (!Allows(Created.Role, redeem.ClaimedRole))
        {
            return new RedeemDecision.Refuse(TokenRefusal.RoleNotAllowed,
                $"token {TokenId} enrolls {Describe(Created.Role)}, not {Describe(redeem.ClaimedRole)}");
        }

        if (redeem.Region != Created.Region)
        {
            return new RedeemDecision.Refuse(TokenRefusal.WrongRegion,
                $"token {TokenId} enrolls peers of region {Created.Region}, not {redeem.Region}");
        }

        if (Redemptions.TryGetValue(redeem.PeerId, out var earlier))
        {
            return earlier.PublicKey == redeem.PublicKey
                ? RedeemDecision.AlreadyRedeemed.Instance
                // Someone else claiming an enrolled peer's id: to them, as good as a bad token.
                : new RedeemDecision.Refuse(TokenRefusal.BadToken,
                    $"peer {redeem.PeerId} redeemed token {TokenId} with another public key");
        }

        if (Revoked is { } revoked)
        {
            return new RedeemDecision.Refuse(TokenRefusal.TokenRevoked,
                $"token {TokenId} was revoked by {revoked.By} at {revoked.At:u}");
        }

        if (now >= Created.ExpiresAt)
        {
            return new RedeemDecision.Refuse(TokenRefusal.TokenExpired,
                $"token {TokenId} expired at {Created.ExpiresAt:u}");
        }

        if (UsesLeft == 0)
        {
            return new RedeemDecision.Refuse(TokenRefusal.TokenUsedUp,
                $"token {TokenId} is used up ({Created.Uses} of {Created.Uses} uses spent)");
        }

        return new RedeemDecision.Redeem(new TokenRedeemed(redeem.PeerId, redeem.PublicKey, now));
    }

    /// <summary>
    /// A created token not revoked yet is revoked now (by <paramref name="by"/>); one that does not exist or is revoked
    /// already causes no event.
    /// </summary>
    public TokenRevoked? DecideRevoke(DateTimeOffset now, string by) =>
        Created is null || Revoked is not null ? null : new TokenRevoked(now, by);

    /// <summary>What an operator may see of the token at <paramref name="now"/>: never the secret's hash.</summary>
    public TokenView View(DateTimeOffset now) => Created is null
        ? new TokenView(TokenId, false, default, "", 0, 0, default, default, false, null, [])
        : new TokenView(TokenId, true, Created.Role, Created.Region, Created.Uses, UsesLeft, Created.At, Created.ExpiresAt, now >= Created.ExpiresAt, Revoked,
            [.. Redemptions.Values.OrderBy(r => r.At).ThenBy(r => r.PeerId, StringComparer.Ordinal).Select(r => r.PeerId)]);

    /// <summary>Whether a token of <paramref name="granted"/> may enroll a peer claiming <paramref name="claimed"/>.</summary>
    public static bool Allows(EnrollmentRole granted, EnrollmentRole claimed) => (granted, claimed) switch
    {
        (_, EnrollmentRole.SuperNode) => false,
        (EnrollmentRole.Both, EnrollmentRole.Client or EnrollmentRole.Exit or EnrollmentRole.Both) => true,
        (EnrollmentRole.Client, EnrollmentRole.Client) => true,
        (EnrollmentRole.Exit, EnrollmentRole.Exit) => true,
        _ => false,
    };

    /// <summary>Why a redemption request is malformed (a bug in the caller, which validates first), or null.</summary>
    public static string? CheckRedeem(RedeemToken redeem)
    {
        if (!NodeId.IsValid(redeem.PeerId, out var idProblem))
        {
            return $"peer id '{redeem.PeerId}' {idProblem}";
        }

        if (!RegionName.IsValid(redeem.Region, out var regionProblem))
        {
            return regionProblem;
        }

        if (!Enum.IsDefined(redeem.ClaimedRole))
        {
            return $"role {(int)redeem.ClaimedRole} is not a peer role";
        }

        Span<byte> key = stackalloc byte[TokenLimits.PublicKeyLength + 1];
        return Convert.TryFromBase64String(redeem.PublicKey, key, out var written)
               && written == TokenLimits.PublicKeyLength
            ? null
            : $"the public key must be {TokenLimits.PublicKeyLength} bytes in base64";
    }

    private string? CheckCreate(CreateToken create)
    {
        if (Created is not null)
        {
            return $"token id {create.TokenId} is taken";
        }

        if (create.TokenId != TokenId || !TokenCredential.IsTokenId(create.TokenId))
        {
            return $"token id '{create.TokenId}' is not this token's ({TokenId}) or not "
                   + $"{TokenCredential.TokenIdLength} lowercase hex characters";
        }

        if (!TokenCredential.IsDigest(create.SecretSha256))
        {
            return "the secret digest must be a SHA-256 in hex";
        }

        if (create.Role is not (EnrollmentRole.Client or EnrollmentRole.Exit or EnrollmentRole.Both))
        {
            return $"a token enrolls clients, exits or both, never {Describe(create.Role)}";
        }

        if (!RegionName.IsValid(create.Region, out var regionProblem))
        {
            return regionProblem;
        }

        if (create.Uses is < 1 or > TokenLimits.MaxUses)
        {
            return $"uses must be 1-{TokenLimits.MaxUses}, was {create.Uses}";
        }

        return create.Ttl > TimeSpan.Zero ? null : $"the time to live must be positive, was {create.Ttl}";
    }

    private static string Describe(EnrollmentRole role) => role switch
    {
        EnrollmentRole.Client => "clients",
        EnrollmentRole.Exit => "exits",
        EnrollmentRole.Both => "clients and exits",
        EnrollmentRole.SuperNode => "SuperNodes",
        _ => $"role {(int)role}",
    };

    /// <summary>Value equality over the redemptions' contents (the dictionary itself compares by reference).</summary>
    public bool Equals(EnrollmentTokenState? other) =>
        other is not null
        && TokenId == other.TokenId
        && Created == other.Created
        && Revoked == other.Revoked
        && Redemptions.Count == other.Redemptions.Count
        && Redemptions.All(kv => other.Redemptions.TryGetValue(kv.Key, out var o) && o == kv.Value);

    public override int GetHashCode() => HashCode.Combine(TokenId, Created, Redemptions.Count);
}
