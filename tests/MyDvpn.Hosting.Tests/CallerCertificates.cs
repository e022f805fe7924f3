using MyDvpn.Security;

namespace MyDvpn.Hosting.Tests;

/// <summary>
/// A BaseNode's certificate and those of its callers, an admin's and a SuperNode's, from an operator CA of their own in a
/// temporary directory, for tests over real Kestrel with mutual TLS.
/// </summary>
internal sealed class CallerCertificates : IDisposable
{
    private readonly TempDirectory temp = new();

    public CallerCertificates()
    {
        Pki = new Pki(temp);
        Server = TlsMaterial.Load(Pki.IssueBase("base1"));
        Admin = TlsMaterial.Load(Pki.IssueAdmin("alice"));
        Node = TlsMaterial.Load(Pki.IssueSuper("super1", "eu-west"));
    }

    public Pki Pki { get; }

    /// <summary>The BaseNode's (base1).</summary>
    public TlsMaterial Server { get; }

    /// <summary>An admin's (alice).</summary>
    public TlsMaterial Admin { get; }

    /// <summary>A SuperNode's (super1 of eu-west).</summary>
    public TlsMaterial Node { get; }

    public void Dispose()
    {
        Server.Dispose();
        Admin.Dispose();
        Node.Dispose();
        temp.Dispose();
    }
}
