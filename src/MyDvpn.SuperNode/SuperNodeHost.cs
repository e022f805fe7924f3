using Akka.Actor;
using Akka.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Logging;
using MyDvpn.Hosting;
using MyDvpn.Protocol.Directory;

namespace MyDvpn.SuperNode;

/// <summary><c>mydvpn super</c>: a member of region R's cluster, registered in the directory.</summary>
public static class SuperNodeHost
{
    public const string Role = "super";

    public static string RegionRole(string region) => $"region-{region}";

    /// <summary>Every region is a cluster of its own: its actor-system name carries the region.</summary>
    public static NodeIdentity IdentityOf(string region) => new($"mydvpn-region-{region}", [Role, RegionRole(region)]);

    public static WebApplication Build(SuperNodeSettings settings)
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
        // Peers have no certificates; SuperNode-to-SuperNode services will demand node ones per service.
        var builder = ClusterNodeHost.CreateBuilder(settings.Node, IdentityOf(settings.Region), ClientCertificateMode.AllowCertificate,
            (akka, services) => akka.WithActors((system, registry) =>
            {
                var registrar = system.ActorOf(DirectoryRegistrar.Props(
                    registration,
                    services.GetRequiredService<DirectoryClient>(),
                    services.GetRequiredService<DirectoryCache>(),
                    services.GetRequiredService<RegistrationStatus>(),
                    () => new SuperNodeLoad()), "directory-registrar");
                registry.Register<DirectoryRegistrar>(registrar);
                DeregisterOnShutdown(system, settings, services);
            }));
        builder.Services.AddSingleton(settings);
        builder.Services.AddSingleton(new CertificatePolicy());
        builder.Services.AddSingleton(new DirectoryClient(settings.BaseNodes, settings.Node.Tls));
        builder.Services.AddSingleton(new DirectoryCache(settings.Node.DataDir));
        builder.Services.AddSingleton<RegistrationStatus>();
        builder.Services.AddHealthChecks().AddCheck<RegisteredHealthCheck>("directory-registration", tags: [HealthTags.Ready]);

        var app = builder.Build();
        var cache = app.Services.GetRequiredService<DirectoryCache>();
        app.Services.GetRequiredService<ILogger<DirectoryCache>>().LogInformation(
            "Directory cache loaded: {Regions} regions from {Path}", cache.Regions.Regions.Count, cache.Path);
        ClusterNodeHost.MapNodeEndpoints(app);
        return app;
    }

    /// <summary>A SuperNode that stops cleanly leaves the directory at once instead of after the grace.</summary>
    private static void DeregisterOnShutdown(ActorSystem system, SuperNodeSettings settings, IServiceProvider services)
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
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(3));
                await client.DeregisterAsync(new DeregisterRequest { SupernodeId = settings.Id, Region = settings.Region }, timeout.Token);
                logger.LogInformation("Deregistered SuperNode {SuperNodeId} from the directory", settings.Id);
            }
            catch (Exception ex) when (ex is DirectoryUnavailableException or OperationCanceledException or Grpc.Core.RpcException)
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
        Task.FromResult(status.IsRegistered
            ? HealthCheckResult.Healthy("registered with the directory")
            : HealthCheckResult.Unhealthy("not registered with the directory yet"));
}
