using System.Collections.Concurrent;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;
using MyDvpn.Common;
using MyDvpn.Hosting;
using MyDvpn.Protocol.Control;
using MyDvpn.Protocol.Directory;
using MyDvpn.Protocol.SuperNode;
using MyDvpn.Security;

namespace MyDvpn.SuperNode.Exits;

/// <summary>The outcome of asking a region for an exit.</summary>
public abstract record ExitAllocationResult
{
    private ExitAllocationResult()
    {
    }

    public sealed record Allocated(ExitAssignmentRecord Assignment) : ExitAllocationResult;

    /// <summary>A refusal; its gRPC status is the one the refusal catalogue gives <paramref name="Reason"/>.</summary>
    public sealed record Refused(RefusalReason Reason, string Detail) : ExitAllocationResult
    {
        public StatusCode Code => RefusalCatalogue.StatusOf(Reason);
    }
}

/// <summary>
/// How an exit's region reaches a client's session (in the client's region): the pool asks it to move the client to
/// another exit; a SuperNode tells it that the exit leg of its relay chain goes.
/// </summary>
public interface IClientRotations
{
    /// <exception cref="ExitRegionUnreachableException">No SuperNode of the client's region answered.</exception>
    Task RotateClientAsync(RotateClientRequest request, CancellationToken cancellationToken);

    /// <exception cref="ExitRegionUnreachableException">No SuperNode of the client's region answered.</exception>
    Task RelayLegLostAsync(RelayLegLostRequest request, CancellationToken cancellationToken);
}

/// <summary>How a client's session reaches the exit pool of a region (its own or another).</summary>
public interface IExitAllocator
{
    Task<ExitAllocationResult> AllocateAsync(AllocateExitRequest request, CancellationToken cancellationToken);

    /// <summary>True when the region released the assignment, false when it did not know it.</summary>
    /// <exception cref="ExitRegionUnreachableException">No SuperNode of the region answered.</exception>
    Task<bool> ReleaseAsync(ReleaseExitRequest request, CancellationToken cancellationToken);

    /// <summary>Has a SuperNode of the exit's region open the exit's relay leg, chained to the client's leg.</summary>
    /// <exception cref="ExitRegionUnreachableException">No SuperNode of the region answered.</exception>
    /// <exception cref="RpcException">It refused (the assignment is unknown there, no relay port free).</exception>
    Task<RelayLegInfo> OpenRelayAsync(OpenRelayRequest request, CancellationToken cancellationToken);

    /// <summary>Has the exit's region unpin the exit from its relay leg, answered once the exit applied it (a relayed client tries direct).</summary>
    /// <exception cref="ExitRegionUnreachableException">No SuperNode of the region answered.</exception>
    /// <exception cref="RpcException">It refused (the assignment is unknown there, the exit did not apply it).</exception>
    Task ReturnDirectAsync(ReturnDirectRequest request, CancellationToken cancellationToken);

    /// <summary>Has the exit's region close its relay leg of the assignment (the direct path works again). Returns how many legs closed.</summary>
    /// <exception cref="ExitRegionUnreachableException">No SuperNode of the region answered.</exception>
    Task<uint> CloseRelayAsync(CloseRelayRequest request, CancellationToken cancellationToken);

    /// <summary>Tells the exit's region that the client's path to its exit broke (counted towards the exit going stale).</summary>
    /// <exception cref="ExitRegionUnreachableException">No SuperNode of the region answered.</exception>
    Task ReportPathFailureAsync(PathFailureReport report, CancellationToken cancellationToken);
}

public sealed class ExitRegionUnreachableException(string message) : Exception(message);

/// <summary>
/// Calls the <c>ExitAllocation</c> service of a region's SuperNodes over mutual TLS (ARCHITECTURE §4 Direct). The
/// SuperNodes come from the <see cref="DirectoryCache"/>, so regions seen before stay reachable while no BaseNode
/// answers; a region the cache does not know (yet) is looked up in the directory at once. SuperNodes marked up are
/// tried first, starting at one picked by the assignment id (spreading load), then the others; a SuperNode that does
/// not answer is skipped, while a refusal (a status with a reason) is the answer.
/// </summary>
/// <param name="logger">Where a SuperNode whose certificate the TLS handshake refuses is said (a <c>Security event</c>).</param>
public sealed class ExitAllocationClient(DirectoryCache directory, DirectoryClient directoryClient, TlsMaterial tls, TimeSpan callTimeout,
    ILogger? logger = null)
    : IExitAllocator, IClientRotations, IDisposable
{
    private readonly ConcurrentDictionary<string, Lazy<GrpcChannel>> channels = new(StringComparer.Ordinal);

    public async Task<ExitAllocationResult> AllocateAsync(AllocateExitRequest request, CancellationToken cancellationToken)
    {
        var superNodes = await KnownSuperNodesAsync(request.Region, request.AssignmentId, cancellationToken);
        if (superNodes.Count == 0)
        {
            return new ExitAllocationResult.Refused(RefusalReason.UnknownRegion,
                $"the directory knows no SuperNode of region {request.Region}");
        }

        var failures = new List<string>();
        var tried = new HashSet<string>(StringComparer.Ordinal);
        // The cache may be stale (a SuperNode moved or left): once every SuperNode it names failed, the directory's
        // current list gets a turn for the ones not tried yet.
        for (var round = 0; round < 2 && superNodes.Count > 0; round++)
        {
            foreach (var superNode in superNodes.Where(s => tried.Add(s.GrpcEndpoint)))
            {
                try
                {
                    var assignment = await ClientFor(superNode)
                        .AllocateExitAsync(request, new CallOptions(deadline: DateTime.UtcNow + callTimeout, cancellationToken: cancellationToken));
                    return new ExitAllocationResult.Allocated(ExitAssignmentRecord.FromProto(assignment));
                }
                catch (RpcException ex) when (RefusalReasons.Of(ex) is { } reason)
                {
                    return new ExitAllocationResult.Refused(reason, RefusalReasons.DetailOf(ex));
                }
                catch (RpcException ex) when (!cancellationToken.IsCancellationRequested)
                {
                    failures.Add($"{superNode.SupernodeId}: {ex.StatusCode} {ex.Status.Detail}");
                }
            }

            superNodes = round == 0 ? await RefreshedSuperNodesAsync(request.Region, request.AssignmentId, cancellationToken) : [];
        }

        return new ExitAllocationResult.Refused(RefusalReason.RegionUnreachable,
            $"no SuperNode of region {request.Region} answered ({string.Join("; ", failures)})");
    }

    public async Task<bool> ReleaseAsync(ReleaseExitRequest request, CancellationToken cancellationToken) =>
        (await CallAnyAsync(request.Region, request.AssignmentId,
            (client, options) => client.ReleaseExitAsync(request, options).ResponseAsync, cancellationToken)).Released;

    public Task<RelayLegInfo> OpenRelayAsync(OpenRelayRequest request, CancellationToken cancellationToken) =>
        CallAnyAsync(request.Region, request.AssignmentId, (client, options) => client.OpenRelayAsync(request, options).ResponseAsync, cancellationToken);

    public Task ReturnDirectAsync(ReturnDirectRequest request, CancellationToken cancellationToken) =>
        CallAnyAsync(request.Region, request.AssignmentId, (client, options) => client.ReturnDirectAsync(request, options).ResponseAsync, cancellationToken);

    // The same SuperNode OpenRelay reached, as a rule (the region's SuperNodes are tried in an order picked by the
    // assignment id); a leg left elsewhere closes once idle.
    public async Task<uint> CloseRelayAsync(CloseRelayRequest request, CancellationToken cancellationToken) =>
        (await CallAnyAsync(request.Region, request.AssignmentId, (client, options) => client.CloseRelayAsync(request, options).ResponseAsync,
            cancellationToken)).LegsClosed;

    public Task ReportPathFailureAsync(PathFailureReport report, CancellationToken cancellationToken) =>
        CallAnyAsync(report.Region, report.AssignmentId, (client, options) => client.ReportPathFailureAsync(report, options).ResponseAsync, cancellationToken);

    /// <summary>Tells the client's region that this SuperNode's leg for the exit of the assignment is going away.</summary>
    /// <exception cref="ExitRegionUnreachableException">No SuperNode of the client's region answered.</exception>
    public Task RelayLegLostAsync(RelayLegLostRequest request, CancellationToken cancellationToken) =>
        CallAnyAsync(request.Region, request.AssignmentId, (client, options) => client.RelayLegLostAsync(request, options).ResponseAsync, cancellationToken);

    /// <summary>Tells the client's region that the client of the assignment is to move to another exit.</summary>
    /// <exception cref="ExitRegionUnreachableException">No SuperNode of the client's region answered.</exception>
    public Task RotateClientAsync(RotateClientRequest request, CancellationToken cancellationToken) =>
        CallAnyAsync(request.Region, request.AssignmentId, (client, options) => client.RotateClientAsync(request, options).ResponseAsync, cancellationToken);

    /// <summary>Calls the region's SuperNodes in turn until one answers; a refusal (a status with a reason) is thrown as it came.</summary>
    /// <exception cref="ExitRegionUnreachableException">None answered.</exception>
    private async Task<T> CallAnyAsync<T>(string region, string spreadKey,
        Func<ExitAllocation.ExitAllocationClient, CallOptions, Task<T>> call, CancellationToken cancellationToken)
    {
        var failures = new List<string>();
        foreach (var superNode in await KnownSuperNodesAsync(region, spreadKey, cancellationToken))
        {
            try
            {
                return await call(ClientFor(superNode), new CallOptions(deadline: DateTime.UtcNow + callTimeout, cancellationToken: cancellationToken));
            }
            catch (RpcException ex) when (!cancellationToken.IsCancellationRequested && RefusalReasons.Of(ex) is null)
            {
                failures.Add($"{superNode.SupernodeId}: {ex.StatusCode} {ex.Status.Detail}");
            }
        }

        throw new ExitRegionUnreachableException(failures.Count == 0
            ? $"the directory knows no SuperNode of region {region}"
            : $"no SuperNode of region {region} answered ({string.Join("; ", failures)})");
    }

    /// <summary>The region's SuperNodes from the cache; from the directory when the cache knows none.</summary>
    /// <exception cref="ExitRegionUnreachableException">The cache knows none and no BaseNode answered.</exception>
    private async Task<List<SuperNodeRegistration>> KnownSuperNodesAsync(string region, string spreadKey, CancellationToken cancellationToken)
    {
        var known = SuperNodesOf(region, spreadKey);
        if (known.Count > 0)
            return known;
        try
        {
            await directory.RefreshAsync(directoryClient, cancellationToken);
        }
        catch (DirectoryUnavailableException ex)
        {
            throw new ExitRegionUnreachableException($"region {region} is not in this SuperNode's directory cache and the directory cannot be reached ({ex.Message})");
        }
        return SuperNodesOf(region, spreadKey);
    }

    /// <summary>The region's SuperNodes after a refresh from the directory; none when no BaseNode answers.</summary>
    private async Task<List<SuperNodeRegistration>> RefreshedSuperNodesAsync(string region, string spreadKey, CancellationToken cancellationToken)
    {
        try
        {
            await directory.RefreshAsync(directoryClient, cancellationToken);
        }
        catch (DirectoryUnavailableException)
        {
            return [];
        }
        return SuperNodesOf(region, spreadKey);
    }

    /// <summary>The region's SuperNodes: up ones first (rotated by <paramref name="spreadKey"/>), then the rest.</summary>
    private List<SuperNodeRegistration> SuperNodesOf(string region, string spreadKey)
    {
        var known = directory.Regions.Regions.Where(r => r.Region == region).SelectMany(r => r.Supernodes).ToList();
        var up = known.Where(s => s.Status == SuperNodeStatus.Up).Select(s => s.Registration).ToList();
        if (up.Count > 1)
        {
            var start = (int)((uint)StringComparer.Ordinal.GetHashCode(spreadKey) % (uint)up.Count);
            up = [.. up.Skip(start), .. up.Take(start)];
        }
        return [.. up, .. known.Where(s => s.Status != SuperNodeStatus.Up).Select(s => s.Registration)];
    }

    /// <summary>
    /// A client of <paramref name="superNode"/>, whose certificate must name a SuperNode of the region the directory lists
    /// it in: another region's SuperNode (or a BaseNode) answering at that address is refused in the TLS handshake.
    /// </summary>
    private ExitAllocation.ExitAllocationClient ClientFor(SuperNodeRegistration superNode) =>
        new(channels.GetOrAdd(superNode.Region + " " + superNode.GrpcEndpoint, _ => new Lazy<GrpcChannel>(() =>
            GrpcChannels.MutualTls(HostPort.Parse(superNode.GrpcEndpoint, "grpc_endpoint"), tls, ExpectedServer.SuperNodeOf(superNode.Region),
                logger: logger))).Value);

    public void Dispose()
    {
        foreach (var channel in channels.Values.Where(c => c.IsValueCreated))
            channel.Value.Dispose();
    }
}
