using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using MyDvpn.Security;

namespace MyDvpn.Peer.Control;

/// <summary>
/// Decides whether a SuperNode's TLS certificate is trusted: it must chain to the operator CA given with
/// <c>--ca</c> (and nothing else: the system's roots do not count) and be a myDvpn node certificate. The host
/// name is not checked: peers dial SuperNodes by whatever address the region lists.
/// </summary>
public sealed class ServerCertificateValidator(X509Certificate2 ca)
{
    private readonly OperatorCaTrust trust = new(ca);

    public bool Validate(X509Certificate2 certificate, out string reason)
    {
        if (!trust.Chains(certificate, out var problem))
        {
            reason = $"the SuperNode's certificate '{certificate.Subject}' does not chain to the CA given with --ca (it {problem})";
            return false;
        }
        if (CertificateAuthority.KindOf(certificate) != CertificateKind.Node)
        {
            reason = $"the SuperNode's certificate '{certificate.Subject}' is not a myDvpn node certificate";
            return false;
        }
        reason = "";
        return true;
    }

    /// <summary>A callback for <see cref="SslClientAuthenticationOptions"/>; <paramref name="rejected"/> hears why a certificate was refused.</summary>
    public RemoteCertificateValidationCallback Callback(Action<string> rejected) => (_, certificate, _, _) =>
    {
        if (certificate is null)
        {
            rejected("the SuperNode presented no certificate");
            return false;
        }
        using var copy = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        if (Validate(copy, out var reason))
            return true;
        rejected(reason);
        return false;
    };
}
