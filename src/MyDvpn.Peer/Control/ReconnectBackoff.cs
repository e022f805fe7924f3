namespace MyDvpn.Peer.Control;

/// <summary>
/// Exponential backoff with full jitter: the n-th wait since the last reset is uniform in
/// [0, min(cap, base × factor^n)], so a SuperNode that comes back is not hit by all its peers at once. An immutable
/// value: <see cref="Next"/> gives a wait and the schedule one step on, from a uniform sample the caller draws (the
/// machines that hold it stay pure functions).
/// </summary>
public sealed record ReconnectBackoff
{
    public ReconnectBackoff(TimeSpan initial, TimeSpan cap, double factor = 2)
    {
        if (initial <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(initial), initial, "must be positive");
        if (cap < initial)
            throw new ArgumentOutOfRangeException(nameof(cap), cap, "must be at least the initial delay");
        if (factor < 1)
            throw new ArgumentOutOfRangeException(nameof(factor), factor, "must be at least 1");
        Initial = initial;
        Cap = cap;
        Factor = factor;
    }

    public TimeSpan Initial { get; }

    public TimeSpan Cap { get; }

    public double Factor { get; }

    /// <summary>Waits since the last <see cref="Reset"/> (counted until the cap is reached).</summary>
    public int Attempt { get; private init; }

    /// <summary>The longest the next wait can be.</summary>
    public TimeSpan Ceiling
    {
        get
        {
            var ticks = Initial.Ticks * Math.Pow(Factor, Attempt);
            return ticks >= Cap.Ticks ? Cap : TimeSpan.FromTicks((long)ticks);
        }
    }

    /// <summary>The next wait for <paramref name="sample"/> (uniform in [0, 1]), and the schedule one step up.</summary>
    public (TimeSpan Wait, ReconnectBackoff Next) Next(double sample)
    {
        var ceiling = Ceiling;
        // Stop counting once capped: the schedule cannot rise further and the exponent cannot overflow.
        var next = ceiling < Cap ? this with { Attempt = Attempt + 1 } : this;
        return (TimeSpan.FromTicks((long)(Math.Clamp(sample, 0, 1) * ceiling.Ticks)), next);
    }

    /// <summary>Back to the first step, after a connection that proved stable.</summary>
    public ReconnectBackoff Reset() => this with { Attempt = 0 };
}
