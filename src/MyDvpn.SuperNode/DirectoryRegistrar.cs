using Akka.Actor;
using Akka.Event;
using Grpc.Core;
using MyDvpn.Protocol.Directory;
using Prometheus;

namespace MyDvpn.SuperNode;

/// <summary>
/// Keeps this SuperNode registered in the directory: reports registration and load every
/// interval (each report is a full registration, so a BaseNode that lost it learns it again) and
/// refreshes the durable directory cache.
/// </summary>
public sealed class DirectoryRegistrar : ReceiveActor, IWithTimers
{
    private static readonly Gauge DirectoryReachable = Metrics.CreateGauge(
        "mydvpn_directory_reachable", "1 while the last report to a BaseNode succeeded.");
    private static readonly Counter ReportFailures = Metrics.CreateCounter(
        "mydvpn_directory_report_failures_total", "Reports to the directory that no BaseNode accepted.");

    private sealed record ReportTick
    {
        public static readonly ReportTick Instance = new();
    }

    private sealed record Reported(ReportAck Ack);

    private sealed record ReportFailed(Exception Cause);

    private sealed record CacheRefreshed(int Regions);

    private sealed record CacheRefreshFailed(Exception Cause);

    private readonly SuperNodeRegistration registration;
    private readonly DirectoryClient client;
    private readonly DirectoryCache cache;
    private readonly RegistrationStatus status;
    private readonly Func<SuperNodeLoad> currentLoad;
    private readonly CancellationTokenSource stopping = new();
    private readonly ILoggingAdapter log = Context.GetLogger();
    private bool reportInFlight;
    private bool lastReportFailed;
    private int reportsSinceRefresh;

    public ITimerScheduler Timers { get; set; } = null!;

    /// <summary>The cache is refreshed every this many reports (and after the first).</summary>
    public const int RefreshEveryReports = 5;

    public static Props Props(SuperNodeRegistration registration, DirectoryClient client, DirectoryCache cache,
        RegistrationStatus status, Func<SuperNodeLoad> currentLoad) =>
        Akka.Actor.Props.Create(() => new DirectoryRegistrar(registration, client, cache, status, currentLoad));

    public DirectoryRegistrar(SuperNodeRegistration registration, DirectoryClient client, DirectoryCache cache,
        RegistrationStatus status, Func<SuperNodeLoad> currentLoad)
    {
        this.registration = registration;
        this.client = client;
        this.cache = cache;
        this.status = status;
        this.currentLoad = currentLoad;

        Receive<ReportTick>(_ => SendReport());
        Receive<Reported>(OnReported);
        Receive<ReportFailed>(OnReportFailed);
        Receive<CacheRefreshed>(refreshed =>
            log.Debug("Directory cache refreshed: {0} regions", refreshed.Regions));
        Receive<CacheRefreshFailed>(failed =>
            log.Warning("Directory cache not refreshed: {0}", failed.Cause.Message));
    }

    protected override void PreStart() => Self.Tell(ReportTick.Instance);

    protected override void PostStop()
    {
        stopping.Cancel();
        stopping.Dispose();
    }

    private void SendReport()
    {
        if (reportInFlight)
            return;
        reportInFlight = true;
        var report = new SuperNodeReport { Registration = registration, Load = currentLoad() };
        client.ReportAsync(report, stopping.Token).PipeTo(Self,
            success: ack => new Reported(ack),
            failure: ex => new ReportFailed(ex));
    }

    private void OnReported(Reported reported)
    {
        reportInFlight = false;
        DirectoryReachable.Set(1);
        if (!status.IsRegistered || lastReportFailed)
            log.Info("Registered SuperNode {0} of region {1} with the directory", registration.SupernodeId, registration.Region);
        lastReportFailed = false;
        status.MarkRegistered();
        var interval = TimeSpan.FromMilliseconds(Math.Max(reported.Ack.ReportIntervalMs, 200));
        Timers.StartSingleTimer(nameof(ReportTick), ReportTick.Instance, interval);
        if (reportsSinceRefresh++ % RefreshEveryReports == 0)
            RefreshCache();
    }

    private void OnReportFailed(ReportFailed failed)
    {
        reportInFlight = false;
        DirectoryReachable.Set(0);
        ReportFailures.Inc();
        var cause = failed.Cause is RpcException rpc ? $"{rpc.StatusCode}: {rpc.Status.Detail}" : failed.Cause.Message;
        if (!lastReportFailed)
            log.Warning("Directory report failed, serving from the directory cache until a BaseNode answers: {0}", cause);
        lastReportFailed = true;
        Timers.StartSingleTimer(nameof(ReportTick), ReportTick.Instance, TimeSpan.FromSeconds(2));
    }

    private void RefreshCache()
    {
        var token = stopping.Token;
        RefreshAsync().PipeTo(Self, success: count => new CacheRefreshed(count), failure: ex => new CacheRefreshFailed(ex));

        async Task<int> RefreshAsync()
        {
            var regions = await client.ListRegionsAsync(token);
            await cache.SaveAsync(regions, token);
            return regions.Regions.Count;
        }
    }
}

/// <summary>Whether this SuperNode has registered with the directory (part of readiness).</summary>
public sealed class RegistrationStatus
{
    private volatile bool registered;

    public bool IsRegistered => registered;

    public void MarkRegistered() => registered = true;
}
