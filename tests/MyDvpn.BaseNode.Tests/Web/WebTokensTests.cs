using System.Buffers.Text;
using System.Text;
using MyDvpn.BaseNode.Web;

namespace MyDvpn.BaseNode.Tests.Web;

public sealed class WebTokensTests
{
    private static readonly byte[] Key = Enumerable.Range(1, 32).Select(i => (byte)i).ToArray();

    [Fact]
    public void A_token_is_valid_until_it_expires_and_names_its_admin()
    {
        var clock = new ManualTimeProvider();
        var tokens = new WebTokens(Key, clock);
        var (token, expiresAt) = tokens.Issue("alice", TimeSpan.FromMinutes(15));
        Assert.Equal(clock.GetUtcNow() + TimeSpan.FromMinutes(15), expiresAt);

        Assert.True(tokens.TryVerify(token, out var claims, out var problem), problem);
        Assert.Equal(new WebTokenClaims("alice", clock.GetUtcNow(), expiresAt), claims);

        clock.Advance(TimeSpan.FromMinutes(15) - TimeSpan.FromSeconds(1));
        Assert.True(tokens.TryVerify(token, out _, out problem), problem);

        clock.Advance(TimeSpan.FromSeconds(1));
        Assert.False(tokens.TryVerify(token, out claims, out problem));
        Assert.Null(claims);
        Assert.Contains("expired at 2030-01-01 12:15:00Z", problem, StringComparison.Ordinal);
        Assert.Contains("mydvpn admin web-token", problem, StringComparison.Ordinal);
    }

    [Fact]
    public void A_token_from_another_key_is_refused_as_another_BaseNodes()
    {
        var clock = new ManualTimeProvider();
        var (token, _) = new WebTokens(Key, clock).Issue("alice", TimeSpan.FromHours(1));
        var other = new WebTokens([.. Key.Select(b => (byte)(b ^ 0xff))], clock);

        Assert.False(other.TryVerify(token, out var claims, out var problem));
        Assert.Null(claims);
        Assert.Contains("signature does not match", problem, StringComparison.Ordinal);
        Assert.Contains("another BaseNode", problem, StringComparison.Ordinal);
        // Two instances with random keys (two BaseNodes, or one restarted) do not take each other's tokens either.
        var (random, _) = new WebTokens(clock).Issue("alice", TimeSpan.FromHours(1));
        Assert.False(new WebTokens(clock).TryVerify(random, out _, out _));
    }

    [Fact]
    public void A_token_whose_payload_was_changed_is_refused_even_with_a_later_expiry()
    {
        var clock = new ManualTimeProvider();
        var tokens = new WebTokens(Key, clock);
        var (token, _) = tokens.Issue("alice", TimeSpan.FromMinutes(5));
        var parts = token.Split('.');
        var payload = Encoding.UTF8.GetString(Base64Url.DecodeFromChars(parts[1])).Split('\n');
        // Another admin, and a year more.
        var forged = string.Join('\n', "mallory", payload[1], (long.Parse(payload[2], System.Globalization.CultureInfo.InvariantCulture) + 31_536_000)
            .ToString(System.Globalization.CultureInfo.InvariantCulture), payload[3]);
        var tampered = $"{parts[0]}.{Base64Url.EncodeToString(Encoding.UTF8.GetBytes(forged))}.{parts[2]}";

        Assert.False(tokens.TryVerify(tampered, out var claims, out var problem));
        Assert.Null(claims);
        Assert.Contains("signature does not match", problem, StringComparison.Ordinal);
        // The signature changed by one character.
        var mac = parts[2].ToCharArray();
        mac[0] = mac[0] == 'A' ? 'B' : 'A';
        Assert.False(tokens.TryVerify($"{parts[0]}.{parts[1]}.{new string(mac)}", out _, out problem));
        Assert.Contains("signature does not match", problem, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(null, "the token is empty")]
    [InlineData("", "the token is empty")]
    [InlineData("abc", "it is not a web token")]
    [InlineData("v2.YWxpY2U.AAAA", "it is not a web token")]
    [InlineData("v1.YWxpY2U.not base64!", "it is not a web token")]
    [InlineData("v1.YWxpY2U.AAAA.AAAA", "it is not a web token")]
    public void Text_that_is_not_a_token_is_refused_in_words(string? text, string expected)
    {
        var tokens = new WebTokens(Key, new ManualTimeProvider());
        Assert.False(tokens.TryVerify(text, out var claims, out var problem));
        Assert.Null(claims);
        Assert.StartsWith(expected, problem, StringComparison.Ordinal);
    }

    [Fact]
    public void An_overlong_token_is_refused_before_it_is_decoded()
    {
        var tokens = new WebTokens(Key, new ManualTimeProvider());
        Assert.False(tokens.TryVerify("v1." + new string('A', WebTokens.MaxTokenLength) + ".AAAA", out _, out var problem));
        Assert.StartsWith("it is not a web token", problem, StringComparison.Ordinal);
    }

    [Fact]
    public void Tokens_are_not_issued_for_no_time_nor_with_a_short_key()
    {
        var tokens = new WebTokens(Key, new ManualTimeProvider());
        Assert.Throws<ArgumentOutOfRangeException>(() => tokens.Issue("alice", TimeSpan.Zero));
        Assert.Throws<ArgumentException>(() => new WebTokens(new byte[16], new ManualTimeProvider()));
    }

    [Fact]
    public void Two_tokens_for_the_same_admin_at_the_same_time_differ()
    {
        var tokens = new WebTokens(Key, new ManualTimeProvider());
        Assert.NotEqual(tokens.Issue("alice", TimeSpan.FromHours(1)).Token, tokens.Issue("alice", TimeSpan.FromHours(1)).Token);
    }
}
