namespace MyDvpn.SuperNode.Edge;

/// <summary>Timing and limits of the peers' gRPC edge. Bound from configuration (Super:Edge:…).</summary>
public sealed record EdgeSettings
{
    /// <summary>How long a peer has to send its AuthRequest after the stream opens.</summary>
    public TimeSpan AuthTimeout { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>A challenge answered later than this is refused as expired.</summary>
    public TimeSpan ChallengeLifetime { get; init; } = TimeSpan.FromSeconds(5);
    /// <summary>How long past its expiry a challenge is remembered, to name a replay of it as one (later it is unknown: refused too).</summary>
    public TimeSpan ChallengesKeptFor { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>Streams of one source (an IPv4 address, an IPv6 /64) still answering their challenge at once.</summary>
    public int MaxChallengesPerSource { get; init; } = 64;
    /// <summary>Challenges held in all (outstanding, and remembered for <see cref="ChallengesKeptFor"/>).</summary>
    public int MaxChallenges { get; init; } = 100_000;
    public TimeSpan HeartbeatInterval { get; init; } = TimeSpan.FromSeconds(5);
    /// <summary>A stream silent this long (no Pong, no message) is closed.</summary>
    public TimeSpan HeartbeatTimeout { get; init; } = TimeSpan.FromSeconds(15);
    /// <summary>How long the edge waits for the peer's session; longer than its enrollment timeout (10 s).</summary>
    public TimeSpan SessionTimeout { get; init; } = TimeSpan.FromSeconds(15);
    /// <summary>Stream opens before authentication per source (an IPv4 address, an IPv6 /64): burst and refill per second (token bucket).</summary>
    public int PerSourceBurst { get; init; } = 50;
    public int PerSourcePerSecond { get; init; } = 20;
    /// <summary>
    /// Stream opens before authentication from all sources together: burst and refill per second. Sized for every peer
    /// of a full SuperNode coming back at once after a restart (10,000 within 10 s).
    /// </summary>
    public int GlobalBurst { get; init; } = 10_000;
    public int GlobalPerSecond { get; init; } = 2_000;
    /// <summary>Streams per peer id whose signature was verified (never charged by attempts that failed): burst and refill per second.</summary>
    public int PerPeerBurst { get; init; } = 5;
    public int PerPeerPerSecond { get; init; } = 1;
    /// <summary>
    /// Logins that present an enrollment token (each one a redemption at the directory) per source: burst and refill per
    /// second. Charged before the peer's session is asked, so junk tokens cost their sender, never the BaseNodes.
    /// </summary>
    public int RedeemPerSourceBurst { get; init; } = 10;
    public double RedeemPerSourcePerSecond { get; init; } = 0.5;
    /// <summary>Logins that present an enrollment token, from all sources together: burst and refill per second.</summary>
    public int RedeemGlobalBurst { get; init; } = 200;
    public double RedeemGlobalPerSecond { get; init; } = 20;
    /// <summary>Messages queued for one peer before the stream counts as stuck and is closed.</summary>
    public int OutboundQueue { get; init; } = 256;
    /// <summary>What an authenticated stream may send, by kind of message (Super:Edge:Messages:…).</summary>
    public StreamMessageRates Messages { get; init; } = new();

    public static readonly EdgeSettings Default = new();

    /// <summary>Refuses a setting that cannot work; the exception's ParamName is the setting's name under Super:Edge.</summary>
    public void Validate()
    {
        Positive(ChallengeLifetime, nameof(ChallengeLifetime));
        Positive(ChallengesKeptFor, nameof(ChallengesKeptFor));
        AtLeastOne(MaxChallengesPerSource, nameof(MaxChallengesPerSource));
        AtLeastOne(MaxChallenges, nameof(MaxChallenges));
        AtLeastOne(RedeemPerSourceBurst, nameof(RedeemPerSourceBurst));
        AtLeastOne(RedeemGlobalBurst, nameof(RedeemGlobalBurst));
        if (!(RedeemPerSourcePerSecond > 0))
            throw new ArgumentException($"must be above 0, was {RedeemPerSourcePerSecond}", nameof(RedeemPerSourcePerSecond));
        if (!(RedeemGlobalPerSecond > 0))
            throw new ArgumentException($"must be above 0, was {RedeemGlobalPerSecond}", nameof(RedeemGlobalPerSecond));
        try
        {
            Messages.Validate();
        }
        catch (ArgumentException ex)
        {
            throw new ArgumentException(ex.Message, $"{nameof(Messages)}:{ex.ParamName}", ex);
        }
    }

    private static void Positive(TimeSpan value, string name)
    {
        if (value <= TimeSpan.Zero)
            throw new ArgumentException($"must be positive, was {value}", name);
    }

    private static void AtLeastOne(int value, string name)
    {
        if (value < 1)
            throw new ArgumentException($"must be at least 1, was {value}", name);
    }
}
