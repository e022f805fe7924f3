using MyDvpn.Common;
using MyDvpn.Security;

namespace MyDvpn.Hosting;

/// <summary>What applying a certificate revocation list came to.</summary>
/// <param name="Applied">The list is newer than the one held and is now in force.</param>
/// <param name="Refusal">Why it was not applied, when not.</param>
public sealed record CrlApplied(CertificateRevocationList List, bool Applied, string Refusal);

/// <summary>
/// A node's certificate revocation list (<see cref="TlsMaterial.Revocations"/>) made durable: the list in force is kept in
/// the data directory (<see cref="FileName"/>), so a restarted node refuses revoked certificates before any directory
/// answers. <see cref="Open"/> reads it and <c>--crl</c> at start; <see cref="Apply"/> takes a newer list (from the
/// directory, or an admin's upload) and stores it.
/// </summary>
public sealed class NodeCrlStore
{
    public const string FileName = "node.crl";

    private readonly string path;
    private readonly object writing = new();

    private NodeCrlStore(string dataDir, TlsMaterial tls)
    {
        path = Path.Combine(dataDir, FileName);
        Tls = tls;
    }

    public TlsMaterial Tls { get; }

    /// <summary>The CRL number in force; 0: none.</summary>
    public ulong Number => Tls.Revocations.Number;

    /// <summary>
    /// Applies the list stored in <paramref name="dataDir"/> and the one in <paramref name="crlFile"/> (<c>--crl</c>), the
    /// newer in force, and refuses to start a node whose own certificate either revokes. Throws
    /// <see cref="ConfigurationException"/> naming the setting to fix.
    /// </summary>
    public static NodeCrlStore Open(string dataDir, string? crlFile, TlsMaterial tls)
    {
        var store = new NodeCrlStore(dataDir, tls);
        if (File.Exists(store.path))
        {
            try
            {
                tls.Revocations.TryApply(CertificateRevocationList.Load(store.path, tls.CaCertificate), out _);
            }
            catch (CertificateException ex)
            {
                throw new ConfigurationException("--data-dir",
                    $"{ex.Message}; it is the revocation list this node last applied: delete it and start with --crl FILE (`mydvpn ca crl` writes one)", ex);
            }
        }

        if (!string.IsNullOrWhiteSpace(crlFile))
        {
            try
            {
                store.Apply(File.Exists(crlFile)
                    ? CertificateRevocationList.Load(crlFile, tls.CaCertificate)
                    : throw new CertificateException($"'{crlFile}' does not exist"));
            }
            catch (CertificateException ex)
            {
                throw new ConfigurationException("--crl", $"{ex.Message}; give the list `mydvpn ca revoke` or `mydvpn ca crl` wrote in the CA directory (ca.crl)", ex);
            }
        }

        if (tls.Revocations.Describe(tls.Certificate) is { } revoked)
            throw new ConfigurationException("--tls", $"this node's own {revoked}: issue it a new certificate with `mydvpn ca issue` and put it in its --tls directory");
        return store;
    }

    /// <summary>Verifies <paramref name="encoded"/> against the CA and applies it if it is newer (<see cref="Apply(CertificateRevocationList)"/>).</summary>
    /// <exception cref="CertificateException">Not a CRL, or not one of this node's CA.</exception>
    public CrlApplied Apply(byte[] encoded) => Apply(CertificateRevocationList.Parse(encoded, Tls.CaCertificate));

    /// <summary>
    /// Makes <paramref name="list"/> (verified against this node's CA) the one in force if it is newer than the one held,
    /// and stores it; an older or equal one changes nothing.
    /// </summary>
    public CrlApplied Apply(CertificateRevocationList list)
    {
        // One writer at a time, so that the file never ends up holding an older list than the one in force.
        lock (writing)
        {
            if (!Tls.Revocations.TryApply(list, out var refusal))
                return new CrlApplied(list, false, refusal);
            var temporary = path + ".tmp";
            File.WriteAllText(temporary, CertificateRevocationList.ToPem(list.Der));
            File.Move(temporary, path, overwrite: true);
            return new CrlApplied(list, true, "");
        }
    }
}
