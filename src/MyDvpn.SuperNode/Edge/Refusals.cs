using Grpc.Core;
using Microsoft.Extensions.Logging;
using MyDvpn.Protocol.Control;
using Prometheus;

namespace MyDvpn.SuperNode.Edge;

/// <summary>Ends a peer's stream with a gRPC status and a machine-readable reason.</summary>
public sealed class StreamRefusal(RefusalReason reason, string detail) : Exception(detail)
{
    public RefusalReason Reason { get; } = reason;
    public string Detail { get; } = detail;

    /// <summary>The refusal as the call's end: the reason's status from the refusal catalogue, the reason in the trailer.</summary>
    public RpcException ToRpcException() => RefusalReasons.ToRpcException(Reason, Detail);
}

/// <summary>Counts and logs refusals as security events (not the ordinary closes).</summary>
public sealed class EdgeSecurityLog(ILogger<EdgeSecurityLog> logger)
{
    private static readonly Counter Refusals = Metrics.CreateCounter(
        "mydvpn_auth_refusals_total", "Peer streams refused or closed, by reason.", "reason");
    private static readonly Counter Authenticated = Metrics.CreateCounter(
        "mydvpn_auth_success_total", "Peer streams authenticated.");

    public void Refused(StreamRefusal refusal, string? peerId, string source)
    {
        Refusals.WithLabels(RefusalReasons.WireName(refusal.Reason)).Inc();
        if (refusal.Reason is RefusalReason.Replaced or RefusalReason.HeartbeatTimeout)
            logger.LogInformation("Stream of peer {PeerId} from {Source} closed: {Reason} ({Detail})",
                peerId, source, RefusalReasons.WireName(refusal.Reason), refusal.Detail);
        else
            logger.LogWarning("Security event: stream of peer {PeerId} from {Source} refused: {Reason} ({Detail})",
                peerId ?? "(none)", source, RefusalReasons.WireName(refusal.Reason), refusal.Detail);
    }

    public static void Accepted() => Authenticated.Inc();

    /// <summary>Every refusal reason at zero before the first (a reason first seen would otherwise start a series mid-way).</summary>
    public static void ShowAtZero()
    {
        foreach (var reason in Enum.GetValues<RefusalReason>().Where(r => r != RefusalReason.Unspecified))
            Refusals.WithLabels(RefusalReasons.WireName(reason));
    }
}
