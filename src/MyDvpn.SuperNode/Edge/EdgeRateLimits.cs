using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace MyDvpn.SuperNode.Edge;

/// <summary>
/// The edge's rate limits: token buckets on the node's clock. Before a peer has proved who it is, the work it makes
/// (a stream, a challenge, a question to a session) is charged to where it comes from — an IPv4 address, or the /64 an
/// IPv6 address lies in (one subscriber's prefix: an address of its own is free to take) — and to all sources together.
/// A peer id is charged only once its signature was verified (<see cref="AdmitAuthenticated"/>): junk that names a peer
/// from elsewhere costs its sender, never the peer it names. Each method answers null, or why not in words.
/// </summary>
public sealed class EdgeRateLimits
{
    private readonly EdgeSettings settings;
    private readonly TokenBuckets perSource;
    private readonly TokenBuckets global;
    private readonly TokenBuckets perPeer;
    private readonly TokenBuckets redeemPerSource;
    private readonly TokenBuckets redeemGlobal;

    public EdgeRateLimits(EdgeSettings settings, TimeProvider time)
    {
        this.settings = settings;
        perSource = new TokenBuckets(settings.PerSourceBurst, settings.PerSourcePerSecond, time);
        global = new TokenBuckets(settings.GlobalBurst, settings.GlobalPerSecond, time);
        perPeer = new TokenBuckets(settings.PerPeerBurst, settings.PerPeerPerSecond, time);
        redeemPerSource = new TokenBuckets(settings.RedeemPerSourceBurst, settings.RedeemPerSourcePerSecond, time);
        redeemGlobal = new TokenBuckets(settings.RedeemGlobalBurst, settings.RedeemGlobalPerSecond, time);
    }

    /// <summary>A stream opened from <paramref name="source"/> before it authenticated: its source's bucket, then everyone's.</summary>
    public string? AdmitUnauthenticated(string source)
    {
        var key = SourceKey(source);
        if (!perSource.TryTake(key))
            return $"too many stream opens from {key} (at most {settings.PerSourcePerSecond} a second, {settings.PerSourceBurst} at once); back off and retry";
        if (!global.TryTake(""))
            return $"this SuperNode takes at most {settings.GlobalPerSecond} unauthenticated streams a second from all sources; retry";
        return null;
    }

    /// <summary>
    /// A login from <paramref name="source"/> that presents an enrollment token — a redemption at the directory if the peer
    /// is new: its source's bucket, then everyone's. Charged before the peer's session is asked.
    /// </summary>
    public string? AdmitRedemption(string source)
    {
        var key = SourceKey(source);
        if (!redeemPerSource.TryTake(key))
            return $"too many logins with an enrollment token from {key} (at most {settings.RedeemPerSourcePerSecond} a second, {settings.RedeemPerSourceBurst} at once); back off and retry";
        if (!redeemGlobal.TryTake(""))
            return $"this SuperNode redeems at most {settings.RedeemGlobalPerSecond} enrollment tokens a second from all sources; retry";
        return null;
    }

    /// <summary>A stream of <paramref name="peerId"/> whose signature was verified.</summary>
    public string? AdmitAuthenticated(string peerId) =>
        perPeer.TryTake(peerId)
            ? null
            : $"too many streams authenticated as peer {peerId} (at most {settings.PerPeerPerSecond} a second, {settings.PerPeerBurst} at once); back off and retry";

    /// <summary>
    /// What a source is limited as: an IPv4 address (also when written IPv4-mapped), the /64 of an IPv6 address, or the
    /// text as it is when it is no address.
    /// </summary>
    public static string SourceKey(string source)
    {
        if (!IPAddress.TryParse(source, out var address))
            return source;
        if (address.IsIPv4MappedToIPv6)
            address = address.MapToIPv4();
        if (address.AddressFamily != AddressFamily.InterNetworkV6)
            return address.ToString();
        var bytes = address.GetAddressBytes();
        Array.Clear(bytes, 8, 8);
        return string.Create(CultureInfo.InvariantCulture, $"{new IPAddress(bytes)}/64");
    }
}

/// <summary>
/// Token buckets by key on a <see cref="TimeProvider"/>: each holds up to <c>burst</c> tokens and regains
/// <c>perSecond</c> a second; a take without a token is refused (never queued). At most <c>maxKeys</c> buckets are kept:
/// full ones are forgotten first (a full bucket is what a new one would be), and while every one of them is in use a
/// new key is refused. Thread-safe.
/// </summary>
internal sealed class TokenBuckets(int burst, double perSecond, TimeProvider time, int maxKeys = TokenBuckets.DefaultMaxKeys)
{
    public const int DefaultMaxKeys = 100_000;

    private readonly Dictionary<string, Bucket> buckets = new(StringComparer.Ordinal);
    private readonly Lock gate = new();

    public int Count
    {
        get
        {
            lock (gate)
                return buckets.Count;
        }
    }

    public bool TryTake(string key)
    {
        var now = time.GetUtcNow();
        lock (gate)
        {
            if (!buckets.TryGetValue(key, out var bucket))
            {
                if (buckets.Count >= maxKeys && !ForgetFull(now))
                    return false;
                bucket = new Bucket(burst, now);
            }
            var tokens = TokensAt(bucket, now);
            if (tokens < 1)
            {
                buckets[key] = new Bucket(tokens, now);
                return false;
            }
            buckets[key] = new Bucket(tokens - 1, now);
            return true;
        }
    }

    private double TokensAt(Bucket bucket, DateTimeOffset now)
    {
        var elapsed = Math.Max(0, (now - bucket.At).TotalSeconds);
        return Math.Min(burst, bucket.Tokens + (elapsed * perSecond));
    }

    /// <summary>Drops the buckets that are full again; whether that made room.</summary>
    private bool ForgetFull(DateTimeOffset now)
    {
        foreach (var (key, bucket) in buckets)
        {
            if (TokensAt(bucket, now) >= burst)
                buckets.Remove(key);
        }
        return buckets.Count < maxKeys;
    }

    private readonly record struct Bucket(double Tokens, DateTimeOffset At);
}
