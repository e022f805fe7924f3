using System.Security.Cryptography.X509Certificates;

namespace MyDvpn.Security;

/// <summary>
/// The node's current certificate revocation list: one per node (held by its <see cref="TlsMaterial"/>), read by every
/// check of another node's or an admin's certificate (<see cref="OperatorCaTrust.Validate"/>) and replaced whole, at
/// once, when a newer list arrives (<c>--crl</c> at start, the directory, <c>mydvpn admin crl publish</c>).
/// Thread-safe: readers see the old list or the new one, never a mix.
/// </summary>
public sealed class CertificateRevocations(X509Certificate2 ca)
{
    private CertificateRevocationList? current;

    /// <summary>The list in force; null until one was applied.</summary>
    public CertificateRevocationList? Current => Volatile.Read(ref current);

    /// <summary>The CRL number in force; 0 when there is none.</summary>
    public ulong Number => Current?.Number ?? 0;

    /// <summary>Raised after a newer list replaced the old one (on the thread that applied it).</summary>
    public event Action<CertificateRevocationList>? Changed;

    /// <summary>Whether the list in force revokes <paramref name="certificate"/>.</summary>
    public bool IsRevoked(X509Certificate2 certificate, out RevokedCertificate? revoked)
    {
        revoked = null;
        return Current is { } list && list.IsRevoked(certificate, out revoked);
    }

    /// <summary>"certificate 'CN=…' (serial …) was revoked at … (…; CRL number N)"; null when it is not revoked.</summary>
    public string? Describe(X509Certificate2 certificate)
    {
        if (Current is not { } list || !list.IsRevoked(certificate, out var revoked) || revoked is null)
            return null;
        return $"certificate '{certificate.Subject}' (serial {revoked.Serial}) was revoked at {revoked.RevokedAt:u} " +
            $"({revoked.ReasonText}; CRL number {list.Number})";
    }

    /// <summary>Verifies <paramref name="encoded"/> against the CA (<see cref="CertificateRevocationList.Parse"/>) and applies it (<see cref="TryApply(CertificateRevocationList, out string)"/>).</summary>
    /// <exception cref="CertificateException">The data is not a CRL of this CA.</exception>
    public bool TryApply(byte[] encoded, out CertificateRevocationList list, out string refusal)
    {
        list = CertificateRevocationList.Parse(encoded, ca);
        return TryApply(list, out refusal);
    }

    /// <summary>
    /// Makes <paramref name="list"/> the one in force if its number is higher than the current one's; otherwise leaves
    /// the current one and says why in <paramref name="refusal"/>. The list must have been verified against this
    /// node's CA (<see cref="CertificateRevocationList.Parse"/> does).
    /// </summary>
    public bool TryApply(CertificateRevocationList list, out string refusal)
    {
        while (true)
        {
            var held = Volatile.Read(ref current);
            if (held is not null && list.Number <= held.Number)
            {
                refusal = list.Number == held.Number
                    ? $"CRL number {list.Number} is the one this node holds already"
                    : $"CRL number {list.Number} is older than CRL number {held.Number}, which this node holds";
                return false;
            }

            if (Interlocked.CompareExchange(ref current, list, held) == held)
                break;
        }

        refusal = "";
        Changed?.Invoke(list);
        return true;
    }
}
