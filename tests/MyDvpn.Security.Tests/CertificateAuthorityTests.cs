using System.Net;
using System.Security.Cryptography.X509Certificates;

namespace MyDvpn.Security.Tests;

public sealed class CertificateAuthorityTests : IDisposable
{
    private const string ServerAuth = "1.3.6.1.5.5.7.3.1", ClientAuth = "1.3.6.1.5.5.7.3.2";

    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void Init_writes_a_self_signed_P256_CA_that_may_only_sign_leaf_certificates()
    {
        var dir = _temp.Sub("ca");

        using var ca = CertificateAuthority.Init(dir);

        Assert.Equal("CN=myDvpn operator CA", ca.Subject);
        Assert.Equal(ca.Subject, ca.Issuer);
        Assert.Equal("1.2.840.10045.2.1", ca.PublicKey.Oid.Value); // id-ecPublicKey
        using (var key = ca.GetECDsaPublicKey()!)
        {
            Assert.Equal(256, key.KeySize);
        }

        var constraints = ca.Extensions.OfType<X509BasicConstraintsExtension>().Single();
        Assert.True(constraints.CertificateAuthority);
        Assert.True(constraints.HasPathLengthConstraint);
        Assert.Equal(0, constraints.PathLengthConstraint);
        Assert.Equal(
            X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign,
            ca.Extensions.OfType<X509KeyUsageExtension>().Single().KeyUsages);
        Assert.InRange(ca.NotAfter - DateTime.Now, TimeSpan.FromDays(3650 - 1), TimeSpan.FromDays(3653));

        using var fromDisk = X509Certificate2.CreateFromPemFile(
            Path.Combine(dir, CertificateAuthority.CaCertFile), Path.Combine(dir, CertificateAuthority.CaKeyFile));
        Assert.Equal(ca.Thumbprint, fromDisk.Thumbprint);
        Assert.True(fromDisk.HasPrivateKey);
    }

    [Fact]
    public void Init_refuses_to_overwrite_an_existing_CA()
    {
        var dir = new Pki(_temp).CaDir;
        var certBefore = File.ReadAllText(Path.Combine(dir, CertificateAuthority.CaCertFile));
        var keyBefore = File.ReadAllText(Path.Combine(dir, CertificateAuthority.CaKeyFile));

        var error = Assert.Throws<CertificateException>(() => CertificateAuthority.Init(dir));

        Assert.Contains("already exists", error.Message);
        Assert.Equal(certBefore, File.ReadAllText(Path.Combine(dir, CertificateAuthority.CaCertFile)));
        Assert.Equal(keyBefore, File.ReadAllText(Path.Combine(dir, CertificateAuthority.CaKeyFile)));
    }

    [Fact]
    public void Init_refuses_a_directory_that_already_holds_only_a_CA_key()
    {
        var dir = _temp.Sub("ca");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, CertificateAuthority.CaKeyFile), "precious");

        Assert.Throws<CertificateException>(() => CertificateAuthority.Init(dir));

        Assert.Equal("precious", File.ReadAllText(Path.Combine(dir, CertificateAuthority.CaKeyFile)));
        Assert.False(File.Exists(Path.Combine(dir, CertificateAuthority.CaCertFile)));
    }

    [Fact]
    public void Private_keys_are_written_readable_by_the_owner_only()
    {
        if (OperatingSystem.IsWindows())
        {
            return; // No Unix file modes there.
        }

        var pki = new Pki(_temp);
        var caDir = pki.CaDir;
        var outDir = pki.IssueBase("node1", dnsNames: []);

        const UnixFileMode OwnerReadWrite = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        Assert.Equal(OwnerReadWrite, File.GetUnixFileMode(Path.Combine(caDir, CertificateAuthority.CaKeyFile)));
        Assert.Equal(OwnerReadWrite, File.GetUnixFileMode(Path.Combine(outDir, CertificateAuthority.KeyFile)));
    }

    [Fact]
    public void Reissuing_tightens_the_mode_of_an_existing_key_file()
    {
        if (OperatingSystem.IsWindows())
        {
            return; // No Unix file modes there.
        }

        var caDir = new Pki(_temp).CaDir;
        var outDir = _temp.Sub("out");
        Directory.CreateDirectory(outDir);
        var keyPath = Path.Combine(outDir, CertificateAuthority.KeyFile);
        File.WriteAllText(keyPath, "old");
        File.SetUnixFileMode(keyPath, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.OtherRead);

        CertificateAuthority.IssueNode(caDir, NodeIdentity.Base("node1"), [], [], outDir).Dispose();

        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(keyPath));
        Assert.Contains("BEGIN PRIVATE KEY", File.ReadAllText(keyPath));
    }

    [Fact]
    public void Issued_node_certificate_has_subject_SANs_EKU_and_kind_and_validates_against_its_CA()
    {
        var caDir = new Pki(_temp).CaDir;
        var outDir = _temp.Sub("node1");

        using var cert = CertificateAuthority.IssueNode(
            caDir, NodeIdentity.Base("node1"),
            [IPAddress.Parse("10.0.0.1"), IPAddress.IPv6Loopback], ["node1.example.org"], outDir);

        Assert.Equal("CN=node1, OU=mydvpn-node", cert.Subject);
        Assert.Equal(CertificateKind.Node, CertificateAuthority.KindOf(cert));
        Assert.True(cert.HasPrivateKey);

        var san = cert.Extensions.OfType<X509SubjectAlternativeNameExtension>().Single();
        Assert.Equal(
            new[] { IPAddress.Parse("10.0.0.1"), IPAddress.IPv6Loopback },
            san.EnumerateIPAddresses().ToArray());
        Assert.Equal(new[] { "node1.example.org", "node1" }, san.EnumerateDnsNames().ToArray());
        Assert.True(NodeIdentity.TryRead(cert, out var identity, out var problem), problem);
        Assert.Equal(NodeIdentity.Base("node1"), identity);

        var usages = cert.Extensions.OfType<X509EnhancedKeyUsageExtension>().Single().EnhancedKeyUsages
            .Cast<System.Security.Cryptography.Oid>().Select(o => o.Value).Order().ToArray();
        Assert.Equal(new[] { ServerAuth, ClientAuth }.Order().ToArray(), usages);
        Assert.False(cert.Extensions.OfType<X509BasicConstraintsExtension>().Single().CertificateAuthority);
        Assert.Equal(16, cert.SerialNumberBytes.Length);
        Assert.InRange(cert.NotAfter - DateTime.Now, TimeSpan.FromDays(90 - 1), TimeSpan.FromDays(91));

        using var material = TlsMaterial.Load(outDir);
        Assert.True(material.ValidatePeer(cert, CertificateKind.Node, out var reason), reason);
        Assert.Equal(
            File.ReadAllText(Path.Combine(caDir, CertificateAuthority.CaCertFile)),
            File.ReadAllText(Path.Combine(outDir, CertificateAuthority.CaCertFile)));
    }

    [Fact]
    public void Issue_honours_a_custom_validity()
    {
        var caDir = new Pki(_temp).CaDir;

        using var cert = CertificateAuthority.IssueNode(
            caDir, NodeIdentity.Base("node1"), [], [], _temp.Sub("out"), TimeSpan.FromDays(7));

        Assert.InRange(cert.NotAfter - DateTime.Now, TimeSpan.FromDays(7) - TimeSpan.FromMinutes(1), TimeSpan.FromDays(7));
    }

    [Fact]
    public void Issue_refuses_a_validity_that_outlives_the_CA()
    {
        var caDir = new Pki(_temp).CaDir;

        var error = Assert.Throws<CertificateException>(() => CertificateAuthority.IssueNode(
            caDir, NodeIdentity.Base("node1"), [], [], _temp.Sub("out"), TimeSpan.FromDays(11 * 365)));

        Assert.Contains("expires", error.Message);
    }

    [Fact]
    public void Serial_numbers_differ_between_certificates()
    {
        var caDir = new Pki(_temp).CaDir;

        using var first = CertificateAuthority.IssueNode(caDir, NodeIdentity.Base("node1"), [], [], _temp.Sub("a"));
        using var second = CertificateAuthority.IssueNode(caDir, NodeIdentity.Base("node1"), [], [], _temp.Sub("b"));

        Assert.NotEqual(first.SerialNumber, second.SerialNumber);
    }

    [Fact]
    public void Admin_certificate_is_for_client_authentication_only()
    {
        var caDir = new Pki(_temp).CaDir;

        using var cert = CertificateAuthority.IssueAdmin(caDir, "alice", [], [], _temp.Sub("alice"));

        Assert.Equal("CN=alice, OU=mydvpn-admin", cert.Subject);
        Assert.Equal(CertificateKind.Admin, CertificateAuthority.KindOf(cert));
        Assert.False(NodeIdentity.TryRead(cert, out _, out _));
        var usages = cert.Extensions.OfType<X509EnhancedKeyUsageExtension>().Single().EnhancedKeyUsages
            .Cast<System.Security.Cryptography.Oid>().Select(o => o.Value).ToArray();
        Assert.Equal(new[] { ClientAuth }, usages);
    }

    [Fact]
    public void KindOf_is_null_for_a_certificate_without_a_myDvpn_OU()
    {
        using var ca = CertificateAuthority.Init(_temp.Sub("ca"));

        Assert.Null(CertificateAuthority.KindOf(ca));
    }

    [Fact]
    public void Issue_without_a_CA_names_the_missing_file_and_says_to_run_ca_init()
    {
        var caDir = _temp.Sub("nothing-here");

        var error = Assert.Throws<CertificateException>(() =>
            CertificateAuthority.IssueNode(caDir, NodeIdentity.Base("node1"), [], [], _temp.Sub("out")));

        Assert.Contains(Path.Combine(caDir, CertificateAuthority.CaCertFile), error.Message);
        Assert.Contains($"mydvpn ca init --dir {caDir}", error.Message);
    }

    [Fact]
    public void Issue_from_a_directory_without_the_CA_key_names_the_key()
    {
        var caDir = new Pki(_temp).CaDir;
        File.Delete(Path.Combine(caDir, CertificateAuthority.CaKeyFile));

        var error = Assert.Throws<CertificateException>(() =>
            CertificateAuthority.IssueNode(caDir, NodeIdentity.Base("node1"), [], [], _temp.Sub("out")));

        Assert.Contains(Path.Combine(caDir, CertificateAuthority.CaKeyFile), error.Message);
        Assert.Contains("ca init", error.Message);
    }

    [Fact]
    public void Issue_refuses_a_CA_whose_key_belongs_to_another_CA()
    {
        var caDir = new Pki(_temp, "a").CaDir;
        File.Copy(
            Path.Combine(new Pki(_temp, "b").CaDir, CertificateAuthority.CaKeyFile),
            Path.Combine(caDir, CertificateAuthority.CaKeyFile),
            overwrite: true);

        var error = Assert.Throws<CertificateException>(() =>
            CertificateAuthority.IssueNode(caDir, NodeIdentity.Base("node1"), [], [], _temp.Sub("out")));

        Assert.Contains("does not match", error.Message);
    }

    [Theory]
    [InlineData("")]
    [InlineData("has space")]
    [InlineData("a/b")]
    [InlineData("comma,injects")]
    [InlineData("CN=evil")]
    [InlineData("ünicode")]
    [InlineData("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")] // 65
    [InlineData("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")] // 64 in one DNS label, max 63
    [InlineData("a..b")]
    [InlineData(".leading")]
    [InlineData("trailing.")]
    public void Bad_names_are_refused(string name)
    {
        var caDir = new Pki(_temp).CaDir;
        var outDir = _temp.Sub("out");

        var error = Assert.Throws<CertificateException>(() =>
            CertificateAuthority.IssueAdmin(caDir, name, [], [], outDir));

        Assert.Contains("Invalid certificate name", error.Message);
        Assert.False(Directory.Exists(outDir));
    }

    [Theory]
    [InlineData("n")]
    [InlineData("eu-west_1.node-07")]
    [InlineData("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")] // 64
    public void Names_of_letters_digits_dots_underscores_and_dashes_are_accepted(string name)
    {
        var caDir = new Pki(_temp).CaDir;

        using var cert = CertificateAuthority.IssueAdmin(caDir, name, [], [], _temp.Sub("out"));

        Assert.Equal(name, cert.GetNameInfo(X509NameType.SimpleName, forIssuer: false));
    }
}
