using System.Net;
using System.Net.Sockets;
using MyDvpn.Common;
using Prometheus;

namespace MyDvpn.Telemetry.Tests;

public sealed class ProcessMetricsTests
{
    [Fact]
    public async Task The_default_registry_holds_the_process_series_and_the_build_and_passes_promtool()
    {
        ProcessMetrics.UseDefaultRegistry();

        var scraped = await MetricsText.ScrapeAsync(Metrics.DefaultRegistry);

        await Promtool.AssertPassesAsync(scraped, "the default registry");
        var families = MetricsText.Families(scraped);
        Assert.Contains("process_cpu_seconds_total", families);
        Assert.Contains("process_working_set_bytes", families);
        Assert.DoesNotContain(families, name => name.StartsWith("system_runtime_", StringComparison.Ordinal) || name.StartsWith("prometheus_net_", StringComparison.Ordinal));
        Assert.Equal(1, MetricsText.Value(scraped, $$"""mydvpn_build_info{version="{{ProcessMetrics.Version}}",revision="{{ProcessMetrics.Revision}}"}"""));
    }

    [Fact]
    public void The_build_is_named_by_its_version_and_commit()
    {
        Assert.Matches(@"^\d+\.\d+\.\d+", ProcessMetrics.Version);
        Assert.DoesNotContain("+", ProcessMetrics.Version, StringComparison.Ordinal);
        Assert.False(string.IsNullOrEmpty(ProcessMetrics.Revision));
    }

    [Fact]
    public async Task An_endpoint_serves_its_registry_over_http()
    {
        var registry = ProcessMetrics.NewRegistry();
        Metrics.WithCustomRegistry(registry).CreateCounter("mydvpn_test_events_total", "Events of the test.").Inc(3);
        var endpoint = new HostPort("127.0.0.1", FreePort());
        await using var served = new MetricsEndpoint(endpoint, "--metrics", registry);
        await served.StartAsync(CancellationToken.None);

        using var http = new HttpClient();
        var scraped = await http.GetStringAsync($"http://{endpoint}/metrics");
        await served.StopAsync(CancellationToken.None);

        Assert.Equal(3, MetricsText.Value(scraped, "mydvpn_test_events_total"));
        Assert.Contains("process_start_time_seconds", MetricsText.Families(scraped));
        await Promtool.AssertPassesAsync(scraped, "a registry of its own");
    }

    [Fact]
    public async Task An_endpoint_already_in_use_is_a_configuration_error_of_its_setting()
    {
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        var endpoint = new HostPort("127.0.0.1", ((IPEndPoint)taken.LocalEndpoint).Port);
        await using var served = new MetricsEndpoint(endpoint, "--metrics", Metrics.NewCustomRegistry());

        var error = await Assert.ThrowsAsync<ConfigurationException>(() => served.StartAsync(CancellationToken.None));

        Assert.Equal("--metrics", error.Setting);
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
