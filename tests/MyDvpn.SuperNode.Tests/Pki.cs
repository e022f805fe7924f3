using System.Net;
using MyDvpn.Security;

namespace MyDvpn.SuperNode.Tests;

/// <summary>A real operator CA in a temporary directory, issuing real node and admin certificates.</summary>
internal sealed class Pki(TempDirectory temp)
{
    private readonly string caDir = Init(temp.Sub("ca"));

    /// <summary>Issues into a new directory (tls.crt, tls.key, ca.crt) and returns that directory.</summary>
    public string Issue(string name, CertificateKind kind)
    {
        var outDir = temp.Sub($"{name}-{Guid.NewGuid():N}");
        CertificateAuthority.Issue(caDir, name, kind, [IPAddress.Loopback], ["localhost"], outDir).Dispose();
        return outDir;
    }

    private static string Init(string dir)
    {
        CertificateAuthority.Init(dir).Dispose();
        return dir;
    }
}
