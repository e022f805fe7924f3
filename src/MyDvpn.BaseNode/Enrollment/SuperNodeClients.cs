using System.Collections.Concurrent;
using System.Collections.Immutable;
using Grpc.Core;
using Grpc.Health.V1;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;
using MyDvpn.BaseNode.Directory;
using MyDvpn.Common;
using MyDvpn.Hosting;
using MyDvpn.Protocol.SuperNode;
using MyDvpn.Security;
using Status = Grpc.Core.Status;

namespace MyDvpn.BaseNode.Enrollment;

/// <summary>What one call to each of several SuperNodes came to.</summary>
/// <param name="Replies">The SuperNodes that answered, with their answers, in the order they were given.</param>
/// <param name="Unreachable">The SuperNodes that did not answer in time or failed, in the order they were given.</param>
public sealed record FanOutResult<T>(
    ImmutableList<(SuperNodeInfo SuperNode, T Reply)> Replies,
    ImmutableList<SuperNodeInfo> Unreachable);

/// <summary>
/// The BaseNode's clients of SuperNodes (<c>mydvpn.supernode.v1.SuperNodePeers</c> and <c>ExitAllocation</c>): one
/// mutual-TLS channel per gRPC endpoint, made with the BaseNode's own node certificate, kept for the life of the
/// process and disposed with it. Calls go to every SuperNode at once, each with a deadline of
/// <see cref="CallTimeout"/>, or to one after another until one answers.
/// </summary>
public sealed class SuperNodeClients(TlsMaterial tls, ILogger<SuperNodeClients> logger) : IDisposable
{
    public static readonly TimeSpan DefaultCallTimeout = TimeSpan.FromSeconds(2);

    /// <summary>The deadline of each call, and the connect timeout of each channel.</summary>
    public TimeSpan CallTimeout { get; init; } = DefaultCallTimeout;

    /// <summary>A connection checked this recently (<see cref="ConnectAsync"/>) is not checked again: HTTP/2 pings keep it open.</summary>
    public static readonly TimeSpan ConnectedFor = TimeSpan.FromSeconds(30);

    private readonly ConcurrentDictionary<string, Lazy<GrpcChannel>> _channels = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, DateTimeOffset> _connectedAt = new(StringComparer.Ordinal);

    /// <summary>Calls <paramref name="call"/> on every SuperNode in parallel; a failure marks that one unreachable.</summary>
    /// <param name="what">The call, for the log (e.g. "revoke peer-1").</param>
    public async Task<FanOutResult<T>> CallEachAsync<T>(
        IEnumerable<SuperNodeInfo> superNodes,
        Func<SuperNodePeers.SuperNodePeersClient, CallOptions, AsyncUnaryCall<T>> call,
        string what,
        CancellationToken cancellationToken)
    {
        var outcomes = await Task.WhenAll(superNodes.Select(async node =>
        {
            try
            {
                var options = new CallOptions(deadline: DateTime.UtcNow + CallTimeout, cancellationToken: cancellationToken);
                return (Node: node, Reply: await call(new SuperNodePeers.SuperNodePeersClient(ChannelFor(node)), options), Answered: true);
            }
            catch (RpcException ex) when (!cancellationToken.IsCancellationRequested)
            {
                logger.LogWarning("SuperNode {SuperNodeId} of region {Region} at {Endpoint} did not answer {Call}: {StatusCode} {Detail}",
                    node.SuperNodeId, node.Region, node.GrpcEndpoint, what, ex.StatusCode, ex.Status.Detail);
            }
            catch (ConfigurationException ex)
            {
                // The directory validates endpoints on registration; this only guards against a bad journal entry.
                logger.LogWarning("SuperNode {SuperNodeId} of region {Region} has an unusable endpoint: {Problem}",
                    node.SuperNodeId, node.Region, ex.Message);
            }

            return (Node: node, Reply: default(T)!, Answered: false);
        }));
        return new FanOutResult<T>(
            outcomes.Where(o => o.Answered).Select(o => (o.Node, o.Reply)).ToImmutableList(),
            outcomes.Where(o => !o.Answered).Select(o => o.Node).ToImmutableList());
    }

    /// <summary>
    /// Calls the SuperNodes' <c>SuperNodePeers</c> in turn until one answers: any SuperNode of a region reaches every
    /// session of it through sharding. Only an unreachable SuperNode moves on to the next.
    /// </summary>
    public Task<T> CallAnyAsync<T>(
        IReadOnlyList<SuperNodeInfo> superNodes,
        Func<SuperNodePeers.SuperNodePeersClient, CallOptions, AsyncUnaryCall<T>> call,
        TimeSpan timeout,
        string what,
        CancellationToken cancellationToken) =>
        CallAnyAsync(superNodes, invoker => new SuperNodePeers.SuperNodePeersClient(invoker), call, timeout, what, cancellationToken);

    /// <summary>
    /// Calls a service of the SuperNodes (made by <paramref name="client"/>, e.g. <c>ExitAllocation</c>) in turn until
    /// one answers. Only an unreachable SuperNode moves on to the next; any other status is the answer and is thrown
    /// as it came, with its detail and trailers.
    /// </summary>
    /// <param name="what">What is asked, for the log and the error (e.g. "the exits of region eu-west").</param>
    public async Task<T> CallAnyAsync<TClient, T>(
        IReadOnlyList<SuperNodeInfo> superNodes,
        Func<CallInvoker, TClient> client,
        Func<TClient, CallOptions, AsyncUnaryCall<T>> call,
        TimeSpan timeout,
        string what,
        CancellationToken cancellationToken)
    {
        var failures = new List<string>();
        foreach (var node in superNodes)
        {
            try
            {
                var options = new CallOptions(deadline: DateTime.UtcNow + timeout, cancellationToken: cancellationToken);
                return await call(client(ChannelFor(node).CreateCallInvoker()), options);
            }
            catch (RpcException ex) when (ex.StatusCode == StatusCode.Unavailable && !cancellationToken.IsCancellationRequested)
            {
                logger.LogWarning("SuperNode {SuperNodeId} at {Endpoint} did not answer {Call}: {Detail}", node.SuperNodeId, node.GrpcEndpoint, what, ex.Status.Detail);
                failures.Add($"{node.SuperNodeId}: {ex.Status.Detail}");
            }
        }
        throw new RpcException(new Status(StatusCode.Unavailable,
            failures.Count == 0 ? $"no SuperNode is up for {what}" : $"no SuperNode answered for {what} ({string.Join("; ", failures)})"));
    }

    /// <summary>
    /// Makes sure this BaseNode's mutual-TLS connection to each SuperNode is open, with a gRPC health check on those not
    /// checked in the last <see cref="ConnectedFor"/>: a revocation must close the peer's stream within a second, and
    /// the first call to a SuperNode otherwise waits for its TCP and TLS handshakes (half a second on a loaded host).
    /// One that does not answer is tried again at the next call of this.
    /// </summary>
    public Task ConnectAsync(IEnumerable<SuperNodeInfo> superNodes, DateTimeOffset now, CancellationToken cancellationToken) =>
        Task.WhenAll(superNodes
            .Where(node => !_connectedAt.TryGetValue(node.GrpcEndpoint, out var at) || now - at >= ConnectedFor)
            .Select(async node =>
            {
                try
                {
                    var options = new CallOptions(deadline: DateTime.UtcNow + CallTimeout, cancellationToken: cancellationToken);
                    await new Health.HealthClient(ChannelFor(node)).CheckAsync(new HealthCheckRequest(), options);
                    _connectedAt[node.GrpcEndpoint] = now;
                }
                catch (RpcException ex) when (!cancellationToken.IsCancellationRequested)
                {
                    _connectedAt.TryRemove(node.GrpcEndpoint, out _);
                    logger.LogDebug("No connection to SuperNode {SuperNodeId} of region {Region} at {Endpoint} yet: {StatusCode} {Detail}",
                        node.SuperNodeId, node.Region, node.GrpcEndpoint, ex.StatusCode, ex.Status.Detail);
                }
                catch (ConfigurationException)
                {
                    // Said by the calls that use it (CallEachAsync).
                }
            }));

    public void Dispose()
    {
        foreach (var channel in _channels.Values.Where(lazy => lazy.IsValueCreated))
        {
            channel.Value.Dispose();
        }

        _channels.Clear();
    }

    // Lazy: GetOrAdd may run its factory twice under a race, and a channel made twice would leak one.
    // The SuperNode's certificate must name the region the directory lists it in.
    private GrpcChannel ChannelFor(SuperNodeInfo node) =>
        _channels.GetOrAdd(node.Region + " " + node.GrpcEndpoint, _ => new Lazy<GrpcChannel>(() =>
            GrpcChannels.MutualTls(HostPort.Parse(node.GrpcEndpoint, "grpc_endpoint"), tls, ExpectedServer.SuperNodeOf(node.Region),
                connectTimeout: CallTimeout, logger: logger))).Value;
}
