using System.Security.Authentication;
using Akka.Cluster.Hosting;
using Akka.Cluster.Sharding;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using MyDvpn.BaseNode.Certificates;
using MyDvpn.BaseNode.Directory;
using MyDvpn.BaseNode.Enrollment;
using MyDvpn.BaseNode.Web;
using MyDvpn.Hosting;
using MyDvpn.Logging;
using MyDvpn.Security;

namespace MyDvpn.BaseNode;

/// <summary><c>mydvpn base</c>: a member of the BaseNode cluster holding the global directory.</summary>
public static class BaseNodeHost
{
    public const string Role = "base";
    public static readonly ClusterIdentity Identity = new("mydvpn-base", [Role]);

    /// <summary>The directory takes SuperNodes (each only as itself, <see cref="DirectoryGrpcService"/>), the admin API admins.</summary>
    public static CertificatePolicy Policy => new CertificatePolicy()
        .Allow(Protocol.Directory.SuperNodeDirectory.Descriptor.FullName, Callers.SuperNodes)
        .Allow(Protocol.Admin.Admin.Descriptor.FullName, Callers.Admins);

    public static WebApplication Build(ClusterNodeSettings settings, DirectorySettings? directorySettings = null, RedemptionSettings? redemptions = null,
        LogFormat logFormat = LogFormat.Json, WebSettings? webSettings = null)
    {
        var directory = directorySettings ?? DirectorySettings.Default;
        var web = webSettings ?? WebSettings.Off;
        // Every caller of a BaseNode holds an operator certificate: SuperNodes a node one, admins an admin one.
        var builder = ClusterNodeHost.CreateBuilder(settings, Identity, ClientCertificateMode.RequireCertificate, (akka, services) =>
        {
            var loggers = services.GetRequiredService<ILoggerFactory>();
            var directoryLogger = loggers.CreateLogger<DirectoryEntity>();
            var tokenLogger = loggers.CreateLogger<EnrollmentTokenEntity>();
            var revocationsLogger = loggers.CreateLogger<RevocationsEntity>();
            var crlLogger = loggers.CreateLogger<CrlEntity>();
            akka.WithShardRegion<DirectoryShard>(
                DirectoryEntityTypes.Directory,
                region => DirectoryEntity.Props(region, directory, logger: directoryLogger),
                new DirectoryMessageExtractor(),
                new ShardOptions
                {
                    Role = Role,
                    // Entities come back after a restart on their own, so a SuperNode that never
                    // reports again is still marked down.
                    RememberEntities = true,
                    RememberEntitiesStore = RememberEntitiesStore.Eventsourced,
                    StateStoreMode = StateStoreMode.Persistence,
                });
            akka.WithShardRegion<RegionIndexShard>(
                DirectoryEntityTypes.RegionIndex,
                _ => RegionIndexEntity.Props(),
                new RegionIndexMessageExtractor(),
                new ShardOptions { Role = Role, StateStoreMode = StateStoreMode.Persistence });
            // Tokens and the revocation list act only when asked, so they need not be remembered.
            akka.WithShardRegion<EnrollmentTokenShard>(
                EnrollmentEntityTypes.Token,
                tokenId => EnrollmentTokenEntity.Props(tokenId, logger: tokenLogger),
                new EnrollmentTokenMessageExtractor(),
                new ShardOptions { Role = Role, StateStoreMode = StateStoreMode.Persistence });
            akka.WithShardRegion<RevocationsShard>(
                EnrollmentEntityTypes.Revocations,
                _ => RevocationsEntity.Props(logger: revocationsLogger),
                new RevocationsMessageExtractor(),
                new ShardOptions { Role = Role, StateStoreMode = StateStoreMode.Persistence });
            // The token index and the peer registry are asked and told only too.
            akka.WithShardRegion<TokenIndexShard>(
                EnrollmentEntityTypes.TokenIndex,
                _ => TokenIndexEntity.Props(logger: tokenLogger),
                new TokenIndexMessageExtractor(),
                new ShardOptions { Role = Role, StateStoreMode = StateStoreMode.Persistence });
            akka.WithShardRegion<PeerRegistryShard>(
                EnrollmentEntityTypes.PeerRegistry,
                _ => PeerRegistryEntity.Props(logger: loggers.CreateLogger<PeerRegistryEntity>()),
                new PeerRegistryMessageExtractor(),
                new ShardOptions { Role = Role, StateStoreMode = StateStoreMode.Persistence });
            akka.WithShardRegion<CrlShard>(
                CrlEntityTypes.Crl,
                _ => CrlEntity.Props(logger: crlLogger),
                new CrlMessageExtractor(),
                new ShardOptions { Role = Role, StateStoreMode = StateStoreMode.Persistence });
        }, logFormat: logFormat);
        if (web.Address is { } webAddress)
        {
            builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(webAddress.ToBindEndPoint("--web"), listen =>
            {
                listen.Protocols = HttpProtocols.Http1AndHttp2;
                listen.UseHttps(https =>
                {
                    https.ServerCertificate = settings.Tls.Certificate;
                    https.SslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13;
                    // A browser presents a certificate only if it has one to offer: an admin certificate is one way in
                    // (TopologyPage checks it against the operator CA), a login token the other. Any other certificate is
                    // refused by the page, with its reason, rather than by the handshake, which could not say why.
                    https.ClientCertificateMode = ClientCertificateMode.AllowCertificate;
                    https.ClientCertificateValidation = (_, _, _) => true;
                });
            }));
        }
        builder.Services.AddSingleton(Policy);
        builder.Services.AddSingleton<DirectoryQueries>();
        builder.Services.AddSingleton<EnrollmentQueries>();
        builder.Services.AddSingleton<CrlQueries>();
        builder.Services.AddSingleton<CrlPublication>();
        builder.Services.AddHostedService(services => new CrlFollower(
            services.GetRequiredService<CrlQueries>(), settings.Crl, directory.ReportInterval, TimeProvider.System,
            services.GetRequiredService<ILogger<CrlFollower>>()));
        builder.Services.AddSingleton(services => new RedemptionLimits(redemptions ?? RedemptionSettings.Default, TimeProvider.System));
        builder.Services.AddSingleton<SuperNodeClients>();
        builder.Services.AddSingleton<TopologyQueries>();
        builder.Services.AddSingleton(web);
        builder.Services.AddSingleton(_ => new WebTokens(TimeProvider.System));
        builder.Services.AddHostedService(services => new SuperNodeConnections(
            services.GetRequiredService<DirectoryQueries>(), services.GetRequiredService<SuperNodeClients>(), directory.ReportInterval,
            TimeProvider.System, services.GetRequiredService<ILogger<SuperNodeConnections>>()));

        var app = builder.Build();
        // Its series are at zero from the start; the peers are read from the registry at each scrape.
        var enrollmentMetrics = EnrollmentMetrics.Default;
        var directoryQueries = app.Services.GetRequiredService<DirectoryQueries>();
        var enrollmentQueries = app.Services.GetRequiredService<EnrollmentQueries>();
        Prometheus.Metrics.DefaultRegistry.AddBeforeCollectCallback(cancellationToken => enrollmentMetrics.RefreshPeersAsync(
            async within => await directoryQueries.RegionNames(within),
            within => enrollmentQueries.PeerCounts(EnrollmentMetrics.PeersAnswerWithin, within),
            cancellationToken));
        ClusterNodeHost.MapService<DirectoryGrpcService>(app, Protocol.Directory.SuperNodeDirectory.Descriptor);
        ClusterNodeHost.MapService<AdminGrpcService>(app, Protocol.Admin.Admin.Descriptor);
        ClusterNodeHost.MapNodeEndpoints(app);
        TopologyPage.Map(app, web);
        return app;
    }
}
