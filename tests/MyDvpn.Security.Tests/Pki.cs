using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace MyDvpn.Security.Tests;

/// <summary>Shortcuts for building CAs and certificates on disk in tests.</summary>
internal static class Pki
{
    public static string NewCa(TempDirectory temp, string name = "ca")
    {
        var dir = temp.Sub(name);
        CertificateAuthority.Init(dir).Dispose();
        return dir;
    }

    /// <summary>Issues into a new directory under <paramref name="temp"/> and returns that directory.</summary>
    public static string Issue(TempDirectory temp, string caDir, string name, CertificateKind kind)
    {
        var outDir = temp.Sub(name + "-" + Guid.NewGuid().ToString("N")[..8]);
        CertificateAuthority.Issue(caDir, name, kind, [IPAddress.Loopback], [], outDir).Dispose();
        return outDir;
    }

    /// <summary>A node certificate signed by the CA in <paramref name="caDir"/> that expired a minute ago.</summary>
    public static X509Certificate2 Expired(string caDir)
    {
        using var ca = X509Certificate2.CreateFromPemFile(
            Path.Combine(caDir, CertificateAuthority.CaCertFile), Path.Combine(caDir, CertificateAuthority.CaKeyFile));
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=old, OU=mydvpn-node", key, HashAlgorithmName.SHA256);
        var notAfter = DateTimeOffset.UtcNow.AddMinutes(-1);
        // Init backdates the CA; if it ever stops doing so, this throws rather than passing vacuously.
        return request.Create(ca, ca.NotBefore, notAfter, [0x01, 0x02, 0x03, 0x04]);
    }
}
