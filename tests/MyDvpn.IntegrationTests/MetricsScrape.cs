using MyDvpn.Common;

namespace MyDvpn.IntegrationTests;

/// <summary>Reads a process's <c>/metrics</c> as Prometheus would.</summary>
internal static class MetricsScrape
{
    public static async Task<string> TextAsync(HostPort metrics)
    {
        using var http = new HttpClient();
        return await http.GetStringAsync($"http://{metrics}/metrics");
    }

    /// <summary>An agent still starting has no endpoint yet: nothing to read.</summary>
    public static async Task<string> TextOrEmptyAsync(HostPort metrics)
    {
        try
        {
            return await TextAsync(metrics);
        }
        catch (HttpRequestException)
        {
            return "";
        }
    }
}
