using Google.Protobuf.Reflection;
using Grpc.Core;

namespace MyDvpn.Protocol.Control;

/// <summary>
/// How a <see cref="RefusalReason"/> crosses the wire: its proto enum name (e.g. <c>BAD_SIGNATURE</c>)
/// in the trailer <c>mydvpn-reason</c> of the gRPC status that ends a call. One place for both ends.
/// </summary>
public static class RefusalReasons
{
    public const string TrailerName = "mydvpn-reason";

    private static readonly EnumDescriptor Descriptor =
        ControlReflection.Descriptor.EnumTypes.Single(e => e.ClrType == typeof(RefusalReason));

    public static string WireName(RefusalReason reason) =>
        Descriptor.FindValueByNumber((int)reason)?.Name ?? reason.ToString();

    public static bool TryParse(string? wireName, out RefusalReason reason)
    {
        reason = RefusalReason.Unspecified;
        if (wireName is null || Descriptor.FindValueByName(wireName) is not { } value)
            return false;
        reason = (RefusalReason)value.Number;
        return true;
    }

    /// <summary>
    /// A status (the reason's, from the <see cref="RefusalCatalogue"/>) whose detail starts with the reason's name and whose
    /// trailer carries it.
    /// </summary>
    public static RpcException ToRpcException(RefusalReason reason, string detail) =>
        ToRpcException(reason, RefusalCatalogue.StatusOf(reason), detail);

    private static RpcException ToRpcException(RefusalReason reason, StatusCode code, string detail) =>
        new(new Status(code, $"{WireName(reason)}: {detail}"), new Metadata { { TrailerName, WireName(reason) } });

    /// <summary>
    /// The refusal's words without the reason's name that <see cref="ToRpcException(RefusalReason, string)"/> puts in
    /// front of them (for readers that see no trailers): what a caller that names the reason itself shows, so that the
    /// name is not said twice.
    /// </summary>
    public static string DetailOf(RpcException exception)
    {
        var detail = exception.Status.Detail ?? "";
        var name = exception.Trailers.GetValue(TrailerName);
        return name is not null && detail.StartsWith(name + ": ", StringComparison.Ordinal) ? detail[(name.Length + 2)..] : detail;
    }

    /// <summary>The reason a call was refused with, if it carried one.</summary>
    public static RefusalReason? Of(RpcException exception) =>
        TryParse(exception.Trailers.GetValue(TrailerName), out var reason) ? reason : null;
}
