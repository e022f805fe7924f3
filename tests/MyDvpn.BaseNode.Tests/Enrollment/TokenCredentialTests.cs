using System.Buffers.Text;
using System.Security.Cryptography;
using MyDvpn.BaseNode.Enrollment;

namespace MyDvpn.BaseNode.Tests.Enrollment;

public sealed class TokenCredentialTests
{
    [Fact]
    public void Generated_token_is_sixteen_hex_id_dot_43_char_base64url_secret()
    {
        var credential = TokenCredential.Generate();

        Assert.Matches("^[0-9a-f]{16}\\.[A-Za-z0-9_-]{43}\\z", credential.Text);
        Assert.StartsWith(credential.TokenId + ".", credential.Text, StringComparison.Ordinal);
    }

    [Fact]
    public void Generated_tokens_differ_in_id_and_secret()
    {
        var tokens = Enumerable.Range(0, 100).Select(_ => TokenCredential.Generate()).ToList();

        Assert.Equal(100, tokens.Select(t => t.TokenId).Distinct().Count());
        Assert.Equal(100, tokens.Select(t => t.Text[17..]).Distinct().Count());
    }

    [Fact]
    public void Parsed_token_has_the_id_and_the_sha256_of_the_secret_bytes()
    {
        var secret = Enumerable.Range(1, 32).Select(i => (byte)i).ToArray();
        var text = "0123456789abcdef." + Base64Url.EncodeToString(secret);

        Assert.True(TokenCredential.TryParse(text, out var credential, out var problem), problem);

        Assert.Equal("0123456789abcdef", credential.TokenId);
        Assert.Equal(text, credential.Text);
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(secret)), credential.SecretSha256);
    }

    [Fact]
    public void Generated_token_parses_back_to_the_same_secret_digest()
    {
        var credential = TokenCredential.Generate();

        Assert.True(TokenCredential.TryParse(credential.Text, out var parsed, out _));

        Assert.Equal(credential.TokenId, parsed.TokenId);
        Assert.Equal(credential.SecretSha256, parsed.SecretSha256);
    }

    public static TheoryData<string?, string> Malformed()
    {
        var secret = Base64Url.EncodeToString(new byte[32]);
        return new()
        {
            { null, "empty" },
            { "", "empty" },
            { "0123456789abcdef" + secret, "<id>.<secret>" },
            { "0123456789ABCDEF." + secret, "lowercase hex" },
            { "0123456789abcde." + secret, "lowercase hex" },
            { "0123456789abcdefa." + secret, "lowercase hex" },
            { "0123456789abcdeg." + secret, "lowercase hex" },
            { "0123456789abcdef." + secret + "=", "base64url" },
            { "0123456789abcdef." + secret[..^1], "base64url" },
            { "0123456789abcdef." + Base64Url.EncodeToString(new byte[33]), "base64url" },
            { "0123456789abcdef." + secret.Replace('A', '+'), "base64url" },
            { "0123456789abcdef." + secret[..^1] + "B", "base64url" }, // non-canonical: unused bits set
            { "0123456789abcdef." + secret + ".x", "base64url" },
            { "0123456789abcdef. " + secret[1..], "base64url" },
        };
    }

    [Theory]
    [MemberData(nameof(Malformed))]
    public void Malformed_token_is_refused_saying_why(string? text, string expectedProblem)
    {
        Assert.False(TokenCredential.TryParse(text, out var credential, out var problem));

        Assert.Null(credential);
        Assert.Contains(expectedProblem, problem, StringComparison.Ordinal);
    }

    [Fact]
    public void Problem_and_ToString_never_show_the_secret()
    {
        var credential = TokenCredential.Generate();
        var secret = credential.Text[17..];

        Assert.False(TokenCredential.TryParse(credential.Text + "x", out _, out var problem));

        Assert.DoesNotContain(secret, problem, StringComparison.Ordinal);
        Assert.DoesNotContain(secret, credential.ToString(), StringComparison.Ordinal);
        Assert.Contains(credential.TokenId, credential.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Digests_are_equal_only_when_both_are_the_same_sha256()
    {
        var a = TokenCredential.Generate().SecretSha256;
        var b = TokenCredential.Generate().SecretSha256;

        Assert.True(TokenCredential.DigestsEqual(a, a));
        Assert.True(TokenCredential.DigestsEqual(a, a.ToUpperInvariant()));
        Assert.False(TokenCredential.DigestsEqual(a, b));
        Assert.False(TokenCredential.DigestsEqual(a, a[..^2]));
        Assert.False(TokenCredential.DigestsEqual(a, null));
        Assert.False(TokenCredential.DigestsEqual("zz" + a[2..], "zz" + a[2..]));
    }
}
