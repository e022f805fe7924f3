using Akka.Actor;
using Akka.Cluster.Hosting;
using Akka.Cluster.Sharding;
using Akka.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Logging;
using MyDvpn.Common;
using MyDvpn.Hosting;
using MyDvpn.Logging;
using MyDvpn.Protocol.Directory;
using MyDvpn.Protocol.SuperNode;
using MyDvpn.Security;
using MyDvpn.SuperNode.Edge;
using MyDvpn.SuperNode.Exits;
using MyDvpn.SuperNode.Relay;
using MyDvpn.SuperNode.Sessions;

namespace MyDvpn.SuperNode;

/// <summary><c>mydvpn super</c>: a member of region R's cluster, registered in the directory.</summary>
public static class SuperNodeHost
{
    public const string Role = "super";

    public static string RegionRole(string region) => $"region-{region}";

    /// <summary>Every region is a cluster of its own: its actor-system name carries the region.</summary>
    public static ClusterIdentity IdentityOf(string region) => new($"mydvpn-region-{region}", [Role, RegionRole(region)]);

    /// <summary>
    /// BaseNodes ask SuperNodes (revocations, sessions, commands, drains); SuperNodes of any region ask each other's exit pools
    /// and relays; a BaseNode also lists a region's exits for admins. Peers need no certificate: they authenticate on the stream.
    /// </summary>
    public static CertificatePolicy Policy => new CertificatePolicy()
        .Allow(SuperNodePeers.Descriptor.FullName, Callers.BaseNodes)
        .Allow(ExitAllocation.Descriptor.FullName, Callers.SuperNodes)
        .Allow($"{ExitAllocation.Descriptor.FullName}/{nameof(ExitAllocation.ExitAllocationBase.ListExits)}", Callers.SuperNodes | Callers.BaseNodes);

    public static WebApplication Build(SuperNodeSettings settings, LogFormat logFormat = LogFormat.Json)
    {
        var registration = new SuperNodeRegistration
        {
            SupernodeId = settings.Id,
            Region = settings.Region,
            GrpcEndpoint = settings.GrpcEndpoint,
            PublicIp = settings.PublicIp.ToString(),
            RelayPortLow = (uint)settings.RelayPortLow,
            RelayPortHigh = (uint)settings.RelayPortHigh,
            Capacity = (uint)settings.MaxStreams,
        };
        // Peers have no certificates; SuperNode-to-SuperNode services demand node ones per service.
        var builder = ClusterNodeHost.CreateBuilder(settings.Node, IdentityOf(settings.Region), ClientCertificateMode.AllowCertificate,
            (akka, services) =>
            {
                var enrollment = services.GetRequiredService<DirectoryEnrollment>();
                var exitAllocator = services.GetRequiredService<ExitAllocationClient>();
                var relay = services.GetRequiredService<IRelayLegs>();
                var sessionLogger = services.GetRequiredService<ILoggerFactory>().CreateLogger<PeerSession>();
                var poolLogger = services.GetRequiredService<ILoggerFactory>().CreateLogger<ExitPool>();
                akka.WithShardRegion<ExitPoolShard>(
                    ExitPoolEntityTypes.ExitPool,
                    (_, registry) => region => ExitPool.Props(region, settings.Exits, registry.Get<PeerSessionShard>(), logger: poolLogger,
                        rotations: exitAllocator),
                    new ExitPoolMessageExtractor(),
                    new ShardOptions
                    {
                        Role = RegionRole(settings.Region),
                        StateStoreMode = StateStoreMode.Persistence,
                        // Exits re-announce themselves to the pool every few seconds; an idle pool must not forget them.
                        ShouldPassivateIdleEntities = false,
                        HandOffStopMessage = StopExitPool.Instance,
                    });
                // Session messages carry protobuf bytes, which the default JSON serializer cannot read back.
                akka.AddHocon(PeerSessionSerializer.Configuration, HoconAddMode.Prepend);
                akka.AddHocon(ShutdownPhaseConfiguration(settings), HoconAddMode.Prepend);
                akka.WithShardRegion<PeerSessionShard>(
                    PeerSessionEntityTypes.Peers,
                    (_, registry) => peerId => PeerSession.Props(peerId, settings.Region, settings.Sessions, enrollment,
                        registry.Get<PeerSessionShard>(), exits: new ExitServices(settings.Exits, exitAllocator, registry.Get<ExitPoolShard>(), relay),
                        logger: sessionLogger),
                    new PeerSessionMessageExtractor(),
                    new ShardOptions
                    {
                        Role = RegionRole(settings.Region),
                        StateStoreMode = StateStoreMode.Persistence,
                        // Sessions passivate themselves once they hold no stream, command or enrollment;
                        // sharding's idle timer would stop them with a stream attached.
                        ShouldPassivateIdleEntities = false,
                        HandOffStopMessage = StopPeerSession.Instance,
                        // Sessions running on a node that died come back, so their commands still
                        // reach their deadline and the caller's rollback.
                        RememberEntities = true,
                        RememberEntitiesStore = RememberEntitiesStore.Eventsourced,
                    });
                akka.WithActors((system, registry) =>
                {
                    var streams = services.GetRequiredService<LocalStreams>();
                    var registrar = system.ActorOf(DirectoryRegistrar.Props(
                        registration,
                        services.GetRequiredService<DirectoryClient>(),
                        services.GetRequiredService<DirectoryCache>(),
                        services.GetRequiredService<RegistrationStatus>(),
                        () => new SuperNodeLoad { ConnectedPeers = (uint)streams.Count, ExitsAvailable = (uint)streams.Exits },
                        services.GetRequiredService<RevocationCursor>(),
                        registry.Get<PeerSessionShard>(),
                        services.GetRequiredService<TimeProvider>(),
                        services.GetRequiredService<ILoggerFactory>().CreateLogger<DirectoryRegistrar>(),
                        settings.Node.Crl,
                        services.GetRequiredService<PeerSightings>()), "directory-registrar");
                    registry.Register<DirectoryRegistrar>(registrar);
                    registry.Register<ExitLegWatch>(system.ActorOf(ExitLegWatch.Props(services.GetRequiredService<RelayService>(), exitAllocator,
                        settings.Id, services.GetRequiredService<ILoggerFactory>().CreateLogger<ExitLegWatch>()), "exit-leg-watch"));
                    DeregisterOnShutdown(system, registrar, settings, services);
                    HandOverRelayOnShutdown(system, services);
                });
            },
            // Room for BaseNodes, other SuperNodes and admins beside the peers' streams.
            maxConnections: settings.MaxStreams + ConnectionsBesidePeers,
            logFormat: logFormat);
        builder.Services.AddSingleton(settings);
        builder.Services.AddSingleton(Policy);
        builder.Services.AddSingleton(services => new ExitAllocationClient(
            services.GetRequiredService<DirectoryCache>(), services.GetRequiredService<DirectoryClient>(), settings.Node.Tls,
            settings.Exits.PoolAnswerWithin + TimeSpan.FromSeconds(1), services.GetRequiredService<ILogger<ExitAllocationClient>>()));
        builder.Services.AddSingleton(services => new DirectoryClient(settings.BaseNodes, settings.Node.Tls,
            services.GetRequiredService<ILogger<DirectoryClient>>()));
        builder.Services.AddSingleton(new DirectoryCache(settings.Node.DataDir));
        builder.Services.AddSingleton<RegistrationStatus>();
        builder.Services.AddSingleton<DirectoryEnrollment>();
        builder.Services.AddSingleton(new RevocationCursor(settings.Node.DataDir));
        builder.Services.AddSingleton<PeerSightings>();
        builder.Services.AddSingleton(services => new LocalStreams(settings.Id, settings.Region, services.GetRequiredService<PeerSightings>()));
        builder.Services.AddSingleton(TimeProvider.System);
        builder.Services.AddSingleton(services => new RelayService(settings.PublicIp, settings.RelayPortLow, settings.RelayPortHigh,
            services.GetRequiredService<ILogger<RelayService>>(), services.GetRequiredService<TimeProvider>(), settings.Relay));
        builder.Services.AddSingleton<IRelayLegs>(services => services.GetRequiredService<RelayService>());
        builder.Services.AddSingleton(services => new RelayHandOver(services.GetRequiredService<RelayService>(),
            services.GetRequiredService<ExitAllocationClient>(), settings.Id, services.GetRequiredService<ILogger<RelayHandOver>>()));
        builder.Services.AddSingleton(services => new ChallengeBook(services.GetRequiredService<TimeProvider>(), settings.Edge));
        builder.Services.AddSingleton(services => new EdgeRateLimits(settings.Edge, services.GetRequiredService<TimeProvider>()));
        builder.Services.AddSingleton<EdgeSecurityLog>();
        builder.Services.AddHealthChecks().AddCheck<RegisteredHealthCheck>("directory-registration", tags: [HealthTags.Ready]);

        var app = builder.Build();
        RelayService relay;
        try
        {
            relay = app.Services.GetRequiredService<RelayService>();
        }
        catch (ArgumentException ex)
        {
            throw new ConfigurationException("--public-ip", $"relay legs cannot be bound: {ex.Message}", ex);
        }
        try
        {
            relay.StartKernelOffloadAsync(CancellationToken.None).GetAwaiter().GetResult();
        }
        catch (RelayOffloadUnavailableException ex)
        {
            throw new ConfigurationException("Super:Relay:KernelOffload", $"{ex.Message}; or leave it off (user space forwards every leg)", ex);
        }
        WarnIfFileDescriptorsTooFew(settings, app.Services.GetRequiredService<ILogger<DirectoryCache>>());
        ShowMetricsAtZero(settings, app.Services.GetRequiredService<LocalStreams>());
        var cache = app.Services.GetRequiredService<DirectoryCache>();
        app.Services.GetRequiredService<ILogger<DirectoryCache>>().LogInformation(
            "Directory cache loaded: {Regions} regions from {Path}", cache.Regions.Regions.Count, cache.Path);
        ClusterNodeHost.MapService<ControlStreamService>(app, Protocol.Control.ControlStream.Descriptor);
        ClusterNodeHost.MapService<SuperNodePeersService>(app, SuperNodePeers.Descriptor);
        ClusterNodeHost.MapService<ExitAllocationService>(app, ExitAllocation.Descriptor);
        ClusterNodeHost.MapNodeEndpoints(app);
        return app;
    }

    private const int ConnectionsBesidePeers = SuperNodeOptions.ConnectionsBesidePeers;

    /// <summary>
    /// Every series this SuperNode exports exists from its start, at zero for the label values known then (the relay's before
    /// its first leg, every refusal reason, every command kind, its region's exit pool while the pool runs elsewhere); the
    /// sessions are read from <see cref="LocalStreams"/> at each scrape.
    /// </summary>
    private static void ShowMetricsAtZero(SuperNodeSettings settings, LocalStreams streams)
    {
        RelayMetrics.ShowAtZero();
        EdgeSecurityLog.ShowAtZero();
        EdgeStream.ShowAtZero();
        ExitMetrics.Default.ShowAtZero(settings.Region);
        _ = CommandMetrics.Default;
        var sessions = SessionMetrics.Default;
        sessions.Show(streams);
        Prometheus.Metrics.DefaultRegistry.AddBeforeCollectCallback(() => sessions.Show(streams));
    }

    /// <summary>
    /// Each peer stream holds a socket, and a process out of descriptors dies (the runtime needs them too), so a SuperNode
    /// admits only the streams that fit (<see cref="SuperNodeOptions.StreamsAdmitted"/>). Say so at startup when that is
    /// fewer than --max-streams asked, or when the limit is too low for even one stream beside the rest.
    /// </summary>
    private static void WarnIfFileDescriptorsTooFew(SuperNodeSettings settings, ILogger logger)
    {
        if (FileDescriptorLimit.Current() is not { } limit)
            return;
        var others = ConnectionsBesidePeers + settings.RelayPortHigh - settings.RelayPortLow + 1;
        if (settings.MaxStreamsRequested is { } requested && requested > settings.MaxStreams)
            logger.LogWarning(
                "--max-streams {MaxStreams} needs about {Needed} file descriptors but this process may open {Limit} (ulimit -n): it admits {Admitted} streams and refuses more with AT_CAPACITY; raise the limit (LimitNOFILE= in a systemd unit) to hold them all",
                requested, FileDescriptorLimit.Needed(requested, others), limit, settings.MaxStreams);
        else if (limit < FileDescriptorLimit.Needed(settings.MaxStreams, others))
            logger.LogWarning(
                "{MaxStreams} streams need about {Needed} file descriptors but this process may open {Limit} (ulimit -n): raise the limit (LimitNOFILE= in a systemd unit)",
                settings.MaxStreams, FileDescriptorLimit.Needed(settings.MaxStreams, others), limit);
    }

    /// <summary>How long a SuperNode that stops keeps relaying while the chains through it move elsewhere.</summary>
    private static readonly TimeSpan RelayHandOverWithin = TimeSpan.FromSeconds(3);

    /// <summary>
    /// The deregistration (after the registrar's stop, up to 2 s) and the relay's hand-over share the phase before the
    /// services unbind: it lasts as long as the longer of them may, not Akka's default 5 s, which cut a longer
    /// Super:DeregisterTimeout short.
    /// </summary>
    private static string ShutdownPhaseConfiguration(SuperNodeSettings settings)
    {
        var longest = Math.Max((settings.DeregisterTimeout + TimeSpan.FromSeconds(2)).TotalMilliseconds, RelayHandOverWithin.TotalMilliseconds);
        return $"akka.coordinated-shutdown.phases.before-service-unbind.timeout = {(long)longest + 1000}ms";
    }

    /// <summary>Before the gRPC services go, the relay's chains are moved to other SuperNodes (<see cref="RelayHandOver"/>).</summary>
    private static void HandOverRelayOnShutdown(ActorSystem system, IServiceProvider services)
    {
        var handOver = services.GetRequiredService<RelayHandOver>();
        CoordinatedShutdown.Get(system).AddTask(CoordinatedShutdown.PhaseBeforeServiceUnbind, "relay-hand-over", async () =>
        {
            await handOver.HandOverAsync(RelayHandOverWithin, CancellationToken.None);
            return Akka.Done.Instance;
        });
    }

    /// <summary>A SuperNode that stops cleanly leaves the directory at once instead of after the grace.</summary>
    private static void DeregisterOnShutdown(ActorSystem system, IActorRef registrar, SuperNodeSettings settings, IServiceProvider services)
    {
        var client = services.GetRequiredService<DirectoryClient>();
        var status = services.GetRequiredService<RegistrationStatus>();
        var logger = services.GetRequiredService<ILogger<DirectoryClient>>();
        CoordinatedShutdown.Get(system).AddTask(CoordinatedShutdown.PhaseBeforeServiceUnbind, "directory-deregister", async () =>
        {
            if (!status.IsRegistered)
                return Akka.Done.Instance;
            try
            {
                // No report may follow the deregistration and register this SuperNode again.
                await registrar.GracefulStop(TimeSpan.FromSeconds(2));
                using var timeout = new CancellationTokenSource(settings.DeregisterTimeout);
                // Tried again until DeregisterTimeout: one call gives up after its own deadline, and a BaseNode that is
                // briefly away (restarting, failing over) must not cost the region the grace.
                while (true)
                {
                    try
                    {
                        await client.DeregisterAsync(new DeregisterRequest { SupernodeId = settings.Id, Region = settings.Region }, timeout.Token);
                        break;
                    }
                    catch (Exception ex) when (ex is DirectoryUnavailableException or Grpc.Core.RpcException && !timeout.IsCancellationRequested)
                    {
                        await Task.Delay(TimeSpan.FromMilliseconds(500), timeout.Token);
                    }
                }
                logger.LogInformation("Deregistered SuperNode {SuperNodeId} from the directory", settings.Id);
            }
            catch (Exception ex) when (ex is DirectoryUnavailableException or OperationCanceledException or Grpc.Core.RpcException or AskTimeoutException)
            {
                logger.LogWarning("Could not deregister from the directory ({Reason}); it marks this SuperNode down after the grace", ex.Message);
            }
            return Akka.Done.Instance;
        });
    }
}

public sealed class RegisteredHealthCheck(RegistrationStatus status) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        Task.FromResult(status switch
        {
            { IsRegistered: false } => HealthCheckResult.Unhealthy("not registered with the directory yet"),
            { AdmitsPeers: false } => HealthCheckResult.Unhealthy("catching up with the directory's revocations"),
            _ => HealthCheckResult.Healthy("registered with the directory"),
        });
}
