using MyDvpn.Cli.Demo;
using MyDvpn.Testbed;
using Xunit.Abstractions;

namespace MyDvpn.NetnsTests;

/// <summary>
/// One end-to-end run: a fresh testbed, the network in it (BaseNode, both SuperNodes), the exit, then the client;
/// the test; then everything stopped, and checked that nothing of ours is left (no namespace, no wireguard-go, no
/// UAPI socket). On failure the nodes' logs go to the test output.
/// </summary>
internal static class NetworkRun
{
    /// <param name="dropUdpBetweenNats">Drop UDP between the two NAT routers before the peers start (forces the relay).</param>
    /// <param name="exitRegionSuperNodes">How many SuperNodes region us-east has; more than one share a PostgreSQL journal.</param>
    /// <param name="relayKernelOffload">The SuperNodes' kernels forward established relay legs.</param>
    /// <param name="secondExit">A second exit (exit-us-2, behind its own NAT) starts after the first, before the client.</param>
    /// <param name="superNodeEnvironment">More settings for every SuperNode, as environment variables.</param>
    public static async Task RunAsync(ITestOutputHelper output, Func<TestbedNetwork, CancellationToken, Task> test, bool dropUdpBetweenNats = false,
        int exitRegionSuperNodes = 1, bool relayKernelOffload = false, bool secondExit = false, IReadOnlyDictionary<string, string>? superNodeEnvironment = null)
    {
        using var bound = new CancellationTokenSource(TimeSpan.FromMinutes(4));
        var cancel = bound.Token;
        await NetnsTestbed.RemoveLeftoversAsync(cancel);
        var testbed = await NetnsTestbed.CreateAsync(secondExit, cancel);
        var work = Directory.CreateTempSubdirectory("mydvpn-netns-").FullName;
        string[] interfaces = [];
        try
        {
            await using (var network = await TestbedNetwork.StartAsync(testbed, MydvpnExecutable.InDirectory(AppContext.BaseDirectory), work,
                             output.WriteLine, cancel, exitRegionSuperNodes, relayKernelOffload, superNodeEnvironment))
            {
                interfaces = secondExit
                    ? [network.ClientInterface, network.ExitInterface, network.SecondExitInterface]
                    : [network.ClientInterface, network.ExitInterface];
                try
                {
                    if (dropUdpBetweenNats)
                        await testbed.DropUdpBetweenNatsAsync(cancel);
                    await network.StartExitAsync(cancel);
                    if (secondExit)
                        await network.StartSecondExitAsync(cancel);
                    await network.StartClientAsync(cancel);
                    await test(network, cancel);
                }
                catch
                {
                    WriteLogs(output, work);
                    throw;
                }
            }
            foreach (var name in interfaces)
                Assert.False(File.Exists($"/var/run/wireguard/{name}.sock"), $"{name}'s UAPI socket is left after the agents stopped");
        }
        finally
        {
            await testbed.DisposeAsync();
            KeepLogsIfAsked(output, work);
            Directory.Delete(work, recursive: true);
        }
    }

    /// <summary>
    /// With <c>MYDVPN_NETNS_KEEP_LOGS</c> set to a directory, every run's whole node and peer logs are copied into a new
    /// folder of it, passed or failed: a slow pass is explained from them as a failure is.
    /// </summary>
    private static void KeepLogsIfAsked(ITestOutputHelper output, string work)
    {
        var keep = Environment.GetEnvironmentVariable("MYDVPN_NETNS_KEEP_LOGS");
        var logs = Path.Combine(work, "logs");
        if (string.IsNullOrEmpty(keep) || !Directory.Exists(logs))
            return;
        var kept = Directory.CreateDirectory(Path.Combine(keep, $"{DateTime.UtcNow:yyyyMMdd-HHmmss}-{Path.GetFileName(work)}")).FullName;
        foreach (var log in Directory.GetFiles(logs))
            File.Copy(log, Path.Combine(kept, Path.GetFileName(log)));
        output.WriteLine($"logs kept in {kept}");
    }

    /// <summary>What a node of the run logged so far (its log is appended to while it runs).</summary>
    public static string Log(TestbedNetwork network, string node)
    {
        using var stream = new FileStream(Path.Combine(network.Work, "logs", $"{node}.log"), FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        return new StreamReader(stream).ReadToEnd();
    }

    private static void WriteLogs(ITestOutputHelper output, string work)
    {
        var logs = Path.Combine(work, "logs");
        if (!Directory.Exists(logs))
            return;
        foreach (var log in Directory.GetFiles(logs))
        {
            output.WriteLine($"--- {Path.GetFileName(log)} (last 30 lines) ---");
            using var stream = new FileStream(log, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            foreach (var line in new StreamReader(stream).ReadToEnd().Split('\n').TakeLast(30))
                output.WriteLine(line.Length > 400 ? line[..400] : line);
        }
    }
}
