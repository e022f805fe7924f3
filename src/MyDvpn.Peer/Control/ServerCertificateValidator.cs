using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using MyDvpn.Security;

namespace MyDvpn.Peer.Control;

/// <summary>
/// The certificate a SuperNode presented on a stream: whom it names, and its SHA-256 (DER), which the peer's login is
/// bound to (<see cref="PeerAuthTranscript"/>), and its serial number, which a revocation list names.
/// </summary>
public sealed record ServerCertificate(NodeIdentity Identity, byte[] Sha256, string Serial);

/// <summary>
/// Decides whether a SuperNode's TLS certificate is trusted: it must chain to the operator CA given with
/// <c>--ca</c> (and nothing else: the system's roots do not count), not be revoked by the revocation list the peer holds
/// (<paramref name="revocations"/>, when given), and name a SuperNode of the peer's own region (<see cref="NodeIdentity"/>). The host name is not checked: peers dial SuperNodes by whatever address the region lists.
/// That the SuperNode is the one whose id the challenge names is checked when the challenge comes
/// (<see cref="ConnectionMachine"/>).
/// </summary>
public sealed class ServerCertificateValidator(X509Certificate2 ca, string region, CertificateRevocations? revocations = null)
{
    private readonly OperatorCaTrust trust = new(ca);

    /// <summary>The number of the revocation list the peer holds; 0: none (the SuperNode then sends its own).</summary>
    public ulong RevocationListNumber => revocations?.Number ?? 0;

    /// <summary>Why <paramref name="server"/> is refused by the list held now (null: it is not), for a stream accepted before a newer list came.</summary>
    public string? Revoked(ServerCertificate server) =>
        revocations?.Current is { } list && list.Find(server.Serial) is { } revoked
            ? $"the SuperNode's certificate (serial {revoked.Serial}) was revoked at {revoked.RevokedAt:u} ({revoked.ReasonText}; CRL number {list.Number})"
            : null;

    public bool Validate(X509Certificate2 certificate, out ServerCertificate? server, out string reason)
    {
        server = null;
        if (!trust.Chains(certificate, out var problem))
        {
            reason = $"the SuperNode's certificate '{certificate.Subject}' does not chain to the CA given with --ca (it {problem})";
            return false;
        }
        if (revocations?.Describe(certificate) is { } revoked)
        {
            reason = $"the SuperNode's {revoked}";
            return false;
        }
        if (CertificateAuthority.KindOf(certificate) != CertificateKind.Node)
        {
            reason = $"the SuperNode's certificate '{certificate.Subject}' is not a myDvpn node certificate";
            return false;
        }
        if (!NodeIdentity.TryRead(certificate, out var identity, out problem))
        {
            reason = $"the SuperNode's {problem}";
            return false;
        }
        if (identity.Role != NodeRole.Super || identity.Region != region)
        {
            reason = $"the server's certificate names {identity} ({identity.Uri}), not a SuperNode of this peer's region {region}";
            return false;
        }
        server = new ServerCertificate(identity, SHA256.HashData(certificate.RawData), CertificateRevocationList.SerialOf(certificate));
        reason = "";
        return true;
    }

    /// <summary>
    /// A callback for <see cref="SslClientAuthenticationOptions"/>; <paramref name="rejected"/> hears why a certificate was
    /// refused, <paramref name="accepted"/> which one was accepted.
    /// </summary>
    public RemoteCertificateValidationCallback Callback(Action<string> rejected, Action<ServerCertificate> accepted) => (_, certificate, _, _) =>
    {
        if (certificate is null)
        {
            rejected("the SuperNode presented no certificate");
            return false;
        }
        using var copy = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        if (Validate(copy, out var server, out var reason))
        {
            accepted(server!);
            return true;
        }
        rejected(reason);
        return false;
    };
}
