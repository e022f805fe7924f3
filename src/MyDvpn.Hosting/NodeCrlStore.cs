using MyDvpn.Common;
using MyDvpn.Security;

namespace MyDvpn.Hosting;

/// <summary>
/// A node's certificate revocation list (<see cref="TlsMaterial.Revocations"/>) made durable: the list in force is kept in
/// the data directory (<see cref="FileName"/>), so a restarted node refuses revoked certificates before any directory
/// answers. <see cref="Open"/> reads it and <c>--crl</c> at start, and refuses a node whose own certificate is revoked.
/// </summary>
public sealed class NodeCrlStore : CrlStore
{
    public const string FileName = "node.crl";

    private NodeCrlStore(string dataDir, TlsMaterial tls)
        : base(Path.Combine(dataDir, FileName), tls.CaCertificate, tls.Revocations) => Tls = tls;

    public TlsMaterial Tls { get; }

    /// <summary>
    /// Applies the list stored in <paramref name="dataDir"/> and the one in <paramref name="crlFile"/> (<c>--crl</c>), the
    /// newer in force, and refuses to start a node whose own certificate either revokes. Throws
    /// <see cref="ConfigurationException"/> naming the setting to fix.
    /// </summary>
    public static NodeCrlStore Open(string dataDir, string? crlFile, TlsMaterial tls)
    {
        var store = new NodeCrlStore(dataDir, tls);
        store.Load(crlFile, "--data-dir");
        if (tls.Revocations.Describe(tls.Certificate) is { } revoked)
            throw new ConfigurationException("--tls", $"this node's own {revoked}: issue it a new certificate with `mydvpn ca issue` and put it in its --tls directory");
        return store;
    }
}
