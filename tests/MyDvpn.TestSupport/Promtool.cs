using System.ComponentModel;
using System.Diagnostics;

namespace MyDvpn.TestSupport;

/// <summary>
/// Prometheus's own linter of the exposition format, <c>promtool check metrics</c> (Debian's <c>prometheus</c> package;
/// <c>.ci/run</c> installs it). A machine without it fails the test that needs it, saying so: it is never skipped.
/// </summary>
public static class Promtool
{
    /// <summary>Runs <c>promtool check metrics</c> on <paramref name="scraped"/>: its exit code and what it printed.</summary>
    public static async Task<(int ExitCode, string Output)> CheckMetricsAsync(string scraped)
    {
        var start = new ProcessStartInfo("promtool")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add("check");
        start.ArgumentList.Add("metrics");
        Process process;
        try
        {
            process = Process.Start(start)!;
        }
        catch (Win32Exception ex)
        {
            Assert.Fail($"promtool is not on PATH ({ex.Message}): install Debian's prometheus package, as .ci/run does");
            throw;
        }
        using (process)
        {
            var output = process.StandardOutput.ReadToEndAsync();
            var error = process.StandardError.ReadToEndAsync();
            await process.StandardInput.WriteAsync(scraped);
            process.StandardInput.Close();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            await process.WaitForExitAsync(timeout.Token);
            return (process.ExitCode, (await output + await error).Trim());
        }
    }

    /// <summary>Fails unless <c>promtool check metrics</c> passes <paramref name="scraped"/>, with what it refused.</summary>
    public static async Task AssertPassesAsync(string scraped, string what)
    {
        var (exitCode, output) = await CheckMetricsAsync(scraped);
        Assert.True(exitCode == 0, $"promtool check metrics refuses the metrics of {what} (exit code {exitCode}):\n{output}");
    }
}
