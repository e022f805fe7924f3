using Grpc.AspNetCore.Server;
using Microsoft.Extensions.DependencyInjection;
using MyDvpn.Hosting;
using MyDvpn.Security;

namespace MyDvpn.TestSupport;

public static class CertificateKindServices
{
    /// <summary>
    /// Puts <see cref="CertificateKindInterceptor"/> in front of every gRPC service, with the TLS material and the
    /// policy it checks callers against, as <c>ClusterNodeHost</c> sets it up.
    /// </summary>
    public static IServiceCollection AddCertificateKindInterceptor(
        this IServiceCollection services, TlsMaterial tls, CertificatePolicy policy) =>
        services
            .AddSingleton(tls)
            .AddSingleton(policy)
            .AddSingleton<CertificateKindInterceptor>()
            .Configure<GrpcServiceOptions>(o => o.Interceptors.Add<CertificateKindInterceptor>());
}
