using System.Security.Cryptography.X509Certificates;

namespace MyDvpn.Security.Tests;

/// <summary>The operator CA's revocation list: written by `ca revoke` / `ca crl`, verified and enforced by nodes.</summary>
public sealed class CertificateRevocationTests : IDisposable
{
    private static readonly DateTimeOffset Now = new(2030, 1, 2, 3, 4, 5, TimeSpan.Zero);

    private readonly TempDirectory temp = new();
    private readonly Pki pki;
    private readonly List<IDisposable> loaded = [];

    public CertificateRevocationTests() => pki = new Pki(temp);

    public void Dispose()
    {
        loaded.ForEach(d => d.Dispose());
        temp.Dispose();
    }

    [Fact]
    public void Revoking_a_certificate_writes_a_CRL_the_CA_signed_that_lists_its_serial_with_the_reason()
    {
        var super = Load(pki.IssueSuper("sn-1", "eu-west"));

        var outcome = CaRevocations.RevokeCertificate(pki.CaDir, Path.Combine(super.Dir, CertificateAuthority.CertFile), X509RevocationReason.KeyCompromise, Now);

        Assert.False(outcome.AlreadyRevoked);
        Assert.Equal("node certificate mydvpn://super/eu-west/sn-1 (CN=sn-1, OU=mydvpn-node)", outcome.Certificate.Description);
        using var ca = pki.LoadCa();
        var list = CertificateRevocationList.Load(Path.Combine(pki.CaDir, CaRevocations.CrlFile), ca);
        Assert.Equal(1UL, list.Number);
        Assert.True(list.IsRevoked(super.Tls.Certificate, out var revoked));
        Assert.Equal(CertificateRevocationList.SerialOf(super.Tls.Certificate), revoked!.Serial);
        Assert.Equal(X509RevocationReason.KeyCompromise, revoked.Reason);
        Assert.Equal(Now, revoked.RevokedAt);
    }

    [Fact]
    public void Every_list_the_CA_writes_has_a_higher_number_and_keeps_the_earlier_revocations()
    {
        var first = Load(pki.IssueSuper("sn-1", "eu-west"));
        var second = Load(pki.IssueBase("base-1"));

        var one = CaRevocations.RevokeSerial(pki.CaDir, CertificateRevocationList.SerialOf(first.Tls.Certificate), null, Now).List;
        var (two, _) = CaRevocations.Reissue(pki.CaDir, Now.AddMinutes(1));
        var three = CaRevocations.RevokeSerial(pki.CaDir, CertificateRevocationList.SerialOf(second.Tls.Certificate), null, Now.AddMinutes(2)).List;

        Assert.Equal(new ulong[] { 1, 2, 3 }, new[] { one.Number, two.Number, three.Number });
        Assert.True(three.IsRevoked(first.Tls.Certificate, out _));
        Assert.True(three.IsRevoked(second.Tls.Certificate, out _));
        Assert.Equal(Now.AddMinutes(1), two.ThisUpdate);
    }

    [Fact]
    public void Revoking_twice_leaves_the_list_as_it_was()
    {
        var super = Load(pki.IssueSuper("sn-1", "eu-west"));
        var serial = CertificateRevocationList.SerialOf(super.Tls.Certificate);
        CaRevocations.RevokeSerial(pki.CaDir, serial, null, Now);

        var again = CaRevocations.RevokeSerial(pki.CaDir, serial, X509RevocationReason.Superseded, Now.AddHours(1));

        Assert.True(again.AlreadyRevoked);
        Assert.Equal(1UL, again.List.Number);
        Assert.Equal(Now, again.Revocation.RevokedAt);
    }

    [Fact]
    public void A_serial_the_CA_never_issued_is_refused_and_no_list_is_written()
    {
        var refused = Assert.Throws<CertificateException>(() => CaRevocations.RevokeSerial(pki.CaDir, "0A:BC:DE", null, Now));

        Assert.Contains("no record of issuing a certificate with serial ABCDE", refused.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(pki.CaDir, CaRevocations.CrlFile)));
        Assert.Throws<CertificateException>(() => CaRevocations.RevokeSerial(pki.CaDir, "not-hex", null, Now));
    }

    [Fact]
    public void The_CA_certificate_and_a_certificate_of_another_CA_are_refused()
    {
        var other = new Pki(temp, "other-ca");
        var foreign = other.IssueSuper("sn-1", "eu-west");

        var self = Assert.Throws<CertificateException>(() => CaRevocations.RevokeCertificate(pki.CaDir, pki.CaFile, null, Now));
        var stranger = Assert.Throws<CertificateException>(() =>
            CaRevocations.RevokeCertificate(pki.CaDir, Path.Combine(foreign, CertificateAuthority.CertFile), null, Now));

        Assert.Contains("the CA's own certificate", self.Message, StringComparison.Ordinal);
        Assert.Contains("was not issued by the CA", stranger.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(pki.CaDir, CaRevocations.CrlFile)));
    }

    [Fact]
    public void A_list_another_CA_signed_does_not_verify()
    {
        var other = new Pki(temp, "other-ca");
        var (list, _) = CaRevocations.Reissue(other.CaDir, Now);
        using var ca = pki.LoadCa();

        var refused = Assert.Throws<CertificateException>(() => CertificateRevocationList.Parse(list.Der, ca));

        Assert.Contains("signature is not this network's CA's", refused.Message, StringComparison.Ordinal);
        Assert.Throws<CertificateException>(() => CertificateRevocationList.Parse("not a CRL"u8.ToArray(), ca));
    }

    [Fact]
    public void A_node_applies_only_a_list_with_a_higher_number()
    {
        var node = Load(pki.IssueBase("base-1"));
        using var ca = pki.LoadCa();
        var (one, _) = CaRevocations.Reissue(pki.CaDir, Now);
        var (two, _) = CaRevocations.Reissue(pki.CaDir, Now.AddMinutes(1));
        var revocations = node.Tls.Revocations;
        var changes = new List<ulong>();
        revocations.Changed += list => changes.Add(list.Number);

        Assert.True(revocations.TryApply(two, out _));
        Assert.False(revocations.TryApply(one, out var older));
        Assert.False(revocations.TryApply(CertificateRevocationList.Parse(two.Der, ca), out var same));

        Assert.Equal(2UL, revocations.Number);
        Assert.Equal("CRL number 1 is older than CRL number 2, which this node holds", older);
        Assert.Equal("CRL number 2 is the one this node holds already", same);
        Assert.Equal(new ulong[] { 2 }, changes);
    }

    [Fact]
    public void A_revoked_certificate_is_refused_by_every_check_of_a_peer_and_the_others_still_pass()
    {
        var self = Load(pki.IssueBase("base-1"));
        var revokedSuper = Load(pki.IssueSuper("sn-1", "eu-west"));
        var goodSuper = Load(pki.IssueSuper("sn-2", "eu-west"));
        var outcome = CaRevocations.RevokeCertificate(pki.CaDir, Path.Combine(revokedSuper.Dir, CertificateAuthority.CertFile), X509RevocationReason.KeyCompromise, Now);
        Assert.True(self.Tls.Revocations.TryApply(outcome.List, out var refusal), refusal);

        Assert.False(self.Tls.ValidatePeer(revokedSuper.Tls.Certificate, CertificateKind.Node, out var reason));
        Assert.False(self.Tls.ValidateNode(revokedSuper.Tls.Certificate, out _, out _));
        Assert.False(self.Tls.ValidateServerCertificate(revokedSuper.Tls.Certificate, out var serverReason));
        Assert.True(self.Tls.ValidatePeerIgnoringRevocation(revokedSuper.Tls.Certificate, CertificateKind.Node, out _));
        Assert.True(self.Tls.ValidatePeer(goodSuper.Tls.Certificate, CertificateKind.Node, out var goodReason), goodReason);
        Assert.True(self.Tls.ValidateServerCertificate(goodSuper.Tls.Certificate, out _));

        var serial = CertificateRevocationList.SerialOf(revokedSuper.Tls.Certificate);
        Assert.Equal($"certificate 'CN=sn-1, OU=mydvpn-node' (serial {serial}) was revoked at {Now:u} (key compromise; CRL number 1)", reason);
        Assert.Equal(reason, serverReason);
    }

    [Fact]
    public void An_admin_certificate_can_be_revoked_too()
    {
        var admin = Load(pki.IssueAdmin("alice"));

        var outcome = CaRevocations.RevokeSerial(pki.CaDir, CertificateRevocationList.SerialOf(admin.Tls.Certificate), null, Now);

        Assert.Equal("admin certificate CN=alice, OU=mydvpn-admin", outcome.Certificate.Description);
        Assert.True(outcome.List.IsRevoked(admin.Tls.Certificate, out _));
    }

    [Fact]
    public void Serials_compare_without_leading_zeros_or_separators()
    {
        Assert.Equal("ABC", CertificateRevocationList.ParseSerial("00:0a:bc"));
        Assert.Equal("ABC", CertificateRevocationList.ParseSerial("0x0ABC"));
        Assert.Equal("ABC", CertificateRevocationList.NormalizeSerial([0x00, 0x0A, 0xBC]));
        Assert.Null(CertificateRevocationList.ParseSerial("xyz"));
    }

    private (string Dir, TlsMaterial Tls) Load(string dir)
    {
        var tls = TlsMaterial.Load(dir);
        loaded.Add(tls);
        return (dir, tls);
    }
}
