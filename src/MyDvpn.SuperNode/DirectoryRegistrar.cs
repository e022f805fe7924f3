using Akka.Actor;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using MyDvpn.Common;
using MyDvpn.Hosting;
using MyDvpn.Protocol.Directory;
using MyDvpn.Security;
using Prometheus;

namespace MyDvpn.SuperNode;

/// <summary>
/// Keeps this SuperNode registered in the directory: reports registration and load every
/// interval (each report is a full registration, so a BaseNode that lost it learns it again) and
/// refreshes the durable directory cache. Its timers (the next report, the retry after a failed one, the deadline for
/// sessions to confirm revocations) run on its <see cref="TimeProvider"/> (<see cref="ClockTimers"/>), so a test's manual
/// clock fires them.
/// </summary>
public sealed class DirectoryRegistrar : ReceiveActor
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

    private sealed record RevocationsFetched(RevocationList List);

    private sealed record RevocationsApplied(ulong Version, int Count);

    private sealed record RevocationsFailed(Exception Cause);

    private sealed record CrlFetched(CrlApplied Outcome);

    private sealed record CrlFailed(Exception Cause);

    private readonly SuperNodeRegistration registration;
    private readonly DirectoryClient client;
    private readonly DirectoryCache cache;
    private readonly RegistrationStatus status;
    private readonly Func<SuperNodeLoad> currentLoad;
    private readonly RevocationCursor revocations;
    private readonly IActorRef sessions;
    private readonly NodeCrlStore? crl;
    private readonly Edge.PeerSightings? sightings;
    private IReadOnlyList<PeerSighting> sightingsInFlight = [];
    private bool crlSyncInFlight;
    private bool revocationSyncInFlight;
    private HashSet<string> pendingRevocations = [];
    private ulong? pendingRevocationVersion;
    private readonly CancellationTokenSource stopping = new();
    private readonly ILogger log;
    private readonly ClockTimers timers;
    private bool reportInFlight;
    private bool lastReportFailed;

    /// <summary>The level the current run of failed reports was logged at: each run is logged once per level it reaches.</summary>
    private LogLevel? failuresLoggedAt;
    private int reportsSinceRefresh;

    /// <summary>The cache is refreshed every this many reports (and after the first).</summary>
    public const int RefreshEveryReports = 5;

    /// <summary>How long after a failed report the next one is tried.</summary>
    public static readonly TimeSpan RetryAfterFailure = TimeSpan.FromSeconds(2);

    /// <summary>How long the sessions have to confirm a batch of revocations before it is fetched again.</summary>
    public static readonly TimeSpan RevocationsConfirmWithin = TimeSpan.FromSeconds(15);

    /// <param name="revocations">How far this SuperNode has applied the directory's revocations.</param>
    /// <param name="sessions">The region's <c>peers</c> shard region, told of each revocation.</param>
    /// <param name="time">The clock of the registrar's timers; the system clock when null.</param>
    /// <param name="logger">Where the registrar logs, in a <c>region</c> and <c>supernode_id</c> scope; nowhere when null.</param>
    /// <param name="crl">
    /// The certificate revocation list this SuperNode enforces, caught up from the directory when a report's
    /// acknowledgement shows a higher CRL number; null: not followed.
    /// </param>
    /// <param name="sightings">The peers seen connect or leave since the last acknowledged report, sent with the next; null: none sent.</param>
    public static Props Props(SuperNodeRegistration registration, DirectoryClient client, DirectoryCache cache,
        RegistrationStatus status, Func<SuperNodeLoad> currentLoad, RevocationCursor revocations, IActorRef sessions,
        TimeProvider? time = null, ILogger? logger = null, NodeCrlStore? crl = null, Edge.PeerSightings? sightings = null)
    {
        var clock = time ?? TimeProvider.System;
        var log = logger ?? NullLogger.Instance;
        return Akka.Actor.Props.Create(() => new DirectoryRegistrar(registration, client, cache, status, currentLoad, revocations, sessions, clock, log, crl,
            sightings));
    }

    public DirectoryRegistrar(SuperNodeRegistration registration, DirectoryClient client, DirectoryCache cache,
        RegistrationStatus status, Func<SuperNodeLoad> currentLoad, RevocationCursor revocations, IActorRef sessions,
        TimeProvider time, ILogger logger, NodeCrlStore? crl = null, Edge.PeerSightings? sightings = null)
    {
        this.crl = crl;
        this.sightings = sightings;
        log = new ScopedLogger(logger, ("region", registration.Region), ("supernode_id", registration.SupernodeId));
        var self = Self;
        timers = new ClockTimers(time, message => self.Tell(message));
        this.revocations = revocations;
        this.sessions = sessions;
        this.registration = registration;
        this.client = client;
        this.cache = cache;
        this.status = status;
        this.currentLoad = currentLoad;

        Receive<ClockTimers.Fired>(fired =>
        {
            switch (timers.Accept(fired))
            {
                case ReportTick:
                    SendReport();
                    break;
                case RevocationsFailed failed:
                    OnRevocationsFailed(failed);
                    break;
            }
        });
        Receive<ReportTick>(_ => SendReport());
        Receive<Reported>(OnReported);
        Receive<ReportFailed>(OnReportFailed);
        Receive<CacheRefreshed>(refreshed =>
            log.LogDebug("Directory cache refreshed: {Regions} regions", refreshed.Regions));
        Receive<CacheRefreshFailed>(failed =>
            log.LogWarning("Directory cache not refreshed: {Reason}", failed.Cause.Message));
        Receive<RevocationsApplied>(applied =>
        {
            status.MarkRevocationsCurrent();
            revocationSyncInFlight = false;
            if (applied.Count > 0)
                log.LogInformation("Applied {Count} revocations from the directory (version {Version})", applied.Count, applied.Version);
        });
        Receive<RevocationsFetched>(OnRevocationsFetched);
        Receive<Sessions.PeerRevoked>(revoked => OnRevocationApplied(revoked.PeerId));
        Receive<Sessions.PeerUnrevoked>(unrevoked => OnRevocationApplied(unrevoked.PeerId));
        Receive<RevocationsFailed>(OnRevocationsFailed);
        Receive<CrlFetched>(OnCrlFetched);
        Receive<CrlFailed>(failed =>
        {
            crlSyncInFlight = false;
            log.LogError("Certificate revocation list not applied from the directory, tried again on the next report: {Reason}", failed.Cause.Message);
        });
    }

    protected override void PreStart() => Self.Tell(ReportTick.Instance);

    protected override void PostStop()
    {
        timers.Dispose();
        stopping.Cancel();
        stopping.Dispose();
    }

    private void SendReport()
    {
        if (reportInFlight)
            return;
        reportInFlight = true;
        var report = new SuperNodeReport { Registration = registration, Load = currentLoad() };
        sightingsInFlight = sightings?.Take() ?? [];
        report.PeersSeen.AddRange(sightingsInFlight);
        client.ReportAsync(report, stopping.Token).PipeTo(Self,
            success: ack => new Reported(ack),
            failure: ex => new ReportFailed(ex));
    }

    private void OnReported(Reported reported)
    {
        reportInFlight = false;
        sightingsInFlight = [];
        DirectoryReachable.Set(1);
        if (!status.IsRegistered || lastReportFailed)
            log.LogInformation("Registered SuperNode {SuperNodeId} of region {Region} with the directory", registration.SupernodeId, registration.Region);
        lastReportFailed = false;
        failuresLoggedAt = null;
        status.MarkRegistered();
        var interval = TimeSpan.FromMilliseconds(Math.Max(reported.Ack.ReportIntervalMs, 200));
        timers.StartSingle(nameof(ReportTick), ReportTick.Instance, interval);
        if (reportsSinceRefresh++ % RefreshEveryReports == 0)
            RefreshCache();
        if (reported.Ack.RevocationVersion > revocations.Version && !revocationSyncInFlight)
            SyncRevocations();
        else if (reported.Ack.RevocationVersion <= revocations.Version)
            status.MarkRevocationsCurrent();
        if (crl is not null && reported.Ack.CrlNumber > crl.Number && !crlSyncInFlight)
            SyncCrl(crl);
    }

    /// <summary>
    /// Fetches the directory's certificate revocation list and applies it: <see cref="NodeCrlStore.Apply(byte[])"/> verifies
    /// it against this SuperNode's own CA (a BaseNode cannot make it refuse or accept what the CA did not sign) and keeps
    /// it only if it is newer.
    /// </summary>
    private void SyncCrl(NodeCrlStore store)
    {
        crlSyncInFlight = true;
        var token = stopping.Token;
        FetchAsync().PipeTo(Self, success: outcome => new CrlFetched(outcome), failure: ex => new CrlFailed(ex));

        async Task<CrlApplied> FetchAsync() => store.Apply((await client.GetCrlAsync(token)).Der.ToByteArray());
    }

    private void OnCrlFetched(CrlFetched fetched)
    {
        crlSyncInFlight = false;
        var (list, applied, refusal) = fetched.Outcome;
        if (applied)
            log.LogWarning("Applied certificate revocation list number {Number} from the directory: {Count} certificates revoked",
                list.Number, list.Revoked.Count);
        else
            log.LogDebug("Certificate revocation list from the directory not applied: {Reason}", refusal);
    }

    private void OnRevocationsFailed(RevocationsFailed failed)
    {
        revocationSyncInFlight = false;
        pendingRevocations.Clear();
        pendingRevocationVersion = null;
        log.LogWarning("Revocations not fetched, retried on the next report: {Reason}", failed.Cause.Message);
    }

    private void OnReportFailed(ReportFailed failed)
    {
        reportInFlight = false;
        sightings?.PutBack(sightingsInFlight);
        sightingsInFlight = [];
        DirectoryReachable.Set(0);
        ReportFailures.Inc();
        var cause = failed.Cause is RpcException rpc ? $"{rpc.StatusCode}: {rpc.Status.Detail}" : failed.Cause.Message;
        // A SuperNode that has not registered yet while it starts is starting, not failing (the BaseNode's first answer
        // can take longer than a call's deadline); not registered past the grace, or a failure after registering, warns.
        if (!status.IsRegistered && status.Starting)
        {
            if (failuresLoggedAt is null)
                log.LogInformation("Not registered with the directory yet, trying again every {RetryMs} ms: {Reason}", (long)RetryAfterFailure.TotalMilliseconds, cause);
            failuresLoggedAt = LogLevel.Information;
        }
        else if (failuresLoggedAt is null or < LogLevel.Warning)
        {
            log.LogWarning("Directory report failed, serving from the directory cache until a BaseNode answers: {Reason}", cause);
            failuresLoggedAt = LogLevel.Warning;
        }
        lastReportFailed = true;
        timers.StartSingle(nameof(ReportTick), ReportTick.Instance, RetryAfterFailure);
    }

    /// <summary>
    /// Catches up on revocations made (and taken back) while this SuperNode was away (the live path is the
    /// directory calling SuperNodePeers.Revoke and Unrevoke). Each session persists the last change of its peer and
    /// answers; the cursor moves only once every session of the batch has answered, so none is skipped.
    /// </summary>
    private void SyncRevocations()
    {
        revocationSyncInFlight = true;
        client.GetRevocationsAsync(revocations.Version, stopping.Token).PipeTo(Self,
            success: list => new RevocationsFetched(list),
            failure: ex => new RevocationsFailed(ex));
    }

    private void OnRevocationsFetched(RevocationsFetched fetched)
    {
        // A peer revoked and taken back in the same batch: the last change is the one that holds.
        var last = fetched.List.Revocations.GroupBy(r => r.PeerId, StringComparer.Ordinal).Select(changes => changes.MaxBy(r => r.Version)!).ToList();
        pendingRevocations = [.. last.Select(r => r.PeerId)];
        pendingRevocationVersion = fetched.List.Version;
        foreach (var change in last)
            sessions.Tell(change.Unrevoked ? new Sessions.UnrevokePeer(change.PeerId) : new Sessions.RevokePeer(change.PeerId));
        timers.StartSingle(nameof(RevocationsFailed), new RevocationsFailed(new TimeoutException("sessions did not confirm revocations in time")), RevocationsConfirmWithin);
        CompleteRevocationsIfDone();
    }

    private void OnRevocationApplied(string peerId)
    {
        pendingRevocations.Remove(peerId);
        CompleteRevocationsIfDone();
    }

    private void CompleteRevocationsIfDone()
    {
        if (pendingRevocations.Count > 0 || pendingRevocationVersion is not { } version)
            return;
        pendingRevocationVersion = null;
        timers.Cancel(nameof(RevocationsFailed));
        var count = (int)(version - revocations.Version);
        revocations.SaveAsync(version, stopping.Token).PipeTo(Self,
            success: () => new RevocationsApplied(version, count),
            failure: ex => new RevocationsFailed(ex));
    }

    private void RefreshCache()
    {
        var token = stopping.Token;
        RefreshAsync().PipeTo(Self, success: count => new CacheRefreshed(count), failure: ex => new CacheRefreshFailed(ex));

        async Task<int> RefreshAsync() => (await cache.RefreshAsync(client, token)).Regions.Count;
    }
}

/// <summary>
/// Whether this SuperNode has registered with the directory (part of readiness) and has applied
/// every revocation the directory holds (the edge admits no peer before, for a while: see
/// <see cref="AdmitsPeers"/>).
/// </summary>
public sealed class RegistrationStatus(TimeProvider time)
{
    /// <summary>How long a starting SuperNode waits for the directory before it serves from its cache.</summary>
    public static readonly TimeSpan CatchUpGrace = TimeSpan.FromSeconds(20);

    private readonly DateTimeOffset startedAt = time.GetUtcNow();
    private volatile bool registered;
    private volatile bool revocationsCurrent;

    public RegistrationStatus()
        : this(TimeProvider.System)
    {
    }

    public bool IsRegistered => registered;

    /// <summary>Within <see cref="CatchUpGrace"/> of the start: not being registered yet is part of starting.</summary>
    public bool Starting => time.GetUtcNow() - startedAt <= CatchUpGrace;

    public bool RevocationsCurrent => revocationsCurrent;

    public void MarkRegistered() => registered = true;

    public void MarkRevocationsCurrent() => revocationsCurrent = true;

    /// <summary>
    /// A SuperNode that was down when peers were revoked must not admit them before it caught up.
    /// If no BaseNode answers for a while it admits anyway (revocations it already applied still
    /// hold): a region keeps serving when cut off from the directory.
    /// </summary>
    public bool AdmitsPeers => revocationsCurrent || time.GetUtcNow() - startedAt > CatchUpGrace;
}
