using System.Net;
using System.Net.Security;
using System.Security.Authentication;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using MyDvpn.Common;
using MyDvpn.Security;

namespace MyDvpn.TestSupport;

/// <summary>
/// A real Kestrel gRPC server (HTTP/2 over TLS 1.2 or 1.3) on loopback, on a free port or a given one, serving what
/// the test registers and maps. Disposing stops it; a second dispose does nothing.
/// </summary>
public sealed class TlsGrpcTestServer : IAsyncDisposable
{
    private readonly WebApplication app;
    private int disposed;

    private TlsGrpcTestServer(WebApplication app, HostPort address)
    {
        this.app = app;
        Address = address;
    }

    /// <summary>Where the server listens, as a client dials it.</summary>
    public HostPort Address { get; }

    /// <summary>
    /// Starts a server with <paramref name="tls"/>'s certificate, asking for client certificates as
    /// <paramref name="clientCertificates"/> says and checking any it gets against <paramref name="tls"/>'s operator CA.
    /// </summary>
    /// <param name="addServices">Registers the services and what they need (<c>AddGrpc</c> is already called).</param>
    /// <param name="mapServices">Maps the gRPC services.</param>
    /// <param name="clientCertificateKind">The kind a client certificate must be; null for any kind the CA issues.</param>
    /// <param name="port">0 for any free port; a given port to come back where a stopped server was.</param>
    public static Task<TlsGrpcTestServer> StartAsync(
        TlsMaterial tls,
        ClientCertificateMode clientCertificates,
        Action<IServiceCollection> addServices,
        Action<WebApplication> mapServices,
        CertificateKind? clientCertificateKind = null,
        int port = 0) =>
        StartAsync(
            port,
            listen => listen.UseHttps(https =>
            {
                https.ServerCertificate = tls.Certificate;
                https.SslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13;
                https.ClientCertificateMode = clientCertificates;
                https.ClientCertificateValidation = (certificate, _, _) =>
                    tls.ValidatePeerIgnoringRevocation(certificate, clientCertificateKind, out _);
            }),
            addServices,
            mapServices);

    /// <summary>
    /// Starts a server that hands <paramref name="tls"/>'s certificate to the TLS handshake itself, so that it also
    /// serves a certificate Kestrel would refuse to configure (an admin certificate has no server-auth usage), for
    /// tests that show a client refuses it. It asks for no client certificate.
    /// </summary>
    /// <param name="addServices">Registers the services and what they need (<c>AddGrpc</c> is already called).</param>
    /// <param name="mapServices">Maps the gRPC services.</param>
    /// <param name="port">0 for any free port; a given port to come back where a stopped server was.</param>
    public static Task<TlsGrpcTestServer> StartServingAnyCertificateAsync(
        TlsMaterial tls,
        Action<IServiceCollection> addServices,
        Action<WebApplication> mapServices,
        int port = 0) =>
        StartAsync(
            port,
            listen => listen.UseHttps(new TlsHandshakeCallbackOptions
            {
                OnConnection = _ => ValueTask.FromResult(new SslServerAuthenticationOptions
                {
                    ServerCertificate = tls.Certificate,
                    EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
                    ApplicationProtocols = [SslApplicationProtocol.Http2],
                    ClientCertificateRequired = false,
                }),
            }),
            addServices,
            mapServices);

    /// <summary>Stops the server; a second call does nothing.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref disposed, 1) == 1)
            return;
        await app.StopAsync();
        await app.DisposeAsync();
    }

    private static async Task<TlsGrpcTestServer> StartAsync(
        int port, Action<ListenOptions> useHttps, Action<IServiceCollection> addServices, Action<WebApplication> mapServices)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            EnvironmentName = "Production",
            ContentRootPath = AppContext.BaseDirectory,
        });
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, port, listen =>
        {
            listen.Protocols = HttpProtocols.Http2;
            useHttps(listen);
        }));
        builder.Services.AddGrpc();
        addServices(builder.Services);

        var app = builder.Build();
        mapServices(app);
        try
        {
            await app.StartAsync();
            var bound = new Uri(app.Urls.Single());
            return new TlsGrpcTestServer(app, new HostPort(bound.Host, bound.Port));
        }
        catch
        {
            await app.DisposeAsync();
            throw;
        }
    }
}
