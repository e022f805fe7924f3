namespace MyDvpn.TestSupport;

/// <summary>A clock that moves only when a test advances it (read from actor threads, so thread-safe).</summary>
public sealed class ManualTimeProvider(DateTimeOffset start) : TimeProvider
{
    private long _utcTicks = start.UtcTicks;

    public ManualTimeProvider()
        : this(new DateTimeOffset(2030, 1, 1, 12, 0, 0, TimeSpan.Zero))
    {
    }

    public override DateTimeOffset GetUtcNow() => new(Interlocked.Read(ref _utcTicks), TimeSpan.Zero);

    public DateTimeOffset Advance(TimeSpan by) => new(Interlocked.Add(ref _utcTicks, by.Ticks), TimeSpan.Zero);
}
