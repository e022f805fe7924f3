using System.Reflection;
using Prometheus;

namespace MyDvpn.Telemetry;

/// <summary>
/// What every mydvpn process exports beside its own series: the process's CPU, memory, threads and collections
/// (<c>process_*</c>, <c>dotnet_*</c>) and <c>mydvpn_build_info</c>. Not prometheus-net's adapters of .NET's event counters
/// and meters: they name what they find after the instrument (<c>system_runtime_dotnet_gc_collections</c>, a counter
/// exported as a gauge; <c>…_thread_pool_thread_count</c>, a gauge ending in <c>_count</c>), which <c>promtool check
/// metrics</c> refuses, nor its own debug series (<c>prometheus_net_*</c>).
/// </summary>
public static class ProcessMetrics
{
    private static readonly SuppressDefaultMetricOptions Adapters = new()
    {
        SuppressProcessMetrics = false,
        SuppressDebugMetrics = true,
        SuppressEventCounters = true,
        SuppressMeters = true,
    };

    /// <summary>
    /// Sets up <see cref="Metrics.DefaultRegistry"/>, which a node's <c>/metrics</c> serves. Takes effect only before the
    /// registry is first collected (prometheus-net adds its defaults then); calling it again changes nothing.
    /// </summary>
    public static void UseDefaultRegistry()
    {
        Metrics.SuppressDefaultMetrics(Adapters);
        PublishBuildInfo(Metrics.DefaultFactory);
    }

    /// <summary>A registry of its own with the same process series as <see cref="UseDefaultRegistry"/> sets up (the agent's).</summary>
    public static CollectorRegistry NewRegistry()
    {
        var registry = Metrics.NewCustomRegistry();
        DotNetStats.Register(registry);
        PublishBuildInfo(Metrics.WithCustomRegistry(registry));
        return registry;
    }

    /// <summary>The version this build carries: the assembly's informational version before its <c>+</c>.</summary>
    public static string Version => Split().Version;

    /// <summary>The commit this build was made from (after the <c>+</c> of the informational version); <c>unknown</c> without one.</summary>
    public static string Revision => Split().Revision;

    /// <summary><c>mydvpn_build_info{version, revision} 1</c>.</summary>
    public static void PublishBuildInfo(IMetricFactory factory) =>
        factory.CreateGauge("mydvpn_build_info", "Always 1: the version of mydvpn this process runs and the commit it was built from.",
                new GaugeConfiguration { LabelNames = ["version", "revision"] })
            .WithLabels(Version, Revision)
            .Set(1);

    private static (string Version, string Revision) Split()
    {
        var informational = typeof(ProcessMetrics).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0.0.0";
        var plus = informational.IndexOf('+', StringComparison.Ordinal);
        return plus < 0 ? (informational, "unknown") : (informational[..plus], informational[(plus + 1)..]);
    }
}
