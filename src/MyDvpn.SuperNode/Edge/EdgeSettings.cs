namespace MyDvpn.SuperNode.Edge;

/// <summary>Timing and limits of the peers' gRPC edge. Bound from configuration (Super:Edge:…).</summary>
public sealed record EdgeSettings
{
    /// <summary>How long a peer has to send its AuthRequest after the stream opens.</summary>
    public TimeSpan AuthTimeout { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>A challenge answered later than this is refused as expired.</summary>
    public TimeSpan ChallengeLifetime { get; init; } = TimeSpan.FromSeconds(5);
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
    /// <summary>Messages queued for one peer before the stream counts as stuck and is closed.</summary>
    public int OutboundQueue { get; init; } = 256;

    public static readonly EdgeSettings Default = new();
}
