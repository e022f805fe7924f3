using MyDvpn.Cli.Demo;
using Xunit.Abstractions;

namespace MyDvpn.IntegrationTests;

public sealed class ClusterJoinTests(ITestOutputHelper output)
{
    [Fact]
    public async Task A_SuperNode_whose_seed_never_answers_exits_2_naming_the_seed()
    {
        await using var network = new TestNetwork(output);
        var baseNode = network.BaseNode();
        var seed = $"127.0.0.1:{NodeProcess.FreeTcpPort()}";
        var super = network.SuperNode("sn-lonely", "region-a", baseNode);
        var arguments = super.Arguments.Concat(["--seed", seed, "--postgres", "Host=127.0.0.1;Port=1;Database=unused"]).ToArray();

        var (exitCode, log) = await network.RunAsync(arguments, new Dictionary<string, string>
        {
            ["MYDVPN__SUPER__JOINTIMEOUT"] = "00:00:04",
        });

        Assert.Equal(2, exitCode);
        Assert.Contains($"--seed: could not join the cluster through {seed}", log, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_node_with_a_certificate_of_another_CA_cannot_join_the_cluster()
    {
        await using var network = new TestNetwork(output);
        var baseNode = network.BaseNode();
        await network.StartAsync(baseNode);
        var seed = baseNode.Arguments[Array.IndexOf(baseNode.Arguments, "--cluster") + 1];
        var intruderTls = network.IssueForeignNodeCertificate("intruder");
        var intruder = network.BaseNode("intruder");
        var arguments = intruder.Arguments.ToArray();
        arguments[Array.IndexOf(arguments, "--tls") + 1] = intruderTls;

        var (exitCode, log) = await network.RunAsync(
            [.. arguments, "--seed", seed, "--postgres", "Host=127.0.0.1;Port=1;Database=unused"],
            new Dictionary<string, string> { ["MYDVPN__BASE__JOINTIMEOUT"] = "00:00:06" });

        Assert.Equal(2, exitCode);
        Assert.Contains("--tls: TLS handshake with the cluster failed", log, StringComparison.Ordinal);
        Assert.Contains("Refused cluster connection", baseNode.Process!.ReadLog(), StringComparison.Ordinal);
        var cluster = await network.RunAsync("admin", "--base", baseNode.Listen.ToString(), "--tls", network.AdminTls, "cluster", "--json");
        Assert.Equal(0, cluster.ExitCode);
        Assert.DoesNotContain("intruder", cluster.Output, StringComparison.Ordinal);
        Assert.Single(System.Text.Json.JsonDocument.Parse(cluster.Output).RootElement.GetProperty("members").EnumerateArray());
    }
}
