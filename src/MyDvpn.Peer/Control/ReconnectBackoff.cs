namespace MyDvpn.Peer.Control;

/// <summary>
/// Exponential backoff with full jitter: the n-th wait since the last reset is uniform in
/// [0, min(cap, base × factor^n)], so a SuperNode that comes back is not hit by all its peers at once.
/// Not thread-safe: one owner (the <see cref="ControlChannel"/>).
/// </summary>
public sealed class ReconnectBackoff
{
    private readonly TimeSpan initial;
    private readonly TimeSpan cap;
    private readonly double factor;
    private readonly Random random;

    public ReconnectBackoff(TimeSpan initial, TimeSpan cap, Random random, double factor = 2)
    {
        if (initial <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(initial), initial, "must be positive");
        if (cap < initial)
            throw new ArgumentOutOfRangeException(nameof(cap), cap, "must be at least the initial delay");
        if (factor < 1)
            throw new ArgumentOutOfRangeException(nameof(factor), factor, "must be at least 1");
        this.initial = initial;
        this.cap = cap;
        this.factor = factor;
        this.random = random;
    }

    /// <summary>Waits since the last <see cref="Reset"/>.</summary>
    public int Attempt { get; private set; }

    /// <summary>The longest the next wait can be.</summary>
    public TimeSpan Ceiling
    {
        get
        {
            var ticks = initial.Ticks * Math.Pow(factor, Attempt);
            return ticks >= cap.Ticks ? cap : TimeSpan.FromTicks((long)ticks);
        }
    }

    /// <summary>The next wait, and one step up the schedule.</summary>
    public TimeSpan Next()
    {
        var ceiling = Ceiling;
        // Stop counting once capped: the schedule cannot rise further and the exponent cannot overflow.
        if (ceiling < cap)
            Attempt++;
        return TimeSpan.FromTicks((long)(random.NextDouble() * ceiling.Ticks));
    }

    /// <summary>Back to the first step, after a connection that proved stable.</summary>
    public void Reset() => Attempt = 0;
}
