using Microsoft.Extensions.Time.Testing;

namespace MyDvpn.TestSupport;

/// <summary>
/// A clock that moves only when a test advances it, and whose timers (<see cref="TimeProvider.CreateTimer"/>) fire then,
/// on the test's thread, in due order — so an actor that takes its time and its timers from it runs on the test's time.
/// Thread-safe (read from actor threads).
/// </summary>
public sealed class ManualTimeProvider(DateTimeOffset start) : FakeTimeProvider(start)
{
    public ManualTimeProvider()
        : this(new DateTimeOffset(2030, 1, 1, 12, 0, 0, TimeSpan.Zero))
    {
    }

    /// <summary>Moves the clock on by <paramref name="by"/>, firing every timer due meanwhile; returns the new time.</summary>
    public new DateTimeOffset Advance(TimeSpan by)
    {
        base.Advance(by);
        return GetUtcNow();
    }
}
