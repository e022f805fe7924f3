namespace MyDvpn.Security.Tests;

/// <summary>What a node-to-node client takes as its server: the role it calls, and the region when it knows it.</summary>
public sealed class ExpectedServerTests : IDisposable
{
    private readonly TempDirectory temp = new();

    public void Dispose() => temp.Dispose();

    [Fact]
    public void A_client_takes_only_a_server_of_the_role_and_region_it_calls()
    {
        var pki = new Pki(temp);
        using var self = TlsMaterial.Load(pki.IssueSuper("sn-eu-1", "eu-west"));
        using var baseNode = TlsMaterial.Load(pki.IssueBase("base-1"));
        using var euSuper = TlsMaterial.Load(pki.IssueSuper("sn-eu-2", "eu-west"));
        using var usSuper = TlsMaterial.Load(pki.IssueSuper("sn-us-1", "us-east"));

        Assert.True(self.ValidateServerCertificate(baseNode.Certificate, ExpectedServer.BaseNode, out var reason), reason);
        Assert.True(self.ValidateServerCertificate(euSuper.Certificate, ExpectedServer.SuperNodeOf("eu-west"), out reason), reason);
        Assert.True(self.ValidateServerCertificate(usSuper.Certificate, ExpectedServer.AnySuperNode, out reason), reason);

        Assert.False(self.ValidateServerCertificate(euSuper.Certificate, ExpectedServer.BaseNode, out var superAsBase));
        Assert.False(self.ValidateServerCertificate(baseNode.Certificate, ExpectedServer.AnySuperNode, out var baseAsSuper));
        Assert.False(self.ValidateServerCertificate(usSuper.Certificate, ExpectedServer.SuperNodeOf("eu-west"), out var otherRegion));
        Assert.Equal("its certificate names SuperNode sn-eu-2 of region eu-west, not a BaseNode", superAsBase);
        Assert.Equal("its certificate names BaseNode base-1, not a SuperNode", baseAsSuper);
        Assert.Equal("its certificate names SuperNode sn-us-1 of region us-east, not a SuperNode of region eu-west", otherRegion);
    }

    [Fact]
    public void A_certificate_without_a_node_identity_is_refused_whatever_is_expected()
    {
        var pki = new Pki(temp);
        using var self = TlsMaterial.Load(pki.IssueSuper("sn-eu-1", "eu-west"));
        using var admin = TlsMaterial.Load(pki.IssueAdmin("alice"));

        Assert.False(self.ValidateServerCertificate(admin.Certificate, ExpectedServer.BaseNode, out _));
        Assert.False(self.ValidateServerCertificate(null, ExpectedServer.AnySuperNode, out var none));
        Assert.Equal("no certificate presented", none);
    }
}
