using System.Buffers;
using System.Buffers.Text;
using System.Diagnostics.CodeAnalysis;
using System.Security.Cryptography;

namespace MyDvpn.BaseNode.Enrollment;

/// <summary>
/// An enrollment token as the operator holds it: <c>&lt;tokenId&gt;.&lt;secret&gt;</c>, a random id of
/// <see cref="TokenIdLength"/> lowercase hex characters and <see cref="SecretLength"/> random bytes in base64url
/// without padding. The directory only ever sees <see cref="SecretSha256"/>.
/// </summary>
public sealed class TokenCredential
{
    public const int TokenIdLength = 16;
    public const int SecretLength = 32;

    /// <summary>Characters of the secret in base64url without padding (32 bytes → 43).</summary>
    public const int SecretTextLength = (SecretLength * 4 + 2) / 3;

    private readonly byte[] _secret;

    private TokenCredential(string tokenId, byte[] secret)
    {
        TokenId = tokenId;
        _secret = secret;
    }

    public string TokenId { get; }

    /// <summary>The token as shown to the operator once and presented by a new peer.</summary>
    public string Text => $"{TokenId}.{Base64Url.EncodeToString(_secret)}";

    /// <summary>Lowercase hex SHA-256 of the secret bytes: what the directory stores and compares.</summary>
    public string SecretSha256 => Convert.ToHexStringLower(SHA256.HashData(_secret));

    public static TokenCredential Generate() =>
        new(Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(TokenIdLength / 2)),
            RandomNumberGenerator.GetBytes(SecretLength));

    /// <param name="text">The candidate token.</param>
    /// <param name="credential">The parsed token, when valid.</param>
    /// <param name="problem">Why the text is not a token (never echoing the secret); empty when it is one.</param>
    public static bool TryParse(
        string? text,
        [NotNullWhen(true)] out TokenCredential? credential,
        out string problem)
    {
        credential = null;
        if (string.IsNullOrEmpty(text))
        {
            problem = "the token is empty";
            return false;
        }

        var dot = text.IndexOf('.', StringComparison.Ordinal);
        if (dot < 0)
        {
            problem = "a token has the form <id>.<secret>";
            return false;
        }

        var tokenId = text[..dot];
        if (!IsTokenId(tokenId))
        {
            problem = $"the token id must be {TokenIdLength} lowercase hex characters";
            return false;
        }

        var secretText = text.AsSpan(dot + 1);
        var secret = new byte[SecretLength];
        if (secretText.Length != SecretTextLength
            || Base64Url.DecodeFromChars(secretText, secret, out _, out var written) != OperationStatus.Done
            || written != SecretLength
            // Only the canonical encoding: a second spelling of the same secret would be a second token text.
            || !secretText.SequenceEqual(Base64Url.EncodeToString(secret)))
        {
            problem = $"the secret of token {tokenId} must be {SecretLength} bytes in base64url without padding";
            return false;
        }

        credential = new TokenCredential(tokenId, secret);
        problem = string.Empty;
        return true;
    }

    public static bool IsTokenId([NotNullWhen(true)] string? tokenId) =>
        tokenId is { Length: TokenIdLength } && tokenId.All(c => c is (>= '0' and <= '9') or (>= 'a' and <= 'f'));

    /// <summary>
    /// Whether two hex SHA-256 digests are equal, in time independent of where they differ; malformed input is
    /// never equal.
    /// </summary>
    public static bool DigestsEqual(string? storedSha256, string? presentedSha256)
    {
        Span<byte> stored = stackalloc byte[SHA256.HashSizeInBytes];
        Span<byte> presented = stackalloc byte[SHA256.HashSizeInBytes];
        return TryDecodeDigest(storedSha256, stored)
               && TryDecodeDigest(presentedSha256, presented)
               && CryptographicOperations.FixedTimeEquals(stored, presented);
    }

    /// <summary>Whether <paramref name="sha256"/> is a SHA-256 digest in hex.</summary>
    public static bool IsDigest(string? sha256) => TryDecodeDigest(sha256, stackalloc byte[SHA256.HashSizeInBytes]);

    /// <summary>Never the secret: a credential that ends up in a log shows its id only.</summary>
    public override string ToString() => $"{TokenId}.<secret>";

    private static bool TryDecodeDigest(string? hex, Span<byte> digest) =>
        hex is { Length: SHA256.HashSizeInBytes * 2 }
        && Convert.FromHexString(hex, digest, out _, out var written) == OperationStatus.Done
        && written == SHA256.HashSizeInBytes;
}
