using System.Net;
using System.Security.Cryptography.X509Certificates;
using MyDvpn.Security;

namespace MyDvpn.Peer.Tests;

/// <summary>A real operator CA in a temporary directory, issuing real node and admin certificates.</summary>
internal sealed class Pki
{
    private readonly TempDirectory temp;
    private readonly string caDir;

    public Pki(TempDirectory temp, string name = "ca")
    {
        this.temp = temp;
        caDir = temp.Sub(name);
        CertificateAuthority.Init(caDir).Dispose();
    }

    /// <summary>The CA certificate file, as a peer's --ca names it.</summary>
    public string CaFile => Path.Combine(caDir, CertificateAuthority.CaCertFile);

    public X509Certificate2 LoadCa() => X509Certificate2.CreateFromPem(File.ReadAllText(CaFile));

    /// <summary>Issues into a new directory (tls.crt, tls.key, ca.crt) and returns that directory.</summary>
    public string Issue(string name, CertificateKind kind)
    {
        var outDir = temp.Sub($"{name}-{Guid.NewGuid():N}");
        CertificateAuthority.Issue(caDir, name, kind, [IPAddress.Loopback], ["localhost"], outDir).Dispose();
        return outDir;
    }
}
