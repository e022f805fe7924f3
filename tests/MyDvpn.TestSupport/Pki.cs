using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using MyDvpn.Security;

namespace MyDvpn.TestSupport;

/// <summary>A real operator CA in a temporary directory, issuing real node and admin certificates.</summary>
public sealed class Pki
{
    private readonly TempDirectory temp;

    /// <summary>Makes a new CA in the directory <paramref name="name"/> of <paramref name="temp"/>.</summary>
    public Pki(TempDirectory temp, string name = "ca")
    {
        this.temp = temp;
        CaDir = temp.Sub(name);
        CertificateAuthority.Init(CaDir).Dispose();
    }

    /// <summary>The CA's directory (ca.crt, ca.key), as <c>mydvpn ca issue --dir</c> names it.</summary>
    public string CaDir { get; }

    /// <summary>The CA certificate file, as a peer's --ca names it.</summary>
    public string CaFile => Path.Combine(CaDir, CertificateAuthority.CaCertFile);

    public X509Certificate2 LoadCa() => X509Certificate2.CreateFromPem(File.ReadAllText(CaFile));

    /// <summary>
    /// Issues BaseNode <paramref name="id"/>'s certificate (<c>mydvpn://base/ID</c>) for 127.0.0.1 and the DNS names
    /// <paramref name="dnsNames"/> (localhost when not given) into a new directory (tls.crt, tls.key, ca.crt) and returns
    /// that directory.
    /// </summary>
    public string IssueBase(string id, IReadOnlyList<string>? dnsNames = null) => IssueNode(NodeIdentity.Base(id), dnsNames);

    /// <summary>Issues SuperNode <paramref name="id"/> of <paramref name="region"/>'s certificate, as <see cref="IssueBase"/> does.</summary>
    public string IssueSuper(string id, string region, IReadOnlyList<string>? dnsNames = null) =>
        IssueNode(NodeIdentity.Super(id, region), dnsNames);

    public string IssueNode(NodeIdentity node, IReadOnlyList<string>? dnsNames = null)
    {
        var outDir = temp.Sub($"{node.Id}-{Guid.NewGuid():N}");
        CertificateAuthority.IssueNode(CaDir, node, [IPAddress.Loopback], dnsNames ?? ["localhost"], outDir).Dispose();
        return outDir;
    }

    /// <summary>Issues admin <paramref name="name"/>'s certificate, as <see cref="IssueBase"/> does.</summary>
    public string IssueAdmin(string name, IReadOnlyList<string>? dnsNames = null)
    {
        var outDir = temp.Sub($"{name}-{Guid.NewGuid():N}");
        CertificateAuthority.IssueAdmin(CaDir, name, [IPAddress.Loopback], dnsNames ?? ["localhost"], outDir).Dispose();
        return outDir;
    }

    /// <summary>
    /// A node certificate signed by this CA, valid for a day, whose subject alternative name holds exactly
    /// <paramref name="uris"/> (none, malformed or several node identities: what <see cref="CertificateAuthority"/>
    /// never issues), with its private key.
    /// </summary>
    public X509Certificate2 NodeWithUris(params string[] uris)
    {
        using var ca = X509Certificate2.CreateFromPemFile(
            Path.Combine(CaDir, CertificateAuthority.CaCertFile), Path.Combine(CaDir, CertificateAuthority.CaKeyFile));
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=forged, OU=mydvpn-node", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName("forged");
        foreach (var uri in uris)
            san.AddUri(new Uri(uri, UriKind.Absolute));
        request.CertificateExtensions.Add(san.Build());
        using var issued = request.Create(ca, ca.NotBefore, DateTimeOffset.UtcNow.AddDays(1), [0x05, 0x06, 0x07, 0x08]);
        return issued.CopyWithPrivateKey(key);
    }

    /// <summary>A node certificate signed by this CA that expired a minute ago.</summary>
    public X509Certificate2 Expired()
    {
        using var ca = X509Certificate2.CreateFromPemFile(
            Path.Combine(CaDir, CertificateAuthority.CaCertFile), Path.Combine(CaDir, CertificateAuthority.CaKeyFile));
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=old, OU=mydvpn-node", key, HashAlgorithmName.SHA256);
        var notAfter = DateTimeOffset.UtcNow.AddMinutes(-1);
        // Init backdates the CA; if it ever stops doing so, this throws rather than passing vacuously.
        return request.Create(ca, ca.NotBefore, notAfter, [0x01, 0x02, 0x03, 0x04]);
    }
}
