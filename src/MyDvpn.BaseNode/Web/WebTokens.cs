using System.Buffers.Text;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace MyDvpn.BaseNode.Web;

/// <summary>Who a web token was made for and until when.</summary>
public sealed record WebTokenClaims(string Admin, DateTimeOffset IssuedAt, DateTimeOffset ExpiresAt);

/// <summary>
/// The login tokens of the web topology page: <c>v1.&lt;payload&gt;.&lt;mac&gt;</c>, the payload (admin name, issued and
/// expiry in Unix seconds, a nonce) and an HMAC-SHA256 of <c>v1.&lt;payload&gt;</c>, both base64url without padding. The key
/// is random per instance and never leaves memory: a token is valid on the BaseNode that made it, until it expires or that
/// BaseNode restarts. Thread-safe.
/// </summary>
public sealed class WebTokens
{
    private const string Version = "v1";
    private const int KeyLength = 32;
    private const int NonceLength = 16;

    /// <summary>The longest text taken for a token: anything longer is refused before it is decoded.</summary>
    public const int MaxTokenLength = 512;

    private readonly byte[] key;
    private readonly TimeProvider time;

    public WebTokens(TimeProvider time)
        : this(RandomNumberGenerator.GetBytes(KeyLength), time)
    {
    }

    /// <summary>With a given key: tests, to show that a token from another key is refused.</summary>
    public WebTokens(byte[] key, TimeProvider time)
    {
        if (key.Length < KeyLength)
            throw new ArgumentException($"a web token key has at least {KeyLength} bytes", nameof(key));
        this.key = [.. key];
        this.time = time;
    }

    /// <summary>A token for <paramref name="admin"/> (the CN of its admin certificate) valid for <paramref name="lifetime"/>.</summary>
    public (string Token, DateTimeOffset ExpiresAt) Issue(string admin, TimeSpan lifetime)
    {
        if (lifetime <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(lifetime), lifetime, "a web token's lifetime must be positive");
        var now = time.GetUtcNow();
        // Whole seconds, as the payload carries them.
        var issued = DateTimeOffset.FromUnixTimeSeconds(now.ToUnixTimeSeconds());
        var expires = issued + TimeSpan.FromSeconds(Math.Ceiling(lifetime.TotalSeconds));
        var payload = string.Join('\n',
            admin,
            issued.ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture),
            expires.ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture),
            Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(NonceLength)));
        var signed = $"{Version}.{Base64Url.EncodeToString(Encoding.UTF8.GetBytes(payload))}";
        return ($"{signed}.{Base64Url.EncodeToString(Mac(signed))}", expires);
    }

    /// <param name="problem">Why the token is refused, in words for the 401 (never echoing the token); empty when valid.</param>
    public bool TryVerify(string? token, [NotNullWhen(true)] out WebTokenClaims? claims, out string problem)
    {
        claims = null;
        if (string.IsNullOrEmpty(token))
        {
            problem = "the token is empty";
            return false;
        }
        var parts = token.Length <= MaxTokenLength ? token.Split('.') : [];
        if (parts.Length != 3 || parts[0] != Version || !TryDecode(parts[2], out var mac))
        {
            problem = "it is not a web token (make one with `mydvpn admin web-token`)";
            return false;
        }
        // The MAC first: nothing of a payload is believed before it is known to be this BaseNode's.
        if (!CryptographicOperations.FixedTimeEquals(mac, Mac($"{parts[0]}.{parts[1]}")))
        {
            problem = "its signature does not match: it was altered, or made by another BaseNode, or by this one before it restarted "
                      + "(a token is valid only on the BaseNode that made it); make a new one with `mydvpn admin web-token`";
            return false;
        }
        if (!TryDecode(parts[1], out var payloadBytes)
            || Encoding.UTF8.GetString(payloadBytes).Split('\n') is not [var admin, var issuedText, var expiresText, _]
            || !long.TryParse(issuedText, NumberStyles.None, CultureInfo.InvariantCulture, out var issuedSeconds)
            || !long.TryParse(expiresText, NumberStyles.None, CultureInfo.InvariantCulture, out var expiresSeconds))
        {
            // Signed by this key but not made by Issue: cannot happen unless the key leaked.
            problem = "its payload is not a web token's";
            return false;
        }
        var issued = DateTimeOffset.FromUnixTimeSeconds(issuedSeconds);
        var expires = DateTimeOffset.FromUnixTimeSeconds(expiresSeconds);
        if (time.GetUtcNow() >= expires)
        {
            problem = $"it expired at {expires.ToString("u", CultureInfo.InvariantCulture)}; make a new one with `mydvpn admin web-token`";
            return false;
        }
        claims = new WebTokenClaims(admin, issued, expires);
        problem = "";
        return true;
    }

    private byte[] Mac(string signed) => HMACSHA256.HashData(key, Encoding.ASCII.GetBytes(signed));

    private static bool TryDecode(string text, out byte[] bytes)
    {
        bytes = [];
        if (!Base64Url.IsValid(text.AsSpan(), out var length))
            return false;
        bytes = new byte[length];
        return Base64Url.DecodeFromChars(text, bytes, out _, out var written) == System.Buffers.OperationStatus.Done && written == length;
    }
}
