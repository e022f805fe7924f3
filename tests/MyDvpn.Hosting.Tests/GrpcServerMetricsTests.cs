using Grpc.AspNetCore.Server;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using MyDvpn.Protocol.Admin;
using MyDvpn.Protocol.Directory;
using MyDvpn.Security;
using Prometheus;

namespace MyDvpn.Hosting.Tests;

/// <summary>The gRPC server's series over real Kestrel with mutual TLS, each test with a registry of its own.</summary>
public sealed class GrpcServerMetricsTests : IDisposable
{
    private const string Service = "mydvpn.admin.v1.Admin";

    private readonly CallerCertificates certificates = new();
    private readonly CollectorRegistry registry = Metrics.NewCustomRegistry();

    public void Dispose() => certificates.Dispose();

    [Fact]
    public async Task Every_method_of_a_served_service_starts_at_zero_and_passes_promtool()
    {
        new GrpcServerMetrics(Metrics.WithCustomRegistry(registry)).Serve(Admin.Descriptor);

        var scraped = await MetricsText.ScrapeAsync(registry);

        foreach (var method in Admin.Descriptor.Methods.Select(m => m.Name))
        {
            Assert.Equal(0, MetricsText.Value(scraped, Series("grpc_server_started_total", method)));
            Assert.Equal(0, MetricsText.Value(scraped, Series("grpc_server_handled_total", method, "OK")));
            Assert.Equal(0, MetricsText.Value(scraped, Series("grpc_server_handling_seconds_count", method)));
        }
        await Promtool.AssertPassesAsync(scraped, "the gRPC server's series");
    }

    [Fact]
    public async Task A_call_is_counted_by_its_status_code_refusals_of_the_certificate_check_too()
    {
        var metrics = new GrpcServerMetrics(Metrics.WithCustomRegistry(registry));
        metrics.Serve(Admin.Descriptor);
        await using var server = await TlsGrpcTestServer.StartAsync(certificates.Server, ClientCertificateMode.RequireCertificate,
            services => services
                .AddSingleton(metrics)
                .AddSingleton<GrpcMetricsInterceptor>()
                .Configure<GrpcServiceOptions>(o => o.Interceptors.Add<GrpcMetricsInterceptor>())
                .AddCertificateKindInterceptor(certificates.Server, new CertificatePolicy().Allow(Service, Callers.Admins)),
            app => app.MapGrpcService<ClusterOnly>());

        using (var admin = GrpcChannels.MutualTls(server.Address, certificates.Admin, ExpectedServer.BaseNode))
        {
            var client = new Admin.AdminClient(admin);
            await client.GetClusterAsync(new GetClusterRequest(), deadline: Deadline());
            await Assert.ThrowsAsync<RpcException>(() => client.ListRegionsAsync(new ListRegionsRequest(), deadline: Deadline()).ResponseAsync);
        }
        using (var node = GrpcChannels.MutualTls(server.Address, certificates.Node, ExpectedServer.BaseNode))
            await Assert.ThrowsAsync<RpcException>(() => new Admin.AdminClient(node).GetClusterAsync(new GetClusterRequest(), deadline: Deadline()).ResponseAsync);

        var scraped = await MetricsText.ScrapeAsync(registry);
        Assert.Equal(2, MetricsText.Value(scraped, Series("grpc_server_started_total", "GetCluster")));
        Assert.Equal(1, MetricsText.Value(scraped, Series("grpc_server_handled_total", "GetCluster", "OK")));
        Assert.Equal(1, MetricsText.Value(scraped, Series("grpc_server_handled_total", "GetCluster", "PermissionDenied")));
        Assert.Equal(1, MetricsText.Value(scraped, Series("grpc_server_handled_total", "ListRegions", "Unimplemented")));
        Assert.Equal(0, MetricsText.Value(scraped, Series("grpc_server_handled_total", "ListRegions", "OK")));
        Assert.Equal(2, MetricsText.Value(scraped, Series("grpc_server_handling_seconds_count", "GetCluster")));
        await Promtool.AssertPassesAsync(scraped, "the gRPC server's series after calls");
    }

    private static string Series(string name, string method, string? code = null) =>
        code is null
            ? $$"""{{name}}{grpc_type="unary",grpc_service="{{Service}}",grpc_method="{{method}}"}"""
            : $$"""{{name}}{grpc_type="unary",grpc_service="{{Service}}",grpc_method="{{method}}",grpc_code="{{code}}"}""";

    private static DateTime Deadline() => DateTime.UtcNow.AddSeconds(10);

    /// <summary>Answers GetCluster; every other method is the base's, which answers <c>UNIMPLEMENTED</c>.</summary>
    private sealed class ClusterOnly : Admin.AdminBase
    {
        public override Task<ClusterState> GetCluster(GetClusterRequest request, ServerCallContext context) =>
            Task.FromResult(new ClusterState { SelfAddress = "akka.ssl.tcp://test@127.0.0.1:1" });
    }
}
