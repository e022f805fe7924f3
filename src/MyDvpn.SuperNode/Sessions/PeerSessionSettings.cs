namespace MyDvpn.SuperNode.Sessions;

/// <summary>
/// Timing and limits of a <see cref="PeerSession"/>. A command is delivered at most <paramref name="MaxAttempts"/>
/// times while a stream is attached; after each delivery the session waits <paramref name="AckTimeout"/> for the
/// answer, then <paramref name="RetryBackoff"/> × 2^n (n = deliveries so far − 1, capped at
/// <paramref name="MaxRetryBackoff"/>) before the next one, never past the command's deadline. A command issued
/// without a deadline gets <paramref name="DefaultDeadline"/>. The ids of the last
/// <paramref name="RememberCompleted"/> finished commands are kept so late duplicate answers are recognised, and a
/// snapshot is saved every <paramref name="SnapshotEvery"/> events. Bound from configuration (<c>Super:Sessions:…</c>,
/// environment <c>MYDVPN__SUPER__SESSIONS__…</c>) like the SuperNode's other settings.
/// </summary>
public sealed record PeerSessionSettings(
    TimeSpan AckTimeout,
    int MaxAttempts,
    TimeSpan RetryBackoff,
    TimeSpan MaxRetryBackoff,
    TimeSpan DefaultDeadline,
    int RememberCompleted,
    int SnapshotEvery)
{
    public static readonly PeerSessionSettings Default = new();

    /// <summary>The defaults: for configuration binding, which sets what the operator gives.</summary>
    public PeerSessionSettings()
        : this(TimeSpan.FromSeconds(3), 4, TimeSpan.FromMilliseconds(500), TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(30), 1000, 200)
    {
    }

    /// <summary>
    /// How long an enrollment-token redemption may take before the peer is refused with
    /// <c>RefusalReason.Unavailable</c> (the client's own timeout may be shorter).
    /// </summary>
    public TimeSpan EnrollmentTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// A session with no attached stream, no command in flight and no enrollment under way asks its shard to
    /// passivate it after this long without a message; null: never (sharding's own idle passivation must then be
    /// on, see <see cref="PeerSession"/>).
    /// </summary>
    public TimeSpan? PassivateIdleAfter { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>
    /// The wait after delivery number <paramref name="deliveries"/> (1-based) of a command: the ack timeout, plus
    /// the backoff before the next delivery when one is still allowed. The caller caps it at the deadline.
    /// </summary>
    public TimeSpan WaitAfterDelivery(int deliveries) =>
        deliveries < MaxAttempts ? AckTimeout + Backoff(deliveries - 1) : AckTimeout;

    /// <summary><see cref="RetryBackoff"/> × 2^<paramref name="retry"/>, capped at <see cref="MaxRetryBackoff"/>.</summary>
    public TimeSpan Backoff(int retry)
    {
        var backoff = RetryBackoff;
        for (var i = 0; i < retry && backoff < MaxRetryBackoff; i++)
        {
            backoff += backoff;
        }

        return backoff < MaxRetryBackoff ? backoff : MaxRetryBackoff;
    }

    /// <summary>Throws <see cref="ArgumentException"/> naming the setting that is wrong and why.</summary>
    public void Validate()
    {
        Positive(AckTimeout, nameof(AckTimeout));
        Positive(RetryBackoff, nameof(RetryBackoff));
        Positive(DefaultDeadline, nameof(DefaultDeadline));
        Positive(EnrollmentTimeout, nameof(EnrollmentTimeout));
        if (PassivateIdleAfter is { } idle)
        {
            Positive(idle, nameof(PassivateIdleAfter));
        }

        if (MaxRetryBackoff < RetryBackoff)
        {
            throw new ArgumentException(
                $"{nameof(MaxRetryBackoff)} ({MaxRetryBackoff}) must not be shorter than {nameof(RetryBackoff)} ({RetryBackoff}).",
                nameof(MaxRetryBackoff));
        }

        AtLeastOne(MaxAttempts, nameof(MaxAttempts));
        AtLeastOne(RememberCompleted, nameof(RememberCompleted));
        AtLeastOne(SnapshotEvery, nameof(SnapshotEvery));
    }

    private static void Positive(TimeSpan value, string name)
    {
        if (value <= TimeSpan.Zero)
        {
            throw new ArgumentException($"{name} must be positive, was {value}.", name);
        }
    }

    private static void AtLeastOne(int value, string name)
    {
        if (value < 1)
        {
            throw new ArgumentException($"{name} must be at least 1, was {value}.", name);
        }
    }
}
