using Grpc.Core;
using MyDvpn.Protocol.Control;

namespace MyDvpn.Peer.Control;

/// <summary>Why a control stream ended, and whether trying again can help.</summary>
/// <param name="Reason">The SuperNode's reason (trailer <c>mydvpn-reason</c>); null when it gave none.</param>
/// <param name="ReasonName">The reason as sent, e.g. <c>REVOKED</c>.</param>
/// <param name="Description">Words for the log.</param>
public sealed record StreamEnd(RefusalReason? Reason, string? ReasonName, bool Permanent, string Description);

/// <summary>
/// Reads the refusal reason off a failed control stream (<see cref="RefusalReasons"/>, shared with the SuperNode) and
/// sorts it into permanent and transient.
/// </summary>
public static class Refusals
{
    /// <summary>Reasons no retry can fix: the operator must act (re-enroll, fix the configuration, unrevoke).</summary>
    public static readonly IReadOnlySet<RefusalReason> Permanent = new HashSet<RefusalReason>
    {
        RefusalReason.BadSignature,
        RefusalReason.UnknownPeer,
        RefusalReason.BadToken,
        RefusalReason.TokenUsedUp,
        RefusalReason.TokenExpired,
        RefusalReason.Revoked,
        RefusalReason.RoleNotAllowed,
        RefusalReason.WrongRegion,
        RefusalReason.MalformedMessage,
        // Another agent with this peer's id took over; fighting it back would only make both flap.
        RefusalReason.Replaced,
    };

    /// <summary>What ended a stream: <paramref name="cause"/> null when the SuperNode closed it cleanly.</summary>
    public static StreamEnd Classify(Exception? cause)
    {
        switch (cause)
        {
            case null:
                return new StreamEnd(null, null, false, "the SuperNode closed the stream");
            case RpcException rpc:
                var name = rpc.Trailers.GetValue(RefusalReasons.TrailerName);
                var detail = string.IsNullOrEmpty(rpc.Status.Detail) ? rpc.StatusCode.ToString() : $"{rpc.StatusCode}: {rpc.Status.Detail}";
                // "Error connecting to subchannel" says little; the socket error says what went wrong.
                if (rpc.Status.DebugException is { } inner)
                    detail += $" ({inner.Message})";
                if (name is null)
                    return new StreamEnd(null, null, false, detail);
                RefusalReason? reason = RefusalReasons.TryParse(name, out var parsed) ? parsed : null;
                var permanent = reason is { } r && Permanent.Contains(r);
                return new StreamEnd(reason, name, permanent, $"refused with {name} ({detail})");
            default:
                return new StreamEnd(null, null, false, cause.Message);
        }
    }
}
