using System.Net;
using System.Security.Authentication;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using MyDvpn.Security;

namespace MyDvpn.Hosting.Tests;

/// <summary>
/// A real Kestrel gRPC server on a free loopback port, with TLS from a node certificate and the
/// <see cref="CertificateKindInterceptor"/> in front of every service, as <see cref="ClusterNodeHost"/> sets it up.
/// </summary>
internal sealed class TlsGrpcServer : IAsyncDisposable
{
    private readonly WebApplication app;

    private TlsGrpcServer(WebApplication app, HostPort address)
    {
        this.app = app;
        Address = address;
    }

    public HostPort Address { get; }

    /// <param name="service">The one gRPC service served: this instance, so a test can see what reached it.</param>
    public static async Task<TlsGrpcServer> StartAsync<TService>(
        TlsMaterial tls, CertificatePolicy policy, ClientCertificateMode clientCertificates, TService service)
        where TService : class
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            EnvironmentName = "Production",
            ContentRootPath = AppContext.BaseDirectory,
        });
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, 0, listen =>
        {
            listen.Protocols = HttpProtocols.Http2;
            listen.UseHttps(https =>
            {
                https.ServerCertificate = tls.Certificate;
                https.SslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13;
                https.ClientCertificateMode = clientCertificates;
                https.ClientCertificateValidation = (certificate, _, _) => tls.ValidatePeer(certificate, null, out _);
            });
        }));
        builder.Services.AddSingleton(tls);
        builder.Services.AddSingleton(policy);
        builder.Services.AddSingleton<CertificateKindInterceptor>();
        builder.Services.AddGrpc(o => o.Interceptors.Add<CertificateKindInterceptor>());
        builder.Services.AddSingleton(service);

        var app = builder.Build();
        app.MapGrpcService<TService>();
        try
        {
            await app.StartAsync();
            var bound = new Uri(app.Urls.Single());
            return new TlsGrpcServer(app, new HostPort(bound.Host, bound.Port));
        }
        catch
        {
            await app.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await app.StopAsync();
        await app.DisposeAsync();
    }
}
