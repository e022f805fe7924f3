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
    /// <summary>Stream opens per source IP: burst and refill per second (token bucket).</summary>
    public int PerSourceBurst { get; init; } = 50;
    public int PerSourcePerSecond { get; init; } = 20;
    /// <summary>Authentication attempts per peer id: burst and refill per second.</summary>
    public int PerPeerBurst { get; init; } = 5;
    public int PerPeerPerSecond { get; init; } = 1;
    /// <summary>Messages queued for one peer before the stream counts as stuck and is closed.</summary>
    public int OutboundQueue { get; init; } = 256;

    public static readonly EdgeSettings Default = new();
}
