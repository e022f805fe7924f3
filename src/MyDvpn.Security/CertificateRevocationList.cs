using System.Collections.Frozen;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Org.BouncyCastle.Asn1;
using Org.BouncyCastle.Asn1.X509;
using Org.BouncyCastle.Security;
using Org.BouncyCastle.X509;
using Org.BouncyCastle.X509.Extension;

namespace MyDvpn.Security;

/// <summary>One certificate a <see cref="RevocationList"/> revokes.</summary>
/// <param name="Serial">The certificate's serial number (<see cref="CertificateRevocationList.SerialOf"/>).</param>
public sealed record RevokedCertificate(string Serial, DateTimeOffset RevokedAt, X509RevocationReason? Reason)
{
    /// <summary>The reason in words for a log line or an error ("key compromise"); "no reason given" when none.</summary>
    public string ReasonText => Reason is { } reason ? ReasonName(reason) : "no reason given";

    public static string ReasonName(X509RevocationReason reason) => reason switch
    {
        X509RevocationReason.KeyCompromise => "key compromise",
        X509RevocationReason.Superseded => "superseded",
        X509RevocationReason.CessationOfOperation => "cessation of operation",
        X509RevocationReason.AffiliationChanged => "affiliation changed",
        _ => reason.ToString(),
    };
}

/// <summary>
/// A certificate revocation list (X.509 v2 CRL, RFC 5280) of the operator CA whose signature was verified against that CA:
/// the serials it revokes and its CRL number, which only grows (<c>mydvpn ca revoke</c> and <c>mydvpn ca crl</c> write it;
/// a node applies a CRL only if its number is higher than the one it holds, so an old list cannot be replayed).
/// Its next-update time is not enforced: a revocation never expires, and a stale list still refuses what it lists.
/// </summary>
public sealed class CertificateRevocationList
{
    private const string PemLabel = "X509 CRL";

    private readonly FrozenDictionary<string, RevokedCertificate> bySerial;

    private CertificateRevocationList(ulong number, DateTimeOffset thisUpdate, IEnumerable<RevokedCertificate> revoked, byte[] der)
    {
        Number = number;
        ThisUpdate = thisUpdate;
        bySerial = revoked.ToFrozenDictionary(r => r.Serial, StringComparer.Ordinal);
        Der = der;
    }

    /// <summary>The CRL number: every list the CA writes has a higher one than the last.</summary>
    public ulong Number { get; }

    public DateTimeOffset ThisUpdate { get; }

    /// <summary>The revoked certificates, by serial.</summary>
    public IReadOnlyCollection<RevokedCertificate> Revoked => bySerial.Values;

    /// <summary>The list as signed (DER): what nodes store and pass on.</summary>
    public byte[] Der { get; }

    /// <summary>The serial of <paramref name="certificate"/> as lists key it: uppercase hex, no leading zeros.</summary>
    public static string SerialOf(X509Certificate2 certificate) => NormalizeSerial(certificate.SerialNumberBytes.Span);

    /// <summary>A serial given as big-endian bytes, as lists key it.</summary>
    public static string NormalizeSerial(ReadOnlySpan<byte> bigEndian)
    {
        var hex = Convert.ToHexString(bigEndian).TrimStart('0');
        return hex.Length == 0 ? "0" : hex;
    }

    /// <summary>A serial an operator typed (hex, with or without colons or a 0x prefix), as lists key it; null if it is not hex.</summary>
    public static string? ParseSerial(string text)
    {
        var hex = text.Trim().Replace(":", "", StringComparison.Ordinal);
        if (hex.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
            hex = hex[2..];
        if (hex.Length is 0 or > 40 || !hex.All(char.IsAsciiHexDigit))
            return null;
        hex = hex.ToUpperInvariant().TrimStart('0');
        return hex.Length == 0 ? "0" : hex;
    }

    public bool IsRevoked(X509Certificate2 certificate, out RevokedCertificate? revoked) =>
        bySerial.TryGetValue(SerialOf(certificate), out revoked);

    public RevokedCertificate? Find(string serial) => bySerial.GetValueOrDefault(serial);

    /// <summary>
    /// Reads a CRL (DER, or PEM <c>X509 CRL</c>) and checks that <paramref name="ca"/> issued and signed it and that it
    /// carries a CRL number; throws <see cref="CertificateException"/> saying what is wrong.
    /// </summary>
    public static CertificateRevocationList Parse(byte[] encoded, X509Certificate2 ca)
    {
        var der = Decode(encoded);
        X509Crl crl;
        try
        {
            crl = new X509CrlParser().ReadCrl(der) ?? throw new CertificateException("not an X.509 CRL (neither DER nor PEM)");
        }
        catch (Exception e) when (e is GeneralSecurityException or IOException or ArgumentException or InvalidCastException or InvalidOperationException)
        {
            throw new CertificateException($"not an X.509 CRL ({e.Message})", e);
        }

        var caCertificate = new X509CertificateParser().ReadCertificate(ca.RawData);
        if (!crl.IssuerDN.Equivalent(caCertificate.SubjectDN))
            throw new CertificateException($"the CRL was issued by '{crl.IssuerDN}', not by the operator CA");
        try
        {
            crl.Verify(caCertificate.GetPublicKey());
        }
        catch (Exception e) when (e is GeneralSecurityException or ArgumentException or InvalidOperationException)
        {
            var fingerprint = ca.GetCertHashString(HashAlgorithmName.SHA256)[..16];
            throw new CertificateException($"the CRL's signature is not this network's CA's (SHA-256 {fingerprint}...)", e);
        }

        var numberValue = crl.GetExtensionValue(X509Extensions.CrlNumber)
            ?? throw new CertificateException("the CRL carries no CRL number; write it with `mydvpn ca crl`");
        var number = DerInteger.GetInstance(X509ExtensionUtilities.FromExtensionValue(numberValue)).Value;
        if (number.SignValue < 0 || number.BitLength > 64)
            throw new CertificateException($"the CRL number {number} is out of range (0 to 2^64-1)");

        var revoked = (crl.GetRevokedCertificates() ?? new HashSet<X509CrlEntry>()).Select(entry => new RevokedCertificate(
            NormalizeSerial(entry.SerialNumber.ToByteArrayUnsigned()),
            new DateTimeOffset(DateTime.SpecifyKind(entry.RevocationDate, DateTimeKind.Utc)),
            ReasonOf(entry)));
        return new CertificateRevocationList(
            (ulong)number.LongValue,
            new DateTimeOffset(DateTime.SpecifyKind(crl.ThisUpdate, DateTimeKind.Utc)),
            revoked,
            der);
    }

    /// <summary>Reads and verifies a CRL file (see <see cref="Parse"/>); the message names the file.</summary>
    public static CertificateRevocationList Load(string path, X509Certificate2 ca)
    {
        byte[] data;
        try
        {
            data = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CertificateException($"cannot read the CRL '{path}': {e.Message}", e);
        }

        try
        {
            return Parse(data, ca);
        }
        catch (CertificateException e)
        {
            throw new CertificateException($"'{path}' is not usable: {e.Message}", e);
        }
    }

    /// <summary>The list as PEM (<c>-----BEGIN X509 CRL-----</c>).</summary>
    public static string ToPem(byte[] der) => new(PemEncoding.Write(PemLabel, der));

    private static byte[] Decode(byte[] encoded)
    {
        // A PEM CRL is ASCII text starting with its label; anything else is taken as DER.
        if (encoded.Length > 0 && encoded[0] == (byte)'-')
        {
            var text = Encoding.ASCII.GetString(encoded);
            if (PemEncoding.TryFind(text, out var fields) && text[fields.Label] == PemLabel)
                return Convert.FromBase64String(text[fields.Base64Data]);
            throw new CertificateException($"the PEM data holds no '{PemLabel}' block");
        }

        return encoded;
    }

    private static X509RevocationReason? ReasonOf(X509CrlEntry entry)
    {
        var value = entry.GetExtensionValue(X509Extensions.ReasonCode);
        if (value is null)
            return null;
        return (X509RevocationReason)DerEnumerated.GetInstance(X509ExtensionUtilities.FromExtensionValue(value)).IntValueExact;
    }
}
