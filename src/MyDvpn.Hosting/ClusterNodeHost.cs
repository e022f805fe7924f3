using System.Security.Authentication;
using Akka.Actor;
using Akka.Cluster.Hosting;
using Akka.Hosting;
using Akka.Persistence.Sql.Hosting;
using Akka.Remote.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using MyDvpn.Common;
using MyDvpn.Logging;
using MyDvpn.Security;
using MyDvpn.Telemetry;
using Prometheus;
using MsLogLevel = Microsoft.Extensions.Logging.LogLevel;
using ServiceDescriptor = Google.Protobuf.Reflection.ServiceDescriptor;

namespace MyDvpn.Hosting;

/// <summary>Who a clustered node is: its cluster's actor-system name and its roles.</summary>
/// <remarks>
/// Each cluster has its own system name (<c>mydvpn-base</c>, <c>mydvpn-region-R</c>), so a SuperNode
/// pointed at a seed of another region cannot join it by mistake: Akka refuses the join.
/// </remarks>
public sealed record ClusterIdentity(string ActorSystemName, IReadOnlyList<string> Roles);

/// <summary>
/// Who may be a member of a node's cluster: a node whose certificate (valid under the operator CA) names the same role
/// and region as the node's own — the BaseNode cluster takes BaseNodes only, a region's cluster that region's SuperNodes.
/// </summary>
public static class ClusterAdmission
{
    public static bool Admits(TlsMaterial tls, System.Security.Cryptography.X509Certificates.X509Certificate2? certificate, out string reason)
    {
        var self = tls.Identity ?? throw new InvalidOperationException("a cluster member runs with a node certificate");
        if (certificate is null)
        {
            reason = "no certificate presented";
            return false;
        }
        if (!tls.ValidateNode(certificate, out var peer, out reason))
            return false;
        if (self.SharesClusterWith(peer))
            return true;
        var members = self.Role == NodeRole.Base ? "BaseNodes" : $"SuperNodes of region {self.Region}";
        reason = $"its certificate names {peer} ({peer.Uri}); only {members} may join the cluster of {self}";
        return false;
    }
}

/// <summary>
/// The shared shape of every clustered node: Kestrel with TLS on <c>--listen</c> (gRPC), plain HTTP
/// on <c>--metrics</c> (Prometheus, health), console logs in text or JSON (<see cref="ConsoleLogging"/>), and an Akka.NET cluster member whose remoting
/// is TLS with mutual authentication against the operator CA.
/// </summary>
public static class ClusterNodeHost
{
    /// <summary>Operator-tunable cluster settings, next to the executable (copied from <c>hocon/</c>).</summary>
    public static string TuningFile => Path.Combine(AppContext.BaseDirectory, "hocon", "cluster.hocon");

    public static WebApplicationBuilder CreateBuilder(
        ClusterNodeSettings settings,
        ClusterIdentity node,
        ClientCertificateMode clientCertificates,
        Action<AkkaConfigurationBuilder, IServiceProvider> configureActors,
        long? maxConnections = null,
        LogFormat logFormat = LogFormat.Json)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            ContentRootPath = settings.DataDir,
            EnvironmentName = "Production",
            // No appsettings file is read (the sources are cleared below), but with reloading on the host puts a
            // FileSystemWatcher on the content root, the data directory, whose thread then woke for every write of
            // the journal's WAL (3 % of the SuperNode's CPU under the commands bench).
            Args = ["--hostBuilder:reloadConfigOnChange=false"],
        });
        builder.Configuration.Sources.Clear();
        ConsoleLogging.Use(builder.Logging, logFormat);
        if (settings.Otlp is { } otlp && settings.Tls.Identity is { } self)
            builder.Services.AddTracing(self.Role == NodeRole.Base ? "mydvpn-base" : "mydvpn-super", self.Id, otlp);
        // Before anything collects the registry /metrics serves.
        ProcessMetrics.UseDefaultRegistry();
        builder.Logging.AddFilter("Microsoft.AspNetCore", MsLogLevel.Warning);
        // grpc-dotnet logs a message it could not read ("Error reading message.") at Information with the parser's stack
        // trace, some 4 KB per attempt anyone can make; the services refuse such a message themselves and say it in one line.
        builder.Logging.AddFilter("Grpc.AspNetCore.Server.ServerCallHandler", MsLogLevel.Warning);
        // The health-check service logs every probe that finds a check unhealthy at Error: each /readyz poll and each gRPC
        // health publication while a node starts (not yet Up in its cluster, not yet registered with the directory) read as a
        // failure. Not ready is the probe's answer, not an event; what makes a node unready is logged once, when it happens,
        // by what owns it (ClusterMembershipMonitor, a SuperNode's DirectoryRegistrar).
        builder.Logging.AddFilter("Microsoft.Extensions.Diagnostics.HealthChecks.DefaultHealthCheckService", MsLogLevel.Critical);

        var tls = settings.Tls;
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            // Past this Kestrel refuses connections instead of running the process out of file descriptors.
            kestrel.Limits.MaxConcurrentConnections = maxConnections;
            kestrel.Listen(settings.Listen.ToBindEndPoint("--listen"), listen =>
            {
                listen.Protocols = HttpProtocols.Http2;
                listen.UseHttps(https =>
                {
                    https.ServerCertificate = tls.Certificate;
                    https.SslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13;
                    https.ClientCertificateMode = clientCertificates;
                    // The operator CA is not in the system store: validate against it alone. A revoked certificate
                    // passes the handshake so that CertificateKindInterceptor refuses its calls with a reason
                    // (CERTIFICATE_REVOKED) the caller can read; every service a node certificate opens is in its policy.
                    https.ClientCertificateValidation = (certificate, _, _) => tls.ValidatePeerIgnoringRevocation(certificate, null, out _);
                });
            });
            if (settings.Metrics is { } metrics)
                kestrel.Listen(metrics.ToBindEndPoint("--metrics"), listen => listen.Protocols = HttpProtocols.Http1);
        });

        // The caller's token stops the node (the CLI cancels it on SIGINT and SIGTERM, and forces the process on a second
        // Ctrl-C): the console lifetime's own signal handlers would stop the host from the signal's thread first, before the
        // CLI's handler saw the signal at all.
        builder.Services.AddSingleton<IHostLifetime, CallerLifetime>();
        builder.Services.AddSingleton(settings);
        builder.Services.AddSingleton(tls);
        builder.Services.AddSingleton(settings.Crl);
        builder.Services.AddSingleton<CertificateKindInterceptor>();
        builder.Services.AddSingleton(GrpcServerMetrics.Default);
        builder.Services.AddSingleton<GrpcMetricsInterceptor>();
        builder.Services.AddGrpc(o =>
        {
            // First, so that it counts the calls the certificate check refuses too.
            o.Interceptors.Add<GrpcMetricsInterceptor>();
            o.Interceptors.Add<CertificateKindInterceptor>();
            o.MaxReceiveMessageSize = 64 * 1024;
        });
        builder.Services.AddGrpcHealthChecks();
        builder.Services.AddHealthChecks()
            .AddCheck<ClusterMemberHealthCheck>("cluster-member", tags: [HealthTags.Ready]);
        builder.Services.AddHostedService<ClusterMembershipMonitor>();

        builder.Services.AddAkka(node.ActorSystemName, (akka, services) =>
        {
            akka.AddHocon(Akka.Configuration.ConfigurationFactory.ParseString(File.ReadAllText(TuningFile)), HoconAddMode.Prepend);
            akka.AddHocon(
                $"akka.cluster.shutdown-after-unsuccessful-join-seed-nodes = {(int)settings.JoinTimeout.TotalMilliseconds}ms",
                HoconAddMode.Prepend);
            // The node stops through the host, whose caller owns SIGINT and SIGTERM (`mydvpn`'s StopSignals). With the hook
            // on, Akka's own signal handler ran first and blocked the signal thread for the whole clean stop, so a second
            // Ctrl-C was not seen until the stop was over.
            akka.AddHocon("akka.coordinated-shutdown.run-by-clr-shutdown-hook = off", HoconAddMode.Prepend);
            var loggerFactory = services.GetRequiredService<ILoggerFactory>();
            AkkaLogBridge.Use(akka, loggerFactory, Akka.Event.LogLevel.InfoLevel);
            var remotingLogger = loggerFactory.CreateLogger(typeof(ClusterNodeHost));
            akka.WithRemoting(new RemoteOptions
            {
                HostName = settings.Cluster.ToBindEndPoint("--cluster").Address.ToString(),
                PublicHostName = settings.Cluster.Host,
                Port = settings.Cluster.Port,
                EnableSsl = true,
                Ssl = new SslOptions
                {
                    X509Certificate = tls.Certificate,
                    SuppressValidation = false,
                    // Both ends present an operator-issued node certificate: a process without one
                    // cannot open an association, let alone join.
                    RequireMutualAuthentication = true,
                    ValidateCertificateHostname = false,
                    // Called on both ends of every association: only this cluster's kind of node gets in.
                    CustomValidator = (certificate, _, remote, _, _) =>
                    {
                        if (ClusterAdmission.Admits(tls, certificate, out var reason))
                            return true;
                        remotingLogger.LogWarning("Refused cluster connection from {Remote}: {Reason}", remote, reason);
                        return false;
                    },
                },
            });
            akka.WithClustering(new ClusterOptions
            {
                Roles = [.. node.Roles],
                SeedNodes = [.. settings.SeedsOrSelf.Select(seed => $"akka.ssl.tcp://{node.ActorSystemName}@{seed}")],
            });
            akka.WithActors((system, _) =>
            {
                var downing = CrashedMemberDowningSettings.From(system.Settings.Config);
                if (downing.Enabled)
                    system.ActorOf(CrashedMemberDowning.Props(downing, loggerFactory.CreateLogger<CrashedMemberDowning>()), "crashed-member-downing");
            });
            settings.Persistence.Prepare();
            akka.WithSqlPersistence(settings.Persistence.ToDataOptions(), autoInitialize: true);
            configureActors(akka, services);
        });
        return builder;
    }

    /// <summary>Maps the gRPC service <typeparamref name="TService"/> on <c>--listen</c>; its methods' series start at zero (<see cref="GrpcServerMetrics"/>).</summary>
    public static void MapService<TService>(WebApplication app, ServiceDescriptor descriptor)
        where TService : class
    {
        var settings = app.Services.GetRequiredService<ClusterNodeSettings>();
        app.MapGrpcService<TService>().RequireHost($"*:{settings.Listen.Port}");
        app.Services.GetRequiredService<GrpcServerMetrics>().Serve(descriptor);
    }

    /// <summary>
    /// Runs a node until <paramref name="stop"/> is cancelled (SIGINT or SIGTERM through its caller) or it stops by itself
    /// (its actor system ended, e.g. downed). On <paramref name="stop"/> the actor system's coordinated shutdown runs first,
    /// while Kestrel still serves: a SuperNode hands its relay chains over and deregisters, every node leaves its cluster
    /// so shards hand off. Only then does the host stop, Kestrel first. (Akka's process-exit hook did this ahead of the
    /// host from its own signal handler; it is off, see <see cref="CreateBuilder"/>.)
    /// </summary>
    /// <exception cref="ConfigurationException">An address to listen on is taken by another process.</exception>
    public static async Task RunAsync(WebApplication app, CancellationToken stop)
    {
        try
        {
            await app.StartAsync(stop);
        }
        catch (IOException ex) when (ex.InnerException is Microsoft.AspNetCore.Connections.AddressInUseException)
        {
            // What started (the actor system) stops cleanly; the process then exits 2 with the setting to change.
            await app.StopAsync(CancellationToken.None);
            var settings = app.Services.GetRequiredService<ClusterNodeSettings>();
            var setting = ex.Message.Contains($":{settings.Listen.Port}", StringComparison.Ordinal) ? "--listen"
                : settings.Metrics is { } metrics && ex.Message.Contains($":{metrics.Port}", StringComparison.Ordinal) ? "--metrics"
                : "--web";
            throw new ConfigurationException(setting, $"{ex.Message.TrimEnd('.')}: another process listens there; stop it or give a free port", ex);
        }

        var stopping = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using (app.Lifetime.ApplicationStopping.Register(() => stopping.TrySetResult()))
        using (stop.Register(() => stopping.TrySetResult()))
            await stopping.Task;
        if (stop.IsCancellationRequested)
            await CoordinatedShutdown.Get(app.Services.GetRequiredService<ActorSystem>()).Run(CoordinatedShutdown.ClrExitReason.Instance);
        await app.StopAsync(CancellationToken.None);
    }

    /// <summary>Health and metrics on <c>--metrics</c>; gRPC health on <c>--listen</c>.</summary>
    public static void MapNodeEndpoints(WebApplication app)
    {
        var settings = app.Services.GetRequiredService<ClusterNodeSettings>();
        app.MapGrpcHealthChecksService().RequireHost($"*:{settings.Listen.Port}");
        app.Services.GetRequiredService<GrpcServerMetrics>().Serve(Grpc.Health.V1.Health.Descriptor);
        if (settings.Metrics is not { } metrics)
            return;
        var metricsHost = $"*:{metrics.Port}";
        app.MapMetrics("/metrics").RequireHost(metricsHost);
        app.MapHealthChecks("/healthz", new() { Predicate = _ => false }).RequireHost(metricsHost);
        app.MapHealthChecks("/readyz", new() { Predicate = check => check.Tags.Contains(HealthTags.Ready) }).RequireHost(metricsHost);
    }
}

/// <summary>A host lifetime that leaves starting and stopping to the caller: no signal handlers, no console messages.</summary>
internal sealed class CallerLifetime : IHostLifetime
{
    public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}

public static class HealthTags
{
    public const string Ready = "ready";
}
