using System.Diagnostics.CodeAnalysis;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace MyDvpn.Security;

/// <summary>A node's or admin's TLS material loaded from a directory holding tls.crt, tls.key and ca.crt.</summary>
public sealed class TlsMaterial : IDisposable
{
    private TlsMaterial(X509Certificate2 certificate, X509Certificate2 caCertificate, CertificateKind kind, NodeIdentity? identity)
    {
        Certificate = certificate;
        CaCertificate = caCertificate;
        Kind = kind;
        Identity = identity;
        Name = certificate.GetNameInfo(X509NameType.SimpleName, forIssuer: false);
        CertificateSha256 = SHA256.HashData(certificate.RawData);
        Revocations = new CertificateRevocations(caCertificate);
        trust = new OperatorCaTrust(caCertificate, Revocations);
    }

    private readonly OperatorCaTrust trust;

    /// <summary>Own certificate with its private key, usable as an SslStream server and client certificate.</summary>
    public X509Certificate2 Certificate { get; }

    /// <summary>The operator CA: the only root peers are checked against.</summary>
    public X509Certificate2 CaCertificate { get; }

    public CertificateKind Kind { get; }

    /// <summary>A node certificate's role, id and region; null for an admin certificate.</summary>
    public NodeIdentity? Identity { get; }

    /// <summary>SHA-256 of <see cref="Certificate"/> (DER): what a peer binds its login to (<see cref="PeerAuthTranscript"/>).</summary>
    public byte[] CertificateSha256 { get; }

    /// <summary>The operator's revocation list this node enforces: every check of another certificate consults it.</summary>
    public CertificateRevocations Revocations { get; }

    /// <summary>The CN of <see cref="Certificate"/>.</summary>
    public string Name { get; }

    /// <summary>
    /// Loads tls.crt, tls.key and ca.crt from <paramref name="dir"/> and checks that the certificate is valid under the CA,
    /// so that a node with stale material fails at start rather than at its first connection.
    /// </summary>
    public static TlsMaterial Load(string dir)
    {
        var certPath = Path.Combine(dir, CertificateAuthority.CertFile);
        var keyPath = Path.Combine(dir, CertificateAuthority.KeyFile);
        var caPath = Path.Combine(dir, CertificateAuthority.CaCertFile);
        foreach (var path in new[] { certPath, keyPath, caPath })
        {
            if (!File.Exists(path))
            {
                throw new CertificateException(
                    $"'{path}' is missing. Issue TLS material into that directory with `mydvpn ca issue ... --out {dir}`.");
            }
        }

        var ca = LoadPem(() => X509Certificate2.CreateFromPem(File.ReadAllText(caPath)), $"'{caPath}' is not a PEM certificate", dir);
        X509Certificate2? certificate = null;
        try
        {
            using (var fromPem = LoadPem(
                () => X509Certificate2.CreateFromPemFile(certPath, keyPath),
                $"'{certPath}' and '{keyPath}' are not a PEM certificate and its private key",
                dir))
            {
                // A PEM-loaded key is ephemeral, which SslStream cannot use on some platforms; a PKCS#12 round trip
                // gives the certificate a key it can.
                certificate = X509CertificateLoader.LoadPkcs12(fromPem.Export(X509ContentType.Pkcs12), password: null);
            }

            var kind = CertificateAuthority.KindOf(certificate) ?? throw new CertificateException(
                $"'{certPath}' ({certificate.Subject}) is not a myDvpn node or admin certificate. " +
                $"Issue one with `mydvpn ca issue ... --out {dir}`.");
            NodeIdentity? identity = null;
            if (kind == CertificateKind.Node && !NodeIdentity.TryRead(certificate, out identity, out var identityProblem))
            {
                throw new CertificateException(
                    $"'{certPath}': {identityProblem}. Issue it again with `mydvpn ca issue --role base|super --name ID [--region REGION] --out {dir}`.");
            }

            var material = new TlsMaterial(certificate, ca, kind, identity);
            if (!material.ValidatePeer(certificate, requiredKind: null, out var reason))
            {
                throw new CertificateException(
                    $"'{certPath}' is not usable with '{caPath}': {reason}. Issue a new one with `mydvpn ca issue ... --out {dir}`.");
            }

            return material;
        }
        catch
        {
            certificate?.Dispose();
            ca.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Checks that <paramref name="peer"/> chains to <see cref="CaCertificate"/> and nothing else, is within its
    /// validity period and carries a myDvpn kind (<paramref name="requiredKind"/>, if given).
    /// </summary>
    public bool ValidatePeer(X509Certificate2 peer, CertificateKind? requiredKind, out string reason) =>
        trust.Validate(peer, requiredKind, out reason);

    /// <summary>See <see cref="OperatorCaTrust.ValidateIgnoringRevocation"/>.</summary>
    public bool ValidatePeerIgnoringRevocation(X509Certificate2 peer, CertificateKind? requiredKind, out string reason) =>
        trust.ValidateIgnoringRevocation(peer, requiredKind, out reason);

    /// <summary>See <see cref="OperatorCaTrust.ValidateNode"/>.</summary>
    public bool ValidateNode(X509Certificate2 peer, [NotNullWhen(true)] out NodeIdentity? identity, out string reason) =>
        trust.ValidateNode(peer, out identity, out reason);

    /// <summary>A <see cref="RemoteCertificateValidationCallback"/> for clients: see <see cref="OperatorCaTrust.ValidateServerCertificate"/>.</summary>
    public bool ValidateServerCertificate(object sender, X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors) =>
        trust.ValidateServerCertificate(sender, certificate, chain, errors);

    /// <summary>See <see cref="OperatorCaTrust.ValidateServerCertificate(X509Certificate?, out string)"/>.</summary>
    public bool ValidateServerCertificate(X509Certificate? certificate, out string reason) =>
        trust.ValidateServerCertificate(certificate, out reason);

    /// <summary>See <see cref="OperatorCaTrust.ValidateServerCertificate(X509Certificate?, ExpectedServer, out string)"/>.</summary>
    public bool ValidateServerCertificate(X509Certificate? certificate, ExpectedServer expected, out string reason) =>
        trust.ValidateServerCertificate(certificate, expected, out reason);

    public void Dispose()
    {
        Certificate.Dispose();
        CaCertificate.Dispose();
    }

    private static X509Certificate2 LoadPem(Func<X509Certificate2> load, string problem, string dir)
    {
        try
        {
            return load();
        }
        catch (Exception e) when (e is CryptographicException or ArgumentException) // ArgumentException: key mismatch.
        {
            throw new CertificateException(
                $"{problem} ({e.Message}). Issue the TLS material again with `mydvpn ca issue ... --out {dir}`.", e);
        }
    }
}
