using System.Globalization;
using System.Text;
using Prometheus;

namespace MyDvpn.TestSupport;

/// <summary>Metrics as <c>/metrics</c> prints them: a registry's text, and one series' value read back from a text.</summary>
public static class MetricsText
{
    /// <summary>What <c>/metrics</c> would print for <paramref name="registry"/>.</summary>
    public static async Task<string> ScrapeAsync(CollectorRegistry registry)
    {
        using var stream = new MemoryStream();
        await registry.CollectAndExportAsTextAsync(stream);
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    /// <summary>The value of <paramref name="series"/> (name and labels as printed) in <paramref name="scraped"/>; null when absent.</summary>
    public static double? Value(string scraped, string series) =>
        scraped.Split('\n')
            .Where(line => line.StartsWith(series + " ", StringComparison.Ordinal))
            .Select(line => (double?)double.Parse(line[(series.Length + 1)..], CultureInfo.InvariantCulture))
            .SingleOrDefault();

    /// <summary>The names of the metric families in <paramref name="scraped"/> (its <c># TYPE</c> lines).</summary>
    public static IReadOnlySet<string> Families(string scraped) =>
        scraped.Split('\n')
            .Where(line => line.StartsWith("# TYPE ", StringComparison.Ordinal))
            .Select(line => line.Split(' ')[2])
            .ToHashSet(StringComparer.Ordinal);
}
