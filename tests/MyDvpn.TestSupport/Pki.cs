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
    /// Issues a certificate for 127.0.0.1 and the DNS names <paramref name="dnsNames"/> (localhost when not given)
    /// into a new directory (tls.crt, tls.key, ca.crt) and returns that directory.
    /// </summary>
    public string Issue(string name, CertificateKind kind, IReadOnlyList<string>? dnsNames = null)
    {
        var outDir = temp.Sub($"{name}-{Guid.NewGuid():N}");
        CertificateAuthority.Issue(CaDir, name, kind, [IPAddress.Loopback], dnsNames ?? ["localhost"], outDir).Dispose();
        return outDir;
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
