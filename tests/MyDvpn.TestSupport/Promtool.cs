using System.ComponentModel;
using System.Diagnostics;

namespace MyDvpn.TestSupport;

/// <summary>
/// Prometheus's own checker of the exposition format (<c>promtool check metrics</c>) and of configuration and rule files
/// (Debian's <c>prometheus</c> package; <c>.ci/run</c> installs it). A machine without it fails the test that needs it, saying so: it is never skipped.
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
        using (var process = Start(start))
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

    /// <summary>
    /// Runs <c>promtool</c> with <paramref name="arguments"/> in <paramref name="directory"/> (relative paths in the files it
    /// reads are resolved from there): its exit code and what it printed.
    /// </summary>
    public static async Task<(int ExitCode, string Output)> RunAsync(string directory, params string[] arguments)
    {
        var start = new ProcessStartInfo("promtool")
        {
            WorkingDirectory = directory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments)
            start.ArgumentList.Add(argument);
        using var process = Start(start);
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill();
            Assert.Fail($"promtool {string.Join(' ', arguments)} did not end within 60 s");
        }
        return (process.ExitCode, (await output + await error).Trim());
    }

    /// <summary>Fails unless <c>promtool</c> with <paramref name="arguments"/> in <paramref name="directory"/> exits 0; what it printed.</summary>
    public static async Task<string> AssertRunsAsync(string directory, params string[] arguments)
    {
        var (exitCode, output) = await RunAsync(directory, arguments);
        Assert.True(exitCode == 0, $"promtool {string.Join(' ', arguments)} (in {directory}) exits {exitCode}:\n{output}");
        return output;
    }

    private static Process Start(ProcessStartInfo start)
    {
        try
        {
            return Process.Start(start)!;
        }
        catch (Win32Exception ex)
        {
            Assert.Fail($"promtool is not on PATH ({ex.Message}): install Debian's prometheus package, as .ci/run does");
            throw;
        }
    }

    /// <summary>Fails unless <c>promtool check metrics</c> passes <paramref name="scraped"/>, with what it refused.</summary>
    public static async Task AssertPassesAsync(string scraped, string what)
    {
        var (exitCode, output) = await CheckMetricsAsync(scraped);
        Assert.True(exitCode == 0, $"promtool check metrics refuses the metrics of {what} (exit code {exitCode}):\n{output}");
    }
}
