using System.Security.Cryptography;

namespace MyDvpn.SuperNode.Edge;

/// <summary>
/// The challenges this SuperNode handed out: fresh random bytes per stream, each good for one answer within its lifetime.
/// Remembering them for <see cref="EdgeSettings.ChallengesKeptFor"/> past their expiry lets a replayed AuthRequest be named
/// as such. Bounded so that a flood of streams that never answer cannot grow it: at most
/// <see cref="EdgeSettings.MaxChallengesPerSource"/> outstanding (issued to a stream still authenticating) per source and
/// <see cref="EdgeSettings.MaxChallenges"/> held in all. Thread-safe.
/// </summary>
public sealed class ChallengeBook(TimeProvider time, EdgeSettings settings)
{
    public const int Size = 32;
    private readonly Dictionary<string, Entry> issued = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> outstanding = new(StringComparer.Ordinal);
    private readonly Lock gate = new();
    private DateTimeOffset lastSweep = DateTimeOffset.MinValue;

    public ChallengeBook(TimeProvider time)
        : this(time, EdgeSettings.Default)
    {
    }

    public enum Verdict { Fresh, Replayed, Expired, Unknown }

    /// <summary>Challenges held (outstanding, answered or expired, until they are forgotten).</summary>
    public int Count
    {
        get
        {
            lock (gate)
                return issued.Count;
        }
    }

    /// <summary>Challenges outstanding for <paramref name="source"/> (an address, or what <see cref="EdgeRateLimits.SourceKey"/> makes of it).</summary>
    public int OutstandingFor(string source)
    {
        lock (gate)
            return outstanding.GetValueOrDefault(EdgeRateLimits.SourceKey(source));
    }

    /// <summary>
    /// A fresh challenge for a stream from <paramref name="source"/>, or null and why not in words (too many outstanding
    /// for the source, or in all). Every challenge issued is <see cref="Settle"/>d when its stream's authentication ends.
    /// </summary>
    public byte[]? Issue(string source, TimeSpan lifetime, out DateTimeOffset expiresAt, out string? refusal)
    {
        var key = EdgeRateLimits.SourceKey(source);
        var now = time.GetUtcNow();
        expiresAt = now + lifetime;
        lock (gate)
        {
            Sweep(now, force: issued.Count >= settings.MaxChallenges);
            var pending = outstanding.GetValueOrDefault(key);
            if (pending >= settings.MaxChallengesPerSource)
            {
                refusal = $"{pending} streams from {key} are still answering their challenges (at most {settings.MaxChallengesPerSource}); "
                          + "answer or close them first";
                return null;
            }
            if (issued.Count >= settings.MaxChallenges)
            {
                refusal = $"this SuperNode holds its maximum of {settings.MaxChallenges} challenges; retry";
                return null;
            }
            var challenge = RandomNumberGenerator.GetBytes(Size);
            issued[Convert.ToBase64String(challenge)] = new Entry(expiresAt, false);
            outstanding[key] = pending + 1;
            refusal = null;
            return challenge;
        }
    }

    /// <summary>The authentication of a stream from <paramref name="source"/> ended (answered, refused or abandoned).</summary>
    public void Settle(string source)
    {
        var key = EdgeRateLimits.SourceKey(source);
        lock (gate)
        {
            if (!outstanding.TryGetValue(key, out var pending))
                return;
            if (pending <= 1)
                outstanding.Remove(key);
            else
                outstanding[key] = pending - 1;
        }
    }

    /// <summary>Uses up the challenge this stream was given, telling why it cannot be used.</summary>
    public Verdict Consume(ReadOnlySpan<byte> issuedToThisStream, ReadOnlySpan<byte> echoed)
    {
        var echoedKey = Convert.ToBase64String(echoed);
        lock (gate)
        {
            if (!issuedToThisStream.SequenceEqual(echoed))
                return issued.ContainsKey(echoedKey) ? Verdict.Replayed : Verdict.Unknown;
            if (!issued.TryGetValue(echoedKey, out var entry))
                return Verdict.Unknown;
            if (entry.Used)
                return Verdict.Replayed;
            issued[echoedKey] = entry with { Used = true };
            return time.GetUtcNow() > entry.Expires ? Verdict.Expired : Verdict.Fresh;
        }
    }

    /// <summary>
    /// Forgets challenges more than <see cref="EdgeSettings.ChallengesKeptFor"/> past their expiry: every tenth of that, or
    /// when the book is full at most once a second (so a flood does not make every stream walk the book).
    /// </summary>
    private void Sweep(DateTimeOffset now, bool force)
    {
        var every = settings.ChallengesKeptFor / 10;
        if (force && every > TimeSpan.FromSeconds(1))
            every = TimeSpan.FromSeconds(1);
        if (now - lastSweep < every)
            return;
        lastSweep = now;
        foreach (var (key, entry) in issued)
        {
            if (now - entry.Expires > settings.ChallengesKeptFor)
                issued.Remove(key);
        }
    }

    private readonly record struct Entry(DateTimeOffset Expires, bool Used);
}
