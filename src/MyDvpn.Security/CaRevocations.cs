using System.Numerics;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;

namespace MyDvpn.Security;

/// <summary>A certificate the operator CA issued, as recorded in its directory (<see cref="CaRevocations.IssuedFile"/>).</summary>
/// <param name="Serial">Uppercase hex, no leading zeros (<see cref="CertificateRevocationList.SerialOf"/>).</param>
/// <param name="Identity">A node certificate's identity URI (<c>mydvpn://…</c>); null for an admin certificate.</param>
public sealed record IssuedCertificate(string Serial, CertificateKind Kind, string Subject, string? Identity, DateTimeOffset NotAfter, DateTimeOffset IssuedAt)
{
    /// <summary>"SuperNode mydvpn://super/eu/sn-1 (CN=sn-1, OU=mydvpn-node)" or "admin certificate CN=alice, OU=mydvpn-admin".</summary>
    public string Description => Identity is { } uri ? $"node certificate {uri} ({Subject})" : $"admin certificate {Subject}";
}

/// <summary>What <see cref="CaRevocations.Revoke"/> did.</summary>
/// <param name="AlreadyRevoked">The certificate was on the list before; the list was not rewritten.</param>
public sealed record RevocationOutcome(IssuedCertificate Certificate, RevokedCertificate Revocation, CertificateRevocationList List, string CrlPath, bool AlreadyRevoked);

/// <summary>
/// Revocation at the operator CA: the record of what it issued (<see cref="IssuedFile"/>), and the signed certificate
/// revocation list it writes (<see cref="CrlFile"/>, PEM), each with a CRL number one higher than the last. The list is
/// what nodes enforce once it reaches them (<c>mydvpn admin crl publish</c>, or <c>--crl</c> at start).
/// </summary>
public static class CaRevocations
{
    public const string CrlFile = "ca.crl", IssuedFile = "issued.jsonl";

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    /// <summary>Appends <paramref name="certificate"/> to the CA's record of issued certificates.</summary>
    internal static void RecordIssued(string caDir, X509Certificate2 certificate, CertificateKind kind, NodeIdentity? identity, DateTimeOffset now)
    {
        var entry = new IssuedCertificate(CertificateRevocationList.SerialOf(certificate), kind, certificate.Subject, identity?.Uri,
            new DateTimeOffset(certificate.NotAfter.ToUniversalTime()), now);
        File.AppendAllText(Path.Combine(caDir, IssuedFile), JsonSerializer.Serialize(entry, Json) + "\n");
    }

    /// <summary>Every certificate the CA in <paramref name="caDir"/> recorded issuing (none recorded before this record existed).</summary>
    public static IReadOnlyList<IssuedCertificate> Issued(string caDir)
    {
        var path = Path.Combine(caDir, IssuedFile);
        if (!File.Exists(path))
            return [];
        var issued = new List<IssuedCertificate>();
        foreach (var (line, number) in File.ReadLines(path).Select((line, i) => (line, i + 1)).Where(l => l.line.Length > 0))
        {
            try
            {
                issued.Add(JsonSerializer.Deserialize<IssuedCertificate>(line, Json)
                    ?? throw new JsonException("null entry"));
            }
            catch (JsonException e)
            {
                throw new CertificateException($"'{path}' line {number} is not a record of an issued certificate ({e.Message}); restore it from backup", e);
            }
        }

        return issued;
    }

    /// <summary>
    /// Revokes the certificate with serial <paramref name="serialText"/> (hex), which the CA in <paramref name="caDir"/>
    /// must have recorded issuing, and writes the new list. Throws <see cref="CertificateException"/> for an unknown serial.
    /// </summary>
    public static RevocationOutcome RevokeSerial(string caDir, string serialText, X509RevocationReason? reason, DateTimeOffset now)
    {
        var serial = CertificateRevocationList.ParseSerial(serialText)
            ?? throw new CertificateException($"'{serialText}' is not a certificate serial number: give it in hex, as `openssl x509 -noout -serial` prints it");
        var issued = Issued(caDir).LastOrDefault(c => c.Serial == serial) ?? throw new CertificateException(
            $"the CA in '{caDir}' has no record of issuing a certificate with serial {serial} ({IssuedFile}); " +
            "check the serial, or revoke with --cert FILE (certificates issued before the record existed can only be revoked that way)");
        return Revoke(caDir, issued, reason, now);
    }

    /// <summary>
    /// Revokes the node or admin certificate in <paramref name="certificatePath"/> (PEM or DER), which must have been
    /// issued by the CA in <paramref name="caDir"/> (expired or not), and writes the new list.
    /// </summary>
    public static RevocationOutcome RevokeCertificate(string caDir, string certificatePath, X509RevocationReason? reason, DateTimeOffset now)
    {
        using var certificate = LoadCertificate(certificatePath);
        using var ca = CertificateAuthority.LoadCa(caDir);
        if (certificate.RawDataMemory.Span.SequenceEqual(ca.RawDataMemory.Span))
        {
            throw new CertificateException(
                $"'{certificatePath}' is the CA's own certificate: a CA cannot revoke itself. If its key leaked, create a new CA " +
                "(`mydvpn ca init`), reissue every certificate and give every peer the new --ca");
        }

        if (!IssuedBy(certificate, ca))
        {
            var fingerprint = ca.GetCertHashString(HashAlgorithmName.SHA256)[..16];
            throw new CertificateException(
                $"'{certificatePath}' ({certificate.Subject}) was not issued by the CA in '{caDir}' (SHA-256 {fingerprint}...): nothing to revoke there");
        }

        var kind = CertificateAuthority.KindOf(certificate) ?? throw new CertificateException(
            $"'{certificatePath}' ({certificate.Subject}) is not a myDvpn node or admin certificate (no OU={CertificateAuthority.NodeUnit} or OU={CertificateAuthority.AdminUnit})");
        NodeIdentity? identity = null;
        if (kind == CertificateKind.Node && !NodeIdentity.TryRead(certificate, out identity, out var problem))
            throw new CertificateException($"'{certificatePath}' is a node certificate without a usable identity ({problem}); no node accepts it anyway");
        var issued = new IssuedCertificate(CertificateRevocationList.SerialOf(certificate), kind, certificate.Subject, identity?.Uri,
            new DateTimeOffset(certificate.NotAfter.ToUniversalTime()), new DateTimeOffset(certificate.NotBefore.ToUniversalTime()));
        return Revoke(caDir, issued, reason, now);
    }

    /// <summary>
    /// Writes the CA's list again with the next CRL number and <paramref name="now"/> as its time (an empty list, number 1,
    /// when the CA has none yet) and returns it.
    /// </summary>
    public static (CertificateRevocationList List, string CrlPath) Reissue(string caDir, DateTimeOffset now)
    {
        using var ca = CertificateAuthority.LoadCa(caDir);
        var (builder, number) = LoadBuilder(caDir, ca);
        return Write(caDir, ca, builder, number + 1, now);
    }

    /// <summary>The CA's current list, verified; null when it has written none.</summary>
    public static CertificateRevocationList? Current(string caDir)
    {
        var path = Path.Combine(caDir, CrlFile);
        if (!File.Exists(path))
            return null;
        using var ca = CertificateAuthority.LoadCa(caDir);
        return CertificateRevocationList.Load(path, ca);
    }

    private static RevocationOutcome Revoke(string caDir, IssuedCertificate issued, X509RevocationReason? reason, DateTimeOffset now)
    {
        using var ca = CertificateAuthority.LoadCa(caDir);
        var crlPath = Path.Combine(caDir, CrlFile);
        var (builder, number) = LoadBuilder(caDir, ca);
        if (number > 0 && CertificateRevocationList.Load(crlPath, ca) is var held && held.Find(issued.Serial) is { } existing)
            return new RevocationOutcome(issued, existing, held, crlPath, AlreadyRevoked: true);

        builder.AddEntry(SerialBytes(issued.Serial), now, reason);
        var (list, path) = Write(caDir, ca, builder, number + 1, now);
        var revocation = list.Find(issued.Serial) ?? throw new InvalidOperationException($"the list written lacks serial {issued.Serial}");
        return new RevocationOutcome(issued, revocation, list, path, AlreadyRevoked: false);
    }

    private static (CertificateRevocationListBuilder Builder, BigInteger Number) LoadBuilder(string caDir, X509Certificate2 ca)
    {
        var path = Path.Combine(caDir, CrlFile);
        if (!File.Exists(path))
            return (new CertificateRevocationListBuilder(), BigInteger.Zero);
        // Verified first: a list someone else wrote must not be extended and signed.
        var held = CertificateRevocationList.Load(path, ca);
        var builder = CertificateRevocationListBuilder.Load(held.Der, out var number);
        return (builder, number);
    }

    private static (CertificateRevocationList, string) Write(string caDir, X509Certificate2 ca, CertificateRevocationListBuilder builder, BigInteger number, DateTimeOffset now)
    {
        // The next-update time is informational (nodes keep enforcing a list past it): the CA's own end.
        var caEnd = new DateTimeOffset(ca.NotAfter.ToUniversalTime());
        var nextUpdate = caEnd > now ? caEnd : now.AddDays(1);
        var der = builder.Build(ca, number, nextUpdate, HashAlgorithmName.SHA256, thisUpdate: now);
        var path = Path.Combine(caDir, CrlFile);
        var temporary = path + ".tmp";
        try
        {
            File.WriteAllText(temporary, CertificateRevocationList.ToPem(der));
            File.Move(temporary, path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CertificateException($"Could not write the revocation list to '{path}': {e.Message}", e);
        }

        return (CertificateRevocationList.Parse(der, ca), path);
    }

    private static byte[] SerialBytes(string serial)
    {
        var bytes = Convert.FromHexString(serial.Length % 2 == 0 ? serial : "0" + serial);
        // A DER INTEGER with its top bit set is negative: keep the serial positive, as it was issued.
        return bytes[0] >= 0x80 ? [0, .. bytes] : bytes;
    }

    private static bool IssuedBy(X509Certificate2 certificate, X509Certificate2 ca)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(ca);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.DisableCertificateDownloads = true;
        // An expired certificate can still be revoked: a clock set back would accept it again.
        chain.ChainPolicy.VerificationFlags = X509VerificationFlags.IgnoreNotTimeValid;
        return chain.Build(certificate);
    }

    private static X509Certificate2 LoadCertificate(string path)
    {
        if (!File.Exists(path))
            throw new CertificateException($"--cert: '{path}' does not exist");
        try
        {
            var data = File.ReadAllBytes(path);
            return data.Length > 0 && data[0] == (byte)'-'
                ? X509Certificate2.CreateFromPem(System.Text.Encoding.ASCII.GetString(data))
                : X509CertificateLoader.LoadCertificate(data);
        }
        catch (CryptographicException e)
        {
            throw new CertificateException($"--cert: '{path}' is not a certificate (PEM or DER): {e.Message}", e);
        }
    }
}
