using MyDvpn.Security;

namespace MyDvpn.Hosting.Tests;

/// <summary>What the cluster's remoting TLS callback admits, with real certificates of a temporary operator CA.</summary>
public sealed class ClusterAdmissionTests : IDisposable
{
    private readonly TempDirectory temp = new();
    private readonly Pki pki;
    private readonly List<TlsMaterial> loaded = [];

    public ClusterAdmissionTests() => pki = new Pki(temp);

    public void Dispose()
    {
        loaded.ForEach(tls => tls.Dispose());
        temp.Dispose();
    }

    [Fact]
    public void A_region_cluster_admits_that_regions_SuperNodes()
    {
        var self = Load(pki.IssueSuper("sn-eu-1", "eu-west"));

        Assert.True(ClusterAdmission.Admits(self, Load(pki.IssueSuper("sn-eu-2", "eu-west")).Certificate, out var reason), reason);
    }

    [Fact]
    public void A_region_cluster_refuses_a_SuperNode_of_another_region_naming_it()
    {
        var self = Load(pki.IssueSuper("sn-eu-1", "eu-west"));

        Assert.False(ClusterAdmission.Admits(self, Load(pki.IssueSuper("sn-us-1", "us-east")).Certificate, out var reason));

        Assert.Equal("its certificate names SuperNode sn-us-1 of region us-east (mydvpn://super/us-east/sn-us-1); " +
            "only SuperNodes of region eu-west may join the cluster of SuperNode sn-eu-1 of region eu-west", reason);
    }

    [Fact]
    public void A_region_cluster_refuses_a_SuperNode_of_its_region_whose_certificate_is_revoked()
    {
        var self = Load(pki.IssueSuper("sn-eu-1", "eu-west"));
        var revoked = Load(pki.IssueSuper("sn-eu-2", "eu-west"));
        var list = CaRevocations.RevokeSerial(pki.CaDir, CertificateRevocationList.SerialOf(revoked.Certificate), null, DateTimeOffset.UtcNow).List;
        Assert.True(self.Revocations.TryApply(list, out var problem), problem);

        Assert.False(ClusterAdmission.Admits(self, revoked.Certificate, out var reason));
        Assert.True(ClusterAdmission.Admits(self, Load(pki.IssueSuper("sn-eu-3", "eu-west")).Certificate, out var other), other);

        Assert.Contains("was revoked at", reason, StringComparison.Ordinal);
    }

    [Fact]
    public void A_region_cluster_refuses_a_BaseNode()
    {
        var self = Load(pki.IssueSuper("sn-eu-1", "eu-west"));

        Assert.False(ClusterAdmission.Admits(self, Load(pki.IssueBase("base-1")).Certificate, out var reason));

        Assert.Contains("names BaseNode base-1", reason);
    }

    [Fact]
    public void The_BaseNode_cluster_admits_BaseNodes_and_refuses_SuperNodes()
    {
        var self = Load(pki.IssueBase("base-1"));

        Assert.True(ClusterAdmission.Admits(self, Load(pki.IssueBase("base-2")).Certificate, out var reason), reason);
        Assert.False(ClusterAdmission.Admits(self, Load(pki.IssueSuper("sn-eu-1", "eu-west")).Certificate, out reason));
        Assert.Contains("only BaseNodes may join the cluster of BaseNode base-1", reason);
    }

    [Fact]
    public void Admin_legacy_and_missing_certificates_are_refused()
    {
        var self = Load(pki.IssueBase("base-1"));
        using var legacy = pki.NodeWithUris();

        Assert.False(ClusterAdmission.Admits(self, Load(pki.IssueAdmin("alice")).Certificate, out var reason));
        Assert.Contains("Admin certificate where a Node certificate is required", reason);
        Assert.False(ClusterAdmission.Admits(self, legacy, out reason));
        Assert.Contains("names no node identity", reason);
        Assert.False(ClusterAdmission.Admits(self, null, out reason));
        Assert.Equal("no certificate presented", reason);
    }

    [Fact]
    public void A_certificate_of_another_CA_is_refused_whatever_it_names()
    {
        var self = Load(pki.IssueBase("base-1"));
        var foreign = Load(new Pki(temp, "foreign").IssueBase("base-2"));

        Assert.False(ClusterAdmission.Admits(self, foreign.Certificate, out var reason));
        Assert.Contains("was not issued by this network's CA", reason);
    }

    private TlsMaterial Load(string dir)
    {
        var tls = TlsMaterial.Load(dir);
        loaded.Add(tls);
        return tls;
    }
}
