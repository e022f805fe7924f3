using Grpc.Core;
using MyDvpn.Common;
using MyDvpn.Hosting;
using MyDvpn.Protocol.Admin;
using MyDvpn.Protocol.Control;
using MyDvpn.Protocol.Directory;
using MyDvpn.Protocol.SuperNode;
using MyDvpn.Security;
using Xunit.Abstractions;

namespace MyDvpn.IntegrationTests;

/// <summary>
/// Real BaseNode and SuperNode processes on loopback: a node certificate the operator revokes (<c>mydvpn ca revoke</c>,
/// <c>mydvpn admin crl publish</c>) is refused by the directory at once and by the other SuperNodes once they fetched the
/// list, while the other nodes keep working.
/// </summary>
public sealed class CertificateRevocationTests(ITestOutputHelper output)
{
    [Fact]
    public async Task A_revoked_SuperNode_certificate_is_refused_by_the_directory_and_by_SuperNodes_and_the_others_keep_working()
    {
        await using var network = new TestNetwork(output);
        var baseNode = network.BaseNode();
        await network.StartAsync(baseNode);
        var revokedNode = network.SuperNode("sn-a", "region-a", baseNode);
        var goodNode = network.SuperNode("sn-b", "region-b", baseNode);
        await network.StartAsync(revokedNode);
        await network.StartAsync(goodNode);
        var revokedCertificate = network.IssueNodeCertificate(NodeIdentity.Super("sn-a", "region-a"));
        using var revokedTls = TlsMaterial.Load(revokedCertificate);
        using var goodTls = TlsMaterial.Load(network.IssueNodeCertificate(NodeIdentity.Super("sn-b", "region-b")));
        using var revokedToBase = GrpcChannels.MutualTls(baseNode.Listen, revokedTls, ExpectedServer.BaseNode);
        using var goodToBase = GrpcChannels.MutualTls(baseNode.Listen, goodTls, ExpectedServer.BaseNode);
        using var revokedToGood = GrpcChannels.MutualTls(goodNode.Listen, revokedTls, ExpectedServer.SuperNodeOf("region-b"));
        var revokedDirectory = new SuperNodeDirectory.SuperNodeDirectoryClient(revokedToBase);
        // Before: the certificate works, and its connection stays open across the revocation.
        await revokedDirectory.ReportAsync(NodeCalls.Report("sn-a", "region-a", revokedNode.Listen), deadline: NodeCalls.Deadline());

        var (revokeExit, revokeText) = await network.RunAsync("ca", "revoke", "--dir", network.CaDir,
            "--cert", Path.Combine(revokedCertificate, CertificateAuthority.CertFile), "--reason", "key-compromise");
        Assert.True(revokeExit == 0, revokeText);
        var crlFile = Path.Combine(network.CaDir, CaRevocations.CrlFile);
        var (publishExit, publishText) = await network.RunAsync("admin", "--base", baseNode.Listen.ToString(), "--tls", network.AdminTls,
            "crl", "publish", crlFile);
        Assert.True(publishExit == 0, publishText);
        Assert.Contains("Published CRL number 1 (1 revoked)", publishText, StringComparison.Ordinal);

        // The directory refuses the certificate at once, on the connection it opened before.
        var report = await NodeCalls.RefusedAsync(() => revokedDirectory.ReportAsync(NodeCalls.Report("sn-a", "region-a", revokedNode.Listen), deadline: NodeCalls.Deadline()).ResponseAsync, RefusalReason.CertificateRevoked);
        Assert.Contains("(serial " + CertificateRevocationList.SerialOf(revokedTls.Certificate) + ") was revoked", report.Status.Detail, StringComparison.Ordinal);
        // The revoked SuperNode's own next report is refused too.
        await Eventually.Async(() => Task.FromResult(baseNode.Process!.ReadLog().Contains(
            "refused /mydvpn.directory.v1.SuperNodeDirectory/Report from", StringComparison.Ordinal)), "the BaseNode refuses sn-a's own report");
        // The other SuperNode fetches the list with its next report and refuses the certificate too.
        await Eventually.Async(() => Task.FromResult(goodNode.Process!.ReadLog().Contains(
            "Applied certificate revocation list number 1 from the directory", StringComparison.Ordinal)), "sn-b applies the list");
        await NodeCalls.RefusedAsync(() => new ExitAllocation.ExitAllocationClient(revokedToGood).ListExitsAsync(
            new ListExitsRequest { Region = "region-b" }, deadline: NodeCalls.Deadline()).ResponseAsync, RefusalReason.CertificateRevoked);

        // The legitimate SuperNode keeps working with the directory.
        var regions = await new SuperNodeDirectory.SuperNodeDirectoryClient(goodToBase).ListRegionsAsync(new ListRegionsRequest(), deadline: NodeCalls.Deadline());
        Assert.Contains("region-b", regions.Regions.Select(r => r.Region));
        await new SuperNodeDirectory.SuperNodeDirectoryClient(goodToBase).ReportAsync(NodeCalls.Report("sn-b", "region-b", goodNode.Listen), deadline: NodeCalls.Deadline());
        var baseLog = baseNode.Process!.ReadLog();
        Assert.Contains("published certificate revocation list number 1", baseLog, StringComparison.Ordinal);

        // Peers get the list in the challenge, so that they refuse the revoked SuperNode too; one that holds it already does not.
        using var ca = System.Security.Cryptography.X509Certificates.X509CertificateLoader.LoadCertificateFromFile(network.CaFile);
        await using (var behind = await RawPeer.OpenAsync(goodNode.Listen, network.CaFile))
        {
            var carried = CertificateRevocationList.Parse(behind.Challenge.Crl.ToByteArray(), ca);
            Assert.Equal(1ul, carried.Number);
            Assert.True(carried.IsRevoked(revokedTls.Certificate, out _));
        }
        await using (var upToDate = await RawPeer.OpenAsync(goodNode.Listen, network.CaFile, headers: MyDvpn.Protocol.CrlNumberHeader.For(1)))
            Assert.True(upToDate.Challenge.Crl.IsEmpty);
    }

    [Fact]
    public async Task The_directory_refuses_an_old_list_and_data_that_is_not_a_list_of_its_CA()
    {
        await using var network = new TestNetwork(output);
        var baseNode = network.BaseNode();
        await network.StartAsync(baseNode);
        using var adminTls = TlsMaterial.Load(network.AdminTls);
        using var channel = GrpcChannels.MutualTls(baseNode.Listen, adminTls, ExpectedServer.BaseNode);
        var admin = new Admin.AdminClient(channel);
        var (first, _) = CaRevocations.Reissue(network.CaDir, DateTimeOffset.UtcNow);
        var (second, _) = CaRevocations.Reissue(network.CaDir, DateTimeOffset.UtcNow);
        var foreignCa = Path.Combine(network.Root, "foreign-ca");
        CertificateAuthority.Init(foreignCa).Dispose();
        var (foreign, _) = CaRevocations.Reissue(foreignCa, DateTimeOffset.UtcNow);

        var published = await admin.PublishCrlAsync(Request(second.Der), deadline: NodeCalls.Deadline());
        var older = await Assert.ThrowsAsync<RpcException>(() => admin.PublishCrlAsync(Request(first.Der), deadline: NodeCalls.Deadline()).ResponseAsync);
        var again = await Assert.ThrowsAsync<RpcException>(() => admin.PublishCrlAsync(Request(second.Der), deadline: NodeCalls.Deadline()).ResponseAsync);
        var stranger = await Assert.ThrowsAsync<RpcException>(() => admin.PublishCrlAsync(Request(foreign.Der), deadline: NodeCalls.Deadline()).ResponseAsync);
        var garbage = await Assert.ThrowsAsync<RpcException>(() => admin.PublishCrlAsync(Request("not a CRL"u8.ToArray()), deadline: NodeCalls.Deadline()).ResponseAsync);

        Assert.Equal(2UL, published.Number);
        Assert.Equal((StatusCode.FailedPrecondition, StatusCode.FailedPrecondition), (older.StatusCode, again.StatusCode));
        Assert.Contains("CRL number 1 is older than CRL number 2", older.Status.Detail, StringComparison.Ordinal);
        Assert.Equal((StatusCode.InvalidArgument, StatusCode.InvalidArgument), (stranger.StatusCode, garbage.StatusCode));
        Assert.Contains("signature is not this network's CA's", stranger.Status.Detail, StringComparison.Ordinal);
        Assert.Equal(2UL, (await admin.GetCrlAsync(new GetCrlRequest(), deadline: NodeCalls.Deadline())).Number);
        // The CLI checks the file against the admin's CA before uploading: a wrong file is a usage error.
        var notAList = Path.Combine(network.Root, "not-a-list.crl");
        await File.WriteAllTextAsync(notAList, "hello");
        var (exitCode, text) = await network.RunAsync("admin", "--base", baseNode.Listen.ToString(), "--tls", network.AdminTls,
            "crl", "publish", notAList);
        Assert.Equal(2, exitCode);
        Assert.Contains("is not usable: not an X.509 CRL", text, StringComparison.Ordinal);
        var (unknownExit, unknownText) = await network.RunAsync("ca", "revoke", "--dir", network.CaDir, "--serial", "ABCDEF");
        Assert.Equal(2, unknownExit);
        Assert.Contains("no record of issuing a certificate with serial ABCDEF", unknownText, StringComparison.Ordinal);

        static PublishCrlRequest Request(byte[] der) => new() { Crl = Google.Protobuf.ByteString.CopyFrom(der) };
    }
}
