using Grpc.Core;
using Microsoft.Extensions.Logging;
using MyDvpn.Hosting;
using MyDvpn.Protocol.Directory;
using Prometheus;

namespace MyDvpn.BaseNode;

/// <summary>What SuperNodes call (mutual TLS, node certificates only): register, report, leave, look up.</summary>
public sealed class DirectoryGrpcService(DirectoryQueries directory, ILogger<DirectoryGrpcService> logger) : SuperNodeDirectory.SuperNodeDirectoryBase
{
    private static readonly Counter Reports = Metrics.CreateCounter(
        "mydvpn_directory_reports_total", "SuperNode reports received, by region.", "region");

    public static readonly TimeSpan ReportInterval = Directory.DirectorySettings.Default.ReportInterval;

    public override async Task<ReportAck> Report(SuperNodeReport request, ServerCallContext context)
    {
        var info = DirectoryMapping.ToInfo(request.Registration);
        var load = DirectoryMapping.ToLoad(request.Load);
        await directory.Report(info, load, context.CancellationToken);
        await directory.IndexRegion(info.Region, context.CancellationToken);
        Reports.WithLabels(info.Region).Inc();
        return new ReportAck { ReportIntervalMs = (uint)ReportInterval.TotalMilliseconds };
    }

    public override async Task<DeregisterAck> Deregister(DeregisterRequest request, ServerCallContext context)
    {
        if (!RegionName.IsValid(request.Region, out var problem))
            throw new RpcException(new Status(StatusCode.InvalidArgument, problem));
        await directory.Deregister(request.Region, request.SupernodeId, context.CancellationToken);
        logger.LogInformation("SuperNode {SuperNodeId} of region {Region} left the directory", request.SupernodeId, request.Region);
        return new DeregisterAck();
    }

    public override Task<RegionList> ListRegions(ListRegionsRequest request, ServerCallContext context) =>
        directory.ListRegions(context.CancellationToken);
}
