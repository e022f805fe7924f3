using System.Security.Cryptography.X509Certificates;
using MyDvpn.Common;

namespace MyDvpn.Security;

/// <summary>What applying a certificate revocation list came to.</summary>
/// <param name="Applied">The list is newer than the one held and is now in force.</param>
/// <param name="Refusal">Why it was not applied, when not.</param>
public sealed record CrlApplied(CertificateRevocationList List, bool Applied, string Refusal);

/// <summary>
/// A certificate revocation list in force (<see cref="Revocations"/>) made durable in one file, so that a restarted
/// node or peer refuses revoked certificates before anyone tells it again. <see cref="Open"/> reads the stored list and
/// the one given with <c>--crl</c>, the newer in force; <see cref="Apply(CertificateRevocationList)"/> takes a newer
/// list (from the directory, an admin's upload, or a SuperNode's challenge) and stores it.
/// </summary>
public class CrlStore
{
    private readonly string path;
    private readonly object writing = new();

    protected CrlStore(string path, X509Certificate2 ca, CertificateRevocations revocations)
    {
        this.path = path;
        Ca = ca;
        Revocations = revocations;
    }

    /// <summary>The CA every list is verified against.</summary>
    public X509Certificate2 Ca { get; }

    /// <summary>The list in force, which certificate checks read.</summary>
    public CertificateRevocations Revocations { get; }

    /// <summary>The CRL number in force; 0: none.</summary>
    public ulong Number => Revocations.Number;

    /// <summary>
    /// Opens the list stored at <paramref name="path"/> and the one in <paramref name="crlFile"/> (<c>--crl</c>, may be
    /// null), the newer in force. Throws <see cref="ConfigurationException"/> naming the setting to fix:
    /// <paramref name="directorySetting"/> for a stored file that is not a list of this CA.
    /// </summary>
    public static CrlStore Open(string path, string? crlFile, X509Certificate2 ca, CertificateRevocations revocations, string directorySetting)
    {
        var store = new CrlStore(path, ca, revocations);
        store.Load(crlFile, directorySetting);
        return store;
    }

    /// <summary>Applies the stored list, then <paramref name="crlFile"/>; see <see cref="Open"/>.</summary>
    protected void Load(string? crlFile, string directorySetting)
    {
        if (File.Exists(path))
        {
            try
            {
                Revocations.TryApply(CertificateRevocationList.Load(path, Ca), out _);
            }
            catch (CertificateException ex)
            {
                throw new ConfigurationException(directorySetting,
                    $"{ex.Message}; it is the revocation list last applied here ({path}): delete it and start with --crl FILE (`mydvpn ca crl` writes one)", ex);
            }
        }

        if (!string.IsNullOrWhiteSpace(crlFile))
        {
            try
            {
                Apply(File.Exists(crlFile)
                    ? CertificateRevocationList.Load(crlFile, Ca)
                    : throw new CertificateException($"'{crlFile}' does not exist"));
            }
            catch (CertificateException ex)
            {
                throw new ConfigurationException("--crl", $"{ex.Message}; give the list `mydvpn ca revoke` or `mydvpn ca crl` wrote in the CA directory (ca.crl)", ex);
            }
        }
    }

    /// <summary>Verifies <paramref name="encoded"/> against the CA and applies it if it is newer (<see cref="Apply(CertificateRevocationList)"/>).</summary>
    /// <exception cref="CertificateException">Not a CRL, or not one of this CA.</exception>
    public CrlApplied Apply(byte[] encoded) => Apply(CertificateRevocationList.Parse(encoded, Ca));

    /// <summary>
    /// Makes <paramref name="list"/> (verified against the CA) the one in force if it is newer than the one held, and
    /// stores it; an older or equal one changes nothing.
    /// </summary>
    public CrlApplied Apply(CertificateRevocationList list)
    {
        // One writer at a time, so that the file never ends up holding an older list than the one in force.
        lock (writing)
        {
            if (!Revocations.TryApply(list, out var refusal))
                return new CrlApplied(list, false, refusal);
            var temporary = path + ".tmp";
            File.WriteAllText(temporary, CertificateRevocationList.ToPem(list.Der));
            File.Move(temporary, path, overwrite: true);
            return new CrlApplied(list, true, "");
        }
    }
}
