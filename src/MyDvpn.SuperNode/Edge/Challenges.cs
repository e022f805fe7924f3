using System.Collections.Concurrent;
using System.Security.Cryptography;

namespace MyDvpn.SuperNode.Edge;

/// <summary>
/// The challenges this SuperNode handed out: fresh random bytes per stream, each good for one
/// answer within its lifetime. Remembering used ones lets a replayed AuthRequest be named as such.
/// </summary>
public sealed class ChallengeBook(TimeProvider time)
{
    public const int Size = 32;
    private readonly ConcurrentDictionary<string, (DateTimeOffset Expires, bool Used)> issued = new();
    private long lastSweepTicks;

    public enum Verdict { Fresh, Replayed, Expired, Unknown }

    public byte[] Issue(TimeSpan lifetime, out DateTimeOffset expiresAt)
    {
        SweepOccasionally();
        var challenge = RandomNumberGenerator.GetBytes(Size);
        expiresAt = time.GetUtcNow() + lifetime;
        issued[Convert.ToBase64String(challenge)] = (expiresAt, false);
        return challenge;
    }

    /// <summary>Uses up the challenge this stream was given, telling why it cannot be used.</summary>
    public Verdict Consume(ReadOnlySpan<byte> issuedToThisStream, ReadOnlySpan<byte> echoed)
    {
        var echoedKey = Convert.ToBase64String(echoed);
        if (!issuedToThisStream.SequenceEqual(echoed))
            return issued.ContainsKey(echoedKey) ? Verdict.Replayed : Verdict.Unknown;
        if (!issued.TryGetValue(echoedKey, out var entry))
            return Verdict.Unknown;
        if (entry.Used || !issued.TryUpdate(echoedKey, (entry.Expires, true), entry))
            return Verdict.Replayed;
        return time.GetUtcNow() > entry.Expires ? Verdict.Expired : Verdict.Fresh;
    }

    /// <summary>Forgets challenges long past their expiry (kept a while to recognise replays).</summary>
    private void SweepOccasionally()
    {
        var now = time.GetUtcNow();
        var last = Interlocked.Read(ref lastSweepTicks);
        if (now.UtcTicks - last < TimeSpan.TicksPerMinute || Interlocked.CompareExchange(ref lastSweepTicks, now.UtcTicks, last) != last)
            return;
        foreach (var (key, entry) in issued)
            if (now - entry.Expires > TimeSpan.FromMinutes(10))
                issued.TryRemove(key, out _);
    }
}
