using System.Security.Cryptography.X509Certificates;

namespace MyDvpn.Security.Tests;

public sealed class TlsMaterialTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void Load_reads_what_Issue_wrote()
    {
        var caDir = new Pki(_temp).CaDir;
        var outDir = _temp.Sub("node1");
        using var issued = CertificateAuthority.IssueNode(caDir, NodeIdentity.Base("node1"), [], [], outDir);

        using var material = TlsMaterial.Load(outDir);

        Assert.Equal("node1", material.Name);
        Assert.Equal(CertificateKind.Node, material.Kind);
        Assert.Equal(issued.Thumbprint, material.Certificate.Thumbprint);
        Assert.Equal(NodeIdentity.Base("node1"), material.Identity);
        Assert.Equal(System.Security.Cryptography.SHA256.HashData(issued.RawData), material.CertificateSha256);
        Assert.True(material.Certificate.HasPrivateKey);
        Assert.False(material.CaCertificate.HasPrivateKey);
        using var ca = X509Certificate2.CreateFromPem(File.ReadAllText(Path.Combine(caDir, CertificateAuthority.CaCertFile)));
        Assert.Equal(ca.Thumbprint, material.CaCertificate.Thumbprint);
    }

    [Theory]
    [InlineData(CertificateAuthority.CertFile)]
    [InlineData(CertificateAuthority.KeyFile)]
    [InlineData(CertificateAuthority.CaCertFile)]
    public void Load_names_a_missing_file_and_how_to_issue_it(string file)
    {
        var outDir = new Pki(_temp).IssueBase("node1", dnsNames: []);
        File.Delete(Path.Combine(outDir, file));

        var error = Assert.Throws<CertificateException>(() => TlsMaterial.Load(outDir));

        Assert.Contains(Path.Combine(outDir, file), error.Message);
        Assert.Contains($"mydvpn ca issue ... --out {outDir}", error.Message);
    }

    [Fact]
    public void Load_reports_a_corrupt_certificate_file()
    {
        var outDir = new Pki(_temp).IssueBase("node1", dnsNames: []);
        File.WriteAllText(Path.Combine(outDir, CertificateAuthority.CertFile), "not a certificate");

        var error = Assert.Throws<CertificateException>(() => TlsMaterial.Load(outDir));

        Assert.Contains(Path.Combine(outDir, CertificateAuthority.CertFile), error.Message);
    }

    [Fact]
    public void Load_refuses_a_key_that_belongs_to_another_certificate()
    {
        var pki = new Pki(_temp);
        var first = pki.IssueBase("node1", dnsNames: []);
        var second = pki.IssueBase("node2", dnsNames: []);
        File.Copy(Path.Combine(second, CertificateAuthority.KeyFile), Path.Combine(first, CertificateAuthority.KeyFile), overwrite: true);

        Assert.Throws<CertificateException>(() => TlsMaterial.Load(first));
    }

    [Fact]
    public void Load_refuses_a_certificate_from_another_CA_than_its_ca_crt()
    {
        var outDir = new Pki(_temp, "ca-a").IssueBase("node1", dnsNames: []);
        File.Copy(
            Path.Combine(new Pki(_temp, "ca-b").CaDir, CertificateAuthority.CaCertFile),
            Path.Combine(outDir, CertificateAuthority.CaCertFile),
            overwrite: true);

        var error = Assert.Throws<CertificateException>(() => TlsMaterial.Load(outDir));

        Assert.Contains("not issued by this network's CA", error.Message);
    }

    [Fact]
    public void Admin_certificate_passes_as_any_peer_but_fails_a_Node_requirement()
    {
        var pki = new Pki(_temp);
        using var node = TlsMaterial.Load(pki.IssueBase("node1", dnsNames: []));
        using var admin = TlsMaterial.Load(pki.IssueAdmin("alice", dnsNames: []));

        Assert.Equal(CertificateKind.Admin, admin.Kind);
        Assert.True(node.ValidatePeer(admin.Certificate, requiredKind: null, out _));
        Assert.True(node.ValidatePeer(admin.Certificate, CertificateKind.Admin, out _));
        Assert.False(node.ValidatePeer(admin.Certificate, CertificateKind.Node, out var reason));
        Assert.Contains("Admin certificate where a Node certificate is required", reason);
    }

    [Fact]
    public void Certificate_from_a_different_CA_is_refused_with_a_reason()
    {
        using var ours = TlsMaterial.Load(new Pki(_temp, "ours").IssueBase("node1", dnsNames: []));
        using var theirs = TlsMaterial.Load(new Pki(_temp, "theirs").IssueBase("node1", dnsNames: []));

        Assert.False(ours.ValidatePeer(theirs.Certificate, CertificateKind.Node, out var reason));
        Assert.Contains("not issued by this network's CA", reason);
    }

    [Fact]
    public void Expired_certificate_is_refused_with_a_reason()
    {
        var pki = new Pki(_temp);
        using var node = TlsMaterial.Load(pki.IssueBase("node1", dnsNames: []));
        using var expired = pki.Expired();

        Assert.False(node.ValidatePeer(expired, CertificateKind.Node, out var reason));
        Assert.Contains("outside its validity period", reason);
    }

    [Fact]
    public void The_CA_certificate_itself_is_not_a_valid_peer()
    {
        using var node = TlsMaterial.Load(new Pki(_temp).IssueBase("node1", dnsNames: []));

        Assert.False(node.ValidatePeer(node.CaCertificate, requiredKind: null, out var reason));
        Assert.Contains("no myDvpn kind", reason);
    }

    [Fact]
    public void Load_refuses_a_node_certificate_without_a_node_identity_and_says_how_to_reissue()
    {
        var pki = new Pki(_temp);
        var outDir = _temp.Sub("legacy");
        Directory.CreateDirectory(outDir);
        using (var legacy = pki.NodeWithUris())
        {
            File.WriteAllText(Path.Combine(outDir, CertificateAuthority.CertFile), legacy.ExportCertificatePem());
            File.WriteAllText(Path.Combine(outDir, CertificateAuthority.KeyFile), legacy.GetECDsaPrivateKey()!.ExportPkcs8PrivateKeyPem());
        }
        File.Copy(pki.CaFile, Path.Combine(outDir, CertificateAuthority.CaCertFile));

        var error = Assert.Throws<CertificateException>(() => TlsMaterial.Load(outDir));

        Assert.Contains("names no node identity", error.Message);
        Assert.Contains("mydvpn ca issue --role", error.Message);
    }

    [Fact]
    public void An_admin_certificate_has_no_node_identity()
    {
        using var admin = TlsMaterial.Load(new Pki(_temp).IssueAdmin("alice", dnsNames: []));

        Assert.Null(admin.Identity);
    }
}
