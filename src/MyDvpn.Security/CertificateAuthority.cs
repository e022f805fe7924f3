using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace MyDvpn.Security;

/// <summary>
/// The operator's certificate authority: creates it, and issues node and admin certificates signed by it.
/// Every TLS connection in the network is authenticated against this CA alone.
/// </summary>
public static class CertificateAuthority
{
    public const string CaCertFile = "ca.crt", CaKeyFile = "ca.key", CertFile = "tls.crt", KeyFile = "tls.key";

    internal const string NodeUnit = "mydvpn-node", AdminUnit = "mydvpn-admin";

    private const string CaSubject = "CN=myDvpn operator CA";
    private const int MaxNameLength = 64, MaxLabelLength = 63;
    private const string ServerAuthOid = "1.3.6.1.5.5.7.3.1", ClientAuthOid = "1.3.6.1.5.5.7.3.2";
    private const string OrganizationalUnitOid = "2.5.4.11";

    // Certificates start an hour in the past so that a peer whose clock lags accepts them right away.
    private static readonly TimeSpan ClockSkew = TimeSpan.FromHours(1);
    /// <summary>
    /// How long a node or admin certificate is valid unless the operator says otherwise: short, so that a certificate
    /// that leaked unnoticed stops working soon; renewal is a new `ca issue` (docs/trust-model.md).
    /// </summary>
    public static readonly TimeSpan DefaultValidity = TimeSpan.FromDays(90);

    /// <summary>
    /// Creates an operator CA in <paramref name="dir"/> (created if missing) and writes <c>ca.crt</c> and <c>ca.key</c>.
    /// Returns the CA certificate with its private key. Never overwrites an existing CA.
    /// </summary>
    public static X509Certificate2 Init(string dir)
    {
        var certPath = Path.Combine(dir, CaCertFile);
        var keyPath = Path.Combine(dir, CaKeyFile);
        foreach (var path in new[] { certPath, keyPath })
        {
            if (File.Exists(path))
            {
                throw new CertificateException(
                    $"'{path}' already exists: refusing to overwrite an existing CA, since every certificate it issued would stop working. " +
                    "Use that CA, or choose another directory with --dir.");
            }
        }

        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(CaSubject, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(
            certificateAuthority: true, hasPathLengthConstraint: true, pathLengthConstraint: 0, critical: true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(
            X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, critical: true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, critical: false));

        var now = DateTimeOffset.UtcNow;
        var certificate = request.CreateSelfSigned(now - ClockSkew, now.AddYears(10));
        try
        {
            Directory.CreateDirectory(dir);
            // Key first, both with CreateNew: a concurrent init cannot end up with a certificate and a foreign key.
            PrivateFile.Write(keyPath, key.ExportPkcs8PrivateKeyPem(), overwrite: false);
            WriteNew(certPath, certificate.ExportCertificatePem());
            return certificate;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            certificate.Dispose();
            throw new CertificateException($"Could not write the CA to '{dir}': {e.Message}", e);
        }
    }

    /// <summary>
    /// Issues a node certificate for <paramref name="node"/> (CN = its id; its role, id and region in a subject alternative
    /// name URI, <see cref="NodeIdentity.Uri"/>) signed by the CA in <paramref name="caDir"/>, and writes <c>tls.crt</c>,
    /// <c>tls.key</c> and <c>ca.crt</c> to <paramref name="outDir"/>, overwriting an earlier <c>tls.*</c>.
    /// Returns the issued certificate with its private key.
    /// </summary>
    public static X509Certificate2 IssueNode(
        string caDir,
        NodeIdentity node,
        IReadOnlyList<IPAddress> ips,
        IReadOnlyList<string> dnsNames,
        string outDir,
        TimeSpan? validity = null) =>
        Issue(caDir, node.Id, CertificateKind.Node, node, ips, dnsNames, outDir, validity);

    /// <summary>
    /// Issues an admin certificate named <paramref name="name"/> (client authentication only) signed by the CA in
    /// <paramref name="caDir"/>; writes and returns it as <see cref="IssueNode"/> does.
    /// </summary>
    public static X509Certificate2 IssueAdmin(
        string caDir,
        string name,
        IReadOnlyList<IPAddress> ips,
        IReadOnlyList<string> dnsNames,
        string outDir,
        TimeSpan? validity = null) =>
        Issue(caDir, name, CertificateKind.Admin, null, ips, dnsNames, outDir, validity);

    private static X509Certificate2 Issue(
        string caDir,
        string name,
        CertificateKind kind,
        NodeIdentity? node,
        IReadOnlyList<IPAddress> ips,
        IReadOnlyList<string> dnsNames,
        string outDir,
        TimeSpan? validity)
    {
        ValidateName(name);
        var lifetime = validity ?? DefaultValidity;
        if (lifetime <= TimeSpan.Zero)
        {
            throw new CertificateException($"Validity must be positive, got {lifetime}.");
        }

        using var ca = LoadCa(caDir);
        var now = DateTimeOffset.UtcNow;
        var notBefore = Max(now - ClockSkew, new DateTimeOffset(ca.NotBefore.ToUniversalTime()));
        var notAfter = now + lifetime;
        if (notAfter > ca.NotAfter.ToUniversalTime())
        {
            throw new CertificateException(
                $"The CA in '{caDir}' expires on {ca.NotAfter.ToUniversalTime():u}, before the certificate would ({notAfter:u}). " +
                "Issue with a shorter validity, or create a new CA and reissue every certificate.");
        }

        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var unit = kind == CertificateKind.Node ? NodeUnit : AdminUnit;
        var request = new CertificateRequest($"CN={name}, OU={unit}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, critical: true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, critical: true));
        var usages = new OidCollection { new Oid(ClientAuthOid) };
        if (kind == CertificateKind.Node)
        {
            usages.Add(new Oid(ServerAuthOid));
        }

        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(usages, critical: false));
        request.CertificateExtensions.Add(SubjectAlternativeNames(name, node, ips, dnsNames));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, critical: false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(
            ca, includeKeyIdentifier: true, includeIssuerAndSerial: false));

        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7F; // DER INTEGER: a clear top bit keeps the serial positive and 16 bytes long.

        using var issued = request.Create(ca, notBefore, notAfter, serial);
        var certificate = issued.CopyWithPrivateKey(key);
        try
        {
            Directory.CreateDirectory(outDir);
            PrivateFile.Write(Path.Combine(outDir, KeyFile), key.ExportPkcs8PrivateKeyPem(), overwrite: true);
            File.WriteAllText(Path.Combine(outDir, CertFile), certificate.ExportCertificatePem());
            var caCopy = Path.Combine(outDir, CaCertFile);
            if (Path.GetFullPath(caCopy) != Path.GetFullPath(Path.Combine(caDir, CaCertFile)))
            {
                File.WriteAllText(caCopy, ca.ExportCertificatePem());
            }

            // Recorded so that `ca revoke --serial` knows what this CA issued.
            CaRevocations.RecordIssued(caDir, certificate, kind, node, now);
            return certificate;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            certificate.Dispose();
            throw new CertificateException($"Could not write the certificate to '{outDir}': {e.Message}", e);
        }
    }

    /// <summary>
    /// The kind recorded in the subject OU of a certificate issued by <see cref="IssueNode"/> or <see cref="IssueAdmin"/>; null if it has neither
    /// (or, ambiguously, both) OUs.
    /// </summary>
    public static CertificateKind? KindOf(X509Certificate2 certificate)
    {
        CertificateKind? kind = null;
        foreach (var rdn in certificate.SubjectName.EnumerateRelativeDistinguishedNames())
        {
            if (rdn.HasMultipleElements || rdn.GetSingleElementType().Value != OrganizationalUnitOid)
            {
                continue;
            }

            CertificateKind? found = rdn.GetSingleElementValue() switch
            {
                NodeUnit => CertificateKind.Node,
                AdminUnit => CertificateKind.Admin,
                _ => null,
            };
            if (found is null)
            {
                continue;
            }

            // A certificate claiming both kinds was not made by this CA; trust neither claim.
            if (kind is not null && kind != found)
            {
                return null;
            }

            kind = found;
        }

        return kind;
    }

    private static void ValidateName(string name)
    {
        // The name is also a DNS SAN, so dot-separated parts must be DNS labels (1-63 characters).
        if (name.Length is 0 or > MaxNameLength || !name.All(IsNameChar)
            || name.Split('.').Any(label => label.Length is 0 or > MaxLabelLength))
        {
            throw new CertificateException(
                $"Invalid certificate name '{name}': use 1-{MaxNameLength} characters from A-Z, a-z, 0-9, '.', '_' and '-', " +
                $"with 1-{MaxLabelLength} characters between dots (the name is also the certificate's DNS name).");
        }

        static bool IsNameChar(char c) => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-';
    }

    internal static X509Certificate2 LoadCa(string caDir)
    {
        var certPath = Path.Combine(caDir, CaCertFile);
        var keyPath = Path.Combine(caDir, CaKeyFile);
        foreach (var path in new[] { certPath, keyPath })
        {
            if (!File.Exists(path))
            {
                throw new CertificateException(
                    $"No operator CA in '{caDir}': '{path}' is missing. Create one with `mydvpn ca init --dir {caDir}`, " +
                    "or point to the directory that holds both ca.crt and ca.key.");
            }
        }

        try
        {
            return X509Certificate2.CreateFromPemFile(certPath, keyPath);
        }
        catch (Exception e) when (e is CryptographicException or ArgumentException) // ArgumentException: key mismatch.
        {
            throw new CertificateException(
                $"The CA in '{caDir}' is unreadable or its key does not match its certificate ({e.Message}). " +
                $"Restore ca.crt and ca.key from backup, or create a new CA with `mydvpn ca init --dir DIR`.", e);
        }
    }

    private static X509Extension SubjectAlternativeNames(string name, NodeIdentity? node, IReadOnlyList<IPAddress> ips, IReadOnlyList<string> dnsNames)
    {
        var builder = new SubjectAlternativeNameBuilder();
        node?.AddTo(builder);
        foreach (var ip in ips.Distinct())
        {
            builder.AddIpAddress(ip);
        }

        // The name is always a DNS SAN so that peers can address a node by name.
        foreach (var dns in dnsNames.Append(name).Distinct(StringComparer.OrdinalIgnoreCase))
        {
            try
            {
                builder.AddDnsName(dns);
            }
            catch (ArgumentException e)
            {
                throw new CertificateException($"'{dns}' is not a valid DNS name: {e.Message}", e);
            }
        }

        return builder.Build();
    }

    private static void WriteNew(string path, string content)
    {
        using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
        using var writer = new StreamWriter(stream);
        writer.Write(content);
    }

    private static DateTimeOffset Max(DateTimeOffset a, DateTimeOffset b) => a > b ? a : b;
}
