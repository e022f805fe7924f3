using Grpc.Core;
using MyDvpn.Protocol.Control;

namespace MyDvpn.Peer.Control;

/// <summary>Why a control stream ended, and whether trying again can help.</summary>
/// <param name="Reason">The SuperNode's reason (trailer <c>mydvpn-reason</c>); null when it gave none or one this version does not know.</param>
/// <param name="ReasonName">The reason as sent, e.g. <c>REVOKED</c>.</param>
/// <param name="Description">Words for the log.</param>
/// <param name="Detail">A refusal's own words from the SuperNode, without the reason's name; null for an end that is no refusal.</param>
public sealed record StreamEnd(RefusalReason? Reason, string? ReasonName, bool Permanent, string Description, string? Detail = null);

/// <summary>
/// Reads the refusal reason off a failed control stream (<see cref="RefusalReasons"/>) and takes what it means from the
/// <see cref="RefusalCatalogue"/>, shared with the SuperNode: whether it is permanent, and the operator's advice. This
/// agent adds only what the catalogue cannot know (its peer id, whether it enrolled before, its flags).
/// </summary>
public static class Refusals
{
    /// <summary>What ended a stream: <paramref name="cause"/> null when the SuperNode closed it cleanly.</summary>
    public static StreamEnd Classify(Exception? cause)
    {
        switch (cause)
        {
            case null:
                return new StreamEnd(null, null, false, "the SuperNode closed the stream");
            case RpcException rpc:
                var name = rpc.Trailers.GetValue(RefusalReasons.TrailerName);
                if (name is null)
                {
                    var detail = string.IsNullOrEmpty(rpc.Status.Detail) ? rpc.StatusCode.ToString() : $"{rpc.StatusCode}: {rpc.Status.Detail}";
                    // "Error connecting to subchannel" says little; the socket error says what went wrong.
                    if (rpc.Status.DebugException is { } inner)
                        detail += $" ({inner.Message})";
                    return new StreamEnd(null, null, false, detail);
                }
                // A reason this version does not know is retried: a newer SuperNode may send it for something that passes.
                RefusalReason? reason = RefusalReasons.TryParse(name, out var parsed) ? parsed : null;
                var permanent = reason is { } r && RefusalCatalogue.IsPermanent(r);
                // The status detail starts with the reason's name too: said once, here.
                var words = RefusalReasons.DetailOf(rpc);
                return new StreamEnd(reason, name, permanent, $"refused with {name} ({words})", words);
            default:
                return new StreamEnd(null, null, false, cause.Message);
        }
    }

    /// <summary>
    /// What the operator reads when the SuperNode refused this peer's stream with <paramref name="reason"/>: the
    /// catalogue's advice, and in brackets what only this agent knows.
    /// </summary>
    /// <param name="enrolled">Whether the state directory records that this identity enrolled before.</param>
    public static string Explain(RefusalReason reason, PeerSettings settings, bool enrolled) =>
        WithContext(reason, reason switch
        {
            RefusalReason.Replaced =>
                $"peer id '{settings.Id}'; this agent stops, so that the two do not keep replacing each other",
            RefusalReason.UnknownPeer when enrolled =>
                $"this agent enrolled before: its record is {EnrollmentRecord.PathIn(settings.StateDir)}",
            RefusalReason.RoleNotAllowed => $"--role is '{settings.Role.ToString().ToLowerInvariant()}'",
            RefusalReason.WrongRegion => $"--region is '{settings.Region}'",
            _ => null,
        });

    /// <summary>What the operator reads when the SuperNode refused an ExitRequest with <paramref name="reason"/>.</summary>
    public static string ExplainExitRefusal(RefusalReason reason, string? exitRegion) =>
        WithContext(reason, reason == RefusalReason.UnknownRegion ? $"--exit-region is '{exitRegion}'" : null);

    /// <summary>Whether an ExitRequestFailed with <paramref name="reason"/> is asked again: unless the catalogue says it is permanent.</summary>
    public static bool RetriesExitRequest(RefusalReason reason) => !RefusalCatalogue.IsPermanent(reason);

    /// <summary>The gRPC status as named in the gRPC spec (e.g. <c>RESOURCE_EXHAUSTED</c>); the number if it is none.</summary>
    public static string GrpcStatusName(int code)
    {
        var status = (StatusCode)code;
        if (!Enum.IsDefined(status))
            return code.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var name = status.ToString();
        var builder = new System.Text.StringBuilder(name.Length + 4);
        for (var i = 0; i < name.Length; i++)
        {
            if (i > 0 && char.IsUpper(name[i]) && char.IsLower(name[i - 1]))
                builder.Append('_');
            builder.Append(char.ToUpperInvariant(name[i]));
        }
        return builder.ToString();
    }

    private static string WithContext(RefusalReason reason, string? context)
    {
        var advice = RefusalCatalogue.AdviceFor(reason);
        return context is null ? advice : $"{advice} ({context})";
    }
}
