using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using MyDvpn.Common;
using Prometheus;

namespace MyDvpn.Telemetry;

/// <summary>
/// <c>/metrics</c> over plain HTTP on <paramref name="endpoint"/> for a process that has no web host of its own (the peer
/// agent; a node serves it from its Kestrel). Started with the process's host: an endpoint that cannot be bound stops the
/// start with a <see cref="ConfigurationException"/> naming <paramref name="setting"/>.
/// </summary>
public sealed class MetricsEndpoint(HostPort endpoint, string setting, CollectorRegistry registry) : IHostedService, IAsyncDisposable
{
    private WebApplication? app;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.WebHost.UseKestrelCore().ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Listen(endpoint.ToBindEndPoint(setting), listen => listen.Protocols = HttpProtocols.Http1);
        });
        builder.Services.AddRoutingCore();
        app = builder.Build();
        app.MapMetrics("/metrics", registry);
        try
        {
            await app.StartAsync(cancellationToken);
        }
        catch (IOException ex)
        {
            throw new ConfigurationException(setting, $"cannot serve /metrics on {endpoint}: {ex.Message}", ex);
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => app?.StopAsync(cancellationToken) ?? Task.CompletedTask;

    public async ValueTask DisposeAsync()
    {
        if (app is not null)
            await app.DisposeAsync();
    }
}
