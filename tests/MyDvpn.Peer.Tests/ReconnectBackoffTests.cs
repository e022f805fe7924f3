using MyDvpn.Peer.Control;

namespace MyDvpn.Peer.Tests;

public sealed class ReconnectBackoffTests
{
    private static readonly TimeSpan Base = TimeSpan.FromMilliseconds(500), Cap = TimeSpan.FromSeconds(30);

    [Fact]
    public void Ceiling_doubles_from_500_ms_and_is_capped_at_30_s()
    {
        var backoff = new ReconnectBackoff(Base, Cap);

        var waits = Enumerable.Range(0, 9).Select(_ => Next(ref backoff, Highest).TotalMilliseconds).ToArray();

        Assert.Equal([500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000], waits);
    }

    [Fact]
    public void Waits_are_full_jitter_below_the_ceiling_and_the_same_for_the_same_seed()
    {
        var backoff = new ReconnectBackoff(Base, Cap);
        var again = new ReconnectBackoff(Base, Cap);
        var samples = new Random(1234);
        var resamples = new Random(1234);
        var draws = new Random(1234);

        for (var attempt = 0; attempt < 12; attempt++)
        {
            var ceiling = backoff.Ceiling;
            var wait = Next(ref backoff, samples.NextDouble());
            Assert.Equal(TimeSpan.FromTicks((long)(draws.NextDouble() * ceiling.Ticks)), wait);
            Assert.Equal(wait, Next(ref again, resamples.NextDouble()));
            Assert.InRange(wait, TimeSpan.Zero, ceiling);
        }
    }

    [Fact]
    public void Waits_are_spread_between_zero_and_the_ceiling()
    {
        var backoff = new ReconnectBackoff(Cap, Cap);
        var samples = new Random(7);

        var waits = Enumerable.Range(0, 200).Select(_ => Next(ref backoff, samples.NextDouble())).ToList();

        Assert.Contains(waits, w => w < TimeSpan.FromSeconds(10));
        Assert.Contains(waits, w => w > TimeSpan.FromSeconds(20));
    }

    [Fact]
    public void Reset_starts_the_schedule_over()
    {
        var backoff = new ReconnectBackoff(Base, Cap);
        for (var i = 0; i < 5; i++)
            Next(ref backoff, Highest);
        Assert.Equal(TimeSpan.FromSeconds(16), backoff.Ceiling);

        backoff = backoff.Reset();

        Assert.Equal(0, backoff.Attempt);
        Assert.Equal(Base, Next(ref backoff, Highest));
        Assert.Equal(TimeSpan.FromSeconds(1), Next(ref backoff, Highest));
    }

    /// <summary>The top of the range, so the wait is its ceiling.</summary>
    private const double Highest = 1.0;

    /// <summary>The next wait for <paramref name="sample"/>, moving <paramref name="backoff"/> one step on.</summary>
    private static TimeSpan Next(ref ReconnectBackoff backoff, double sample)
    {
        var (wait, next) = backoff.Next(sample);
        backoff = next;
        return wait;
    }
}
