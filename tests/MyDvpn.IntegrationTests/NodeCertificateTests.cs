using Grpc.Core;
using MyDvpn.Common;
using MyDvpn.Hosting;
using MyDvpn.Protocol.Control;
using MyDvpn.Protocol.Directory;
using MyDvpn.Protocol.SuperNode;
using MyDvpn.Security;
using Xunit.Abstractions;

namespace MyDvpn.IntegrationTests;

/// <summary>
/// Real BaseNode and SuperNode processes on loopback: a node certificate works only as the node it names
/// (docs/trust-model.md), over gRPC and in the Akka cluster.
/// </summary>
public sealed class NodeCertificateTests(ITestOutputHelper output)
{
    [Fact]
    public async Task A_leaked_SuperNode_certificate_acts_only_as_its_SuperNode_and_a_BaseNode_one_reaches_no_exit_pool()
    {
        await using var network = new TestNetwork(output);
        var baseNode = network.BaseNode();
        await network.StartAsync(baseNode);
        var superNode = network.SuperNode("sn-a", "region-a", baseNode);
        await network.StartAsync(superNode);
        using var superTls = TlsMaterial.Load(network.IssueNodeCertificate(NodeIdentity.Super("sn-a", "region-a")));
        using var baseTls = TlsMaterial.Load(network.IssueNodeCertificate(NodeIdentity.Base("base")));
        using var toBase = GrpcChannels.MutualTls(baseNode.Listen, superTls, ExpectedServer.BaseNode);
        using var superToSuper = GrpcChannels.MutualTls(superNode.Listen, superTls, ExpectedServer.SuperNodeOf("region-a"));
        using var baseToSuper = GrpcChannels.MutualTls(superNode.Listen, baseTls, ExpectedServer.SuperNodeOf("region-a"));
        var directory = new SuperNodeDirectory.SuperNodeDirectoryClient(toBase);

        // Another region, another id: a fake SuperNode cannot be registered with sn-a's certificate.
        var otherRegion = await NodeCalls.RefusedAsync(() => directory.ReportAsync(NodeCalls.Report("sn-a", "region-b", superNode.Listen)).ResponseAsync, RefusalReason.CertificateMismatch);
        var otherId = await NodeCalls.RefusedAsync(() => directory.ReportAsync(NodeCalls.Report("sn-fake", "region-a", superNode.Listen)).ResponseAsync, RefusalReason.CertificateMismatch);
        // Only BaseNodes tell SuperNodes what to do.
        var peers = await NodeCalls.RefusedAsync(() =>
            new SuperNodePeers.SuperNodePeersClient(superToSuper).ListSessionsAsync(new ListLocalSessionsRequest(), deadline: NodeCalls.Deadline()).ResponseAsync, RefusalReason.CertificateMismatch);
        // Only SuperNodes allocate exits.
        var allocation = await NodeCalls.RefusedAsync(() => new ExitAllocation.ExitAllocationClient(baseToSuper).AllocateExitAsync(
            new AllocateExitRequest { Region = "region-a", AssignmentId = "as-1" }, deadline: NodeCalls.Deadline()).ResponseAsync, RefusalReason.CertificateMismatch);

        Assert.Contains("but the request claims SuperNode sn-a of region region-b", otherRegion.Status.Detail, StringComparison.Ordinal);
        Assert.Contains("but the request claims SuperNode sn-fake of region region-a", otherId.Status.Detail, StringComparison.Ordinal);
        Assert.Contains("needs an operator-issued BaseNode certificate", peers.Status.Detail, StringComparison.Ordinal);
        Assert.Contains("needs an operator-issued SuperNode certificate", allocation.Status.Detail, StringComparison.Ordinal);
        var regions = await directory.ListRegionsAsync(new ListRegionsRequest(), deadline: NodeCalls.Deadline());
        Assert.Equal(["region-a"], regions.Regions.Select(r => r.Region));
        Assert.Equal(["sn-a"], regions.Regions[0].Supernodes.Select(s => s.Registration.SupernodeId));
        // What the certificate's own node does still works: the BaseNode lists sn-a's sessions and exits.
        await new SuperNodePeers.SuperNodePeersClient(baseToSuper).ListSessionsAsync(new ListLocalSessionsRequest(), deadline: NodeCalls.Deadline());
        var baseLog = baseNode.Process!.ReadLog();
        Assert.Contains("its certificate names SuperNode sn-a of region region-a (mydvpn://super/region-a/sn-a) but it claims SuperNode sn-a of region region-b",
            baseLog, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_regions_cluster_refuses_a_SuperNode_of_another_region()
    {
        await using var network = new TestNetwork(output);
        var baseNode = network.BaseNode();
        await network.StartAsync(baseNode);
        var member = network.SuperNode("sn-a", "region-a", baseNode);
        await network.StartAsync(member);
        var seed = member.Arguments[Array.IndexOf(member.Arguments, "--cluster") + 1];
        var intruder = network.SuperNode("sn-b", "region-b", baseNode);

        var (exitCode, log) = await network.RunAsync(
            [.. intruder.Arguments, "--seed", seed, "--postgres", "Host=127.0.0.1;Port=1;Database=unused"],
            new Dictionary<string, string> { ["MYDVPN__SUPER__JOINTIMEOUT"] = "00:00:06" });

        output.WriteLine(log);
        Assert.Equal(2, exitCode);
        var memberLog = member.Process!.ReadLog();
        Assert.Contains("its certificate names SuperNode sn-b of region region-b (mydvpn://super/region-b/sn-b); " +
            "only SuperNodes of region region-a may join the cluster of SuperNode sn-a of region region-a", memberLog, StringComparison.Ordinal);
    }
}
