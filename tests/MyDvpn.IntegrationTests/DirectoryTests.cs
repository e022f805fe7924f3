using System.Text.Json;
using Xunit.Abstractions;

namespace MyDvpn.IntegrationTests;

/// <summary>A real BaseNode and SuperNodes as separate processes on loopback, TLS everywhere, SQLite journals.</summary>
public sealed class DirectoryTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Registrations_of_two_regions_survive_a_BaseNode_crash()
    {
        await using var network = new TestNetwork(output);
        var baseNode = network.BaseNode();
        await network.StartAsync(baseNode);
        var superA = network.SuperNode("sn-a", "region-a", baseNode);
        var superB = network.SuperNode("sn-b", "region-b", baseNode);
        await network.StartAsync(superA);
        await network.StartAsync(superB);

        var before = await AwaitRegionsAsync(network, baseNode, regions =>
            SuperNodeStatus(regions, "region-a", "sn-a") == "up"
            && SuperNodeStatus(regions, "region-b", "sn-b") == "up");
        Assert.Equal(["region-a", "region-b"], before.EnumerateArray().Select(r => r.GetProperty("region").GetString()));
        var entryA = SuperNode(before, "region-a", "sn-a");
        Assert.Equal(superA.Listen.ToString(), entryA.GetProperty("registration").GetProperty("grpcEndpoint").GetString());
        Assert.Equal(42000, entryA.GetProperty("registration").GetProperty("relayPortLow").GetInt32());

        baseNode.Process!.Kill();
        await network.StartAsync(baseNode);

        // The restarted BaseNode answers UNAVAILABLE ("retry") while its directory recovers from the journal: ask until it answers.
        var after = await AwaitRegionsAsync(network, baseNode, regions => regions.GetArrayLength() == 2, retryUnavailable: true);
        Assert.Equal(["region-a", "region-b"], after.EnumerateArray().Select(r => r.GetProperty("region").GetString()));
        foreach (var (region, id) in new[] { ("region-a", "sn-a"), ("region-b", "sn-b") })
        {
            // The same registration instant: recovered from the journal, not a new registration.
            Assert.Equal(
                SuperNode(before, region, id).GetProperty("registeredAt").GetString(),
                SuperNode(after, region, id).GetProperty("registeredAt").GetString());
            Assert.Equal("up", SuperNodeStatus(after, region, id));
        }
    }

    [Fact]
    public async Task A_SuperNode_that_stops_leaves_at_once_and_one_that_dies_is_marked_down()
    {
        await using var network = new TestNetwork(output);
        var baseNode = network.BaseNode();
        await network.StartAsync(baseNode);
        var leaving = network.SuperNode("sn-leaving", "region-a", baseNode);
        var dying = network.SuperNode("sn-dying", "region-a", baseNode);
        await network.StartAsync(leaving);
        await network.StartAsync(dying);
        await AwaitRegionsAsync(network, baseNode, regions =>
            SuperNodeStatus(regions, "region-a", "sn-leaving") == "up"
            && SuperNodeStatus(regions, "region-a", "sn-dying") == "up");

        await leaving.Process!.StopAsync(TimeSpan.FromSeconds(30));
        dying.Process!.Kill();

        var regions = await AwaitRegionsAsync(network, baseNode, regions =>
            SuperNodeStatus(regions, "region-a", "sn-dying") == "down");
        Assert.Equal("left", SuperNodeStatus(regions, "region-a", "sn-leaving"));
    }

    [Fact]
    public async Task A_SuperNode_keeps_its_directory_cache_while_no_BaseNode_answers()
    {
        await using var network = new TestNetwork(output);
        var baseNode = network.BaseNode();
        await network.StartAsync(baseNode);
        var super = network.SuperNode("sn-cache", "region-a", baseNode);
        await network.StartAsync(super);
        var cacheFile = Path.Combine(network.Root, "sn-cache", "directory-cache.json");
        await Eventually(() => File.Exists(cacheFile) && File.ReadAllText(cacheFile).Contains("sn-cache"), "the directory cache is written");

        baseNode.Process!.Kill();
        super.Process!.Kill();
        // The log file is appended to across restarts: only what the restarted process wrote counts.
        var before = super.Process!.ReadLog().Length;
        // Not ready without a directory (readiness needs a registration), but up and serving from its cache.
        await network.StartAsync(super, waitUntilReady: false);
        // Just restarted, it is starting: not registered yet is said without a warning.
        await Eventually(() => super.Process!.ReadLog()[before..].Contains("Not registered with the directory yet", StringComparison.Ordinal), "the SuperNode finds no BaseNode");

        var log = super.Process!.ReadLog()[before..];
        Assert.Contains("Directory cache loaded: 1 regions", log, StringComparison.Ordinal);
        Assert.False(super.Process.HasExited);
        var cache = JsonDocument.Parse(File.ReadAllText(cacheFile)).RootElement.GetProperty("regions");
        Assert.Equal("region-a", cache[0].GetProperty("region").GetString());
    }

    /// <param name="retryUnavailable">An UNAVAILABLE answer (the directory recovering after a restart) is asked again, not a failure.</param>
    private static async Task<JsonElement> AwaitRegionsAsync(TestNetwork network, TestNetwork.Node baseNode, Func<JsonElement, bool> condition,
        bool retryUnavailable = false)
    {
        JsonElement regions = default;
        await Eventually(async () =>
        {
            var (exitCode, text) = await network.RunAsync("admin", "--base", baseNode.Listen.ToString(), "--tls", network.AdminTls, "regions", "--json");
            if (exitCode != 0 && retryUnavailable && text.Contains("Unavailable:", StringComparison.Ordinal))
                return false;
            Assert.True(exitCode == 0, $"admin regions failed ({exitCode}): {text}");
            return condition(regions = JsonDocument.Parse(text).RootElement.GetProperty("regions").Clone());
        }, "the directory reaches the expected state");
        return regions;
    }

    private static Task Eventually(Func<bool> condition, string what) => IntegrationTests.Eventually.Async(() => Task.FromResult(condition()), what);

    private static Task Eventually(Func<Task<bool>> condition, string what) => IntegrationTests.Eventually.Async(condition, what);

    private static JsonElement SuperNode(JsonElement regions, string region, string id) =>
        regions.EnumerateArray().Single(r => r.GetProperty("region").GetString() == region)
            .GetProperty("supernodes").EnumerateArray()
            .Single(s => s.GetProperty("registration").GetProperty("supernodeId").GetString() == id);

    private static string? SuperNodeStatus(JsonElement regions, string region, string id)
    {
        var match = regions.EnumerateArray().Where(r => r.GetProperty("region").GetString() == region)
            .SelectMany(r => r.GetProperty("supernodes").EnumerateArray())
            .Where(s => s.GetProperty("registration").GetProperty("supernodeId").GetString() == id)
            .ToList();
        return match.Count == 1 ? match[0].GetProperty("status").GetString() : null;
    }
}
