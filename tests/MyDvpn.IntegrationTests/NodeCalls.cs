using Grpc.Core;
using MyDvpn.Common;
using MyDvpn.Protocol.Control;
using MyDvpn.Protocol.Directory;

namespace MyDvpn.IntegrationTests;

/// <summary>What the tests of node certificates send as a node, and how they expect a refusal.</summary>
internal static class NodeCalls
{
    /// <summary>A SuperNode's directory report of <paramref name="id"/> in <paramref name="region"/>, reachable at <paramref name="endpoint"/>.</summary>
    public static SuperNodeReport Report(string id, string region, HostPort endpoint) => new()
    {
        Registration = new SuperNodeRegistration
        {
            SupernodeId = id,
            Region = region,
            GrpcEndpoint = endpoint.ToString(),
            PublicIp = "127.0.0.1",
            RelayPortLow = 42000,
            RelayPortHigh = 42099,
            Capacity = 10,
        },
    };

    /// <summary>The call is refused with <c>PERMISSION_DENIED</c> and <paramref name="reason"/>.</summary>
    public static async Task<RpcException> RefusedAsync(Func<Task> call, RefusalReason reason)
    {
        var refused = await Assert.ThrowsAsync<RpcException>(call);
        Assert.Equal(StatusCode.PermissionDenied, refused.StatusCode);
        Assert.Equal(reason, RefusalReasons.Of(refused));
        return refused;
    }

    public static DateTime Deadline() => DateTime.UtcNow.AddSeconds(15);
}
