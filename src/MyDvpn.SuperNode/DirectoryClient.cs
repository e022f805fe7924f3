using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;
using MyDvpn.Common;
using MyDvpn.Hosting;
using MyDvpn.Protocol.Directory;
using MyDvpn.Security;

namespace MyDvpn.SuperNode;

/// <summary>
/// Calls the directory over mutual TLS, trying the BaseNodes in turn and sticking with the one that
/// last answered.
/// </summary>
public sealed class DirectoryClient : IDisposable
{
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(3);
    private readonly IReadOnlyList<HostPort> baseNodes;
    private readonly Lazy<GrpcChannel>[] channels;
    private int preferred;

    /// <param name="logger">Where a BaseNode's refused certificate (revoked, or not a node's) is logged; nowhere when null.</param>
    public DirectoryClient(IReadOnlyList<HostPort> baseNodes, TlsMaterial tls, ILogger? logger = null)
    {
        this.baseNodes = baseNodes;
        channels = [.. baseNodes.Select(node => new Lazy<GrpcChannel>(() => GrpcChannels.MutualTls(node, tls, ExpectedServer.BaseNode, logger: logger)))];
    }

    public Task<ReportAck> ReportAsync(SuperNodeReport report, CancellationToken cancellationToken) =>
        CallAsync((client, options) => client.ReportAsync(report, options).ResponseAsync, cancellationToken);

    public Task<DeregisterAck> DeregisterAsync(DeregisterRequest request, CancellationToken cancellationToken) =>
        CallAsync((client, options) => client.DeregisterAsync(request, options).ResponseAsync, cancellationToken);

    public Task<RedeemTokenResponse> RedeemTokenAsync(RedeemTokenRequest request, CancellationToken cancellationToken) =>
        CallAsync((client, options) => client.RedeemTokenAsync(request, options).ResponseAsync, cancellationToken);

    public Task<RevocationList> GetRevocationsAsync(ulong afterVersion, CancellationToken cancellationToken) =>
        CallAsync((client, options) => client.GetRevocationsAsync(new GetRevocationsRequest { AfterVersion = afterVersion }, options).ResponseAsync, cancellationToken);

    public Task<SignedCrl> GetCrlAsync(CancellationToken cancellationToken) =>
        CallAsync((client, options) => client.GetCrlAsync(new GetCrlRequest(), options).ResponseAsync, cancellationToken);

    public Task<RegionList> ListRegionsAsync(CancellationToken cancellationToken) =>
        CallAsync((client, options) => client.ListRegionsAsync(new ListRegionsRequest(), options).ResponseAsync, cancellationToken);

    private async Task<T> CallAsync<T>(Func<SuperNodeDirectory.SuperNodeDirectoryClient, CallOptions, Task<T>> call, CancellationToken cancellationToken)
    {
        var failures = new List<string>();
        var start = Volatile.Read(ref preferred);
        for (var i = 0; i < channels.Length; i++)
        {
            var index = (start + i) % channels.Length;
            try
            {
                var client = new SuperNodeDirectory.SuperNodeDirectoryClient(channels[index].Value);
                var result = await call(client, new CallOptions(deadline: DateTime.UtcNow + CallTimeout, cancellationToken: cancellationToken));
                Volatile.Write(ref preferred, index);
                return result;
            }
            catch (RpcException ex) when (ex.StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded && !cancellationToken.IsCancellationRequested)
            {
                failures.Add($"{baseNodes[index]}: {ex.Status.Detail}");
            }
        }
        throw new DirectoryUnavailableException($"no BaseNode answered ({string.Join("; ", failures)})");
    }

    public void Dispose()
    {
        foreach (var channel in channels.Where(c => c.IsValueCreated))
            channel.Value.Dispose();
    }
}

public sealed class DirectoryUnavailableException(string message) : Exception(message);
