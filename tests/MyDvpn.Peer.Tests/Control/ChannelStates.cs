using MyDvpn.Common;
using MyDvpn.Peer.Control;
using MyDvpn.Protocol.Control;

namespace MyDvpn.Peer.Tests.Control;

/// <summary>Settings and helpers for the channel machines' pure tests; time is a plain value moved by hand.</summary>
internal static class ChannelStates
{
    public static readonly DateTimeOffset T0 = new(2030, 1, 1, 12, 0, 0, TimeSpan.Zero);
    public static readonly HostPort A = new("10.0.0.1", 7443), B = new("10.0.0.2", 7443), C = new("10.0.0.3", 7443);
    public static readonly byte[] WireGuardKey = [.. Enumerable.Repeat((byte)0x42, 32)];

    public static readonly PeerTimings Timings = new()
    {
        ReconnectBase = TimeSpan.FromSeconds(1),
        ReconnectCap = TimeSpan.FromSeconds(8),
        StableAfter = TimeSpan.FromSeconds(30),
        AuthTimeout = TimeSpan.FromSeconds(10),
        MissedHeartbeats = 3,
        ExitRequestTimeout = TimeSpan.FromSeconds(30),
        ExitRetryBase = TimeSpan.FromSeconds(2),
        ExitRetryCap = TimeSpan.FromSeconds(30),
        ExitReaskDelay = TimeSpan.FromSeconds(1),
    };

    /// <summary>A peer's settings; the machines use neither its keys nor its CA.</summary>
    public static PeerSettings Settings(PeerRole role = PeerRole.Client, string? token = null, string? exitRegion = "us-east") =>
        new(role, "peer-1", "eu-west", null!, null!, [A, B], token, exitRegion, "/var/lib/mydvpn/peer-1", null!) { Timings = Timings };

    /// <summary>The jitter sample that gives the longest wait: every wait is its backoff's ceiling.</summary>
    public const double Highest = 1.0;

    public static IEnumerable<T> Effects<T, TState>(this Decision<TState> decision) => decision.Effects.OfType<T>();

    /// <summary>The certificate super-a's stream runs over, as the peer's TLS accepted it.</summary>
    public static readonly ServerCertificate SuperA =
        new(MyDvpn.Security.NodeIdentity.Super("super-a", "eu-west"), System.Security.Cryptography.SHA256.HashData("super-a"u8), "0A");

    public static ControlMessage Challenge(string superNodeId = "super-a") =>
        new() { AuthChallenge = new AuthChallenge { SupernodeId = superNodeId, Challenge = Google.Protobuf.ByteString.CopyFrom(1, 2, 3) } };

    public static ControlMessage Authenticated(string sessionId = "s-1", uint heartbeatMs = 1000, string exitAssignmentId = "", params HostPort[] region)
    {
        var response = new AuthResponse { SessionId = sessionId, SupernodeId = "super-a", HeartbeatIntervalMs = heartbeatMs, ExitAssignmentId = exitAssignmentId };
        response.RegionSupernodes.AddRange(region.Select(r => new SuperNodeEndpoint { SupernodeId = r.Host, GrpcEndpoint = r.ToString() }));
        return new ControlMessage { AuthResponse = response };
    }
}
