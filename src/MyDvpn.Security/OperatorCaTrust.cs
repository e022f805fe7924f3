using System.Diagnostics.CodeAnalysis;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace MyDvpn.Security;

/// <summary>
/// Trust in the operator CA and nothing else: the check every TLS end of myDvpn makes of the other
/// (nodes of each other, admins and peers of a SuperNode). The system's roots do not count, and
/// host names are not checked, because certificates name nodes, not addresses. A certificate the operator revoked
/// (<paramref name="revocations"/>, when given) is refused too.
/// </summary>
public sealed class OperatorCaTrust(X509Certificate2 ca, CertificateRevocations? revocations = null)
{
    public X509Certificate2 Ca { get; } = ca;

    /// <summary>The revocation list this trust consults; null: none (a peer, which has no list).</summary>
    public CertificateRevocations? Revocations { get; } = revocations;

    /// <summary>Whether <paramref name="certificate"/> chains to the CA and is within its validity period.</summary>
    /// <param name="problem">Why not, in words ("was not issued by this network's CA …"); empty when it does.</param>
    public bool Chains(X509Certificate2 certificate, out string problem)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(Ca);
        // The platform does not fetch revocation lists: the operator's list is consulted by Validate, from memory.
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.DisableCertificateDownloads = true;
        problem = chain.Build(certificate) ? "" : Describe(certificate, chain.ChainStatus);
        return problem.Length == 0;
    }

    /// <summary>
    /// Checks that <paramref name="peer"/> chains to the CA, is within its validity period, carries a myDvpn kind
    /// (<paramref name="requiredKind"/>, if given) and is not revoked.
    /// </summary>
    public bool Validate(X509Certificate2 peer, CertificateKind? requiredKind, out string reason)
    {
        if (!ValidateIgnoringRevocation(peer, requiredKind, out reason))
            return false;
        if (Revocations?.Describe(peer) is { } revoked)
        {
            reason = revoked;
            return false;
        }

        return true;
    }

    /// <summary>
    /// <see cref="Validate"/> without the revocation list: for a TLS handshake whose caller is refused later with a
    /// reason it can read (a gRPC status), rather than with a failed handshake.
    /// </summary>
    public bool ValidateIgnoringRevocation(X509Certificate2 peer, CertificateKind? requiredKind, out string reason)
    {
        if (!Chains(peer, out var problem))
        {
            reason = $"certificate '{peer.Subject}' {problem}";
            return false;
        }

        var kind = CertificateAuthority.KindOf(peer);
        if (kind is null)
        {
            // Also what keeps the CA certificate itself from passing as a peer.
            reason = $"certificate '{peer.Subject}' has no myDvpn kind (OU={CertificateAuthority.NodeUnit} or OU={CertificateAuthority.AdminUnit})";
            return false;
        }

        if (requiredKind is not null && kind != requiredKind)
        {
            reason = $"certificate '{peer.Subject}' is a {kind} certificate where a {requiredKind} certificate is required";
            return false;
        }

        reason = "";
        return true;
    }

    /// <summary>
    /// Checks that <paramref name="peer"/> is a node certificate valid under the CA that names one well-formed node
    /// identity (<see cref="NodeIdentity.TryRead"/>), and returns that identity.
    /// </summary>
    public bool ValidateNode(X509Certificate2 peer, [NotNullWhen(true)] out NodeIdentity? identity, out string reason)
    {
        identity = null;
        return Validate(peer, CertificateKind.Node, out reason) && NodeIdentity.TryRead(peer, out identity, out reason);
    }

    /// <summary>
    /// A <see cref="RemoteCertificateValidationCallback"/> for clients: the server must present a node certificate
    /// valid under the CA, naming a node identity. The platform's verdict is ignored, since it checks the system roots
    /// and the host name.
    /// </summary>
    public bool ValidateServerCertificate(object sender, X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors) =>
        ValidateServerCertificate(certificate, out _);

    /// <summary>The check of <see cref="ValidateServerCertificate(object, X509Certificate?, X509Chain?, SslPolicyErrors)"/>, saying why not.</summary>
    public bool ValidateServerCertificate(X509Certificate? certificate, out string reason)
    {
        switch (certificate)
        {
            case null:
                reason = "no certificate presented";
                return false;
            case X509Certificate2 certificate2:
                return ValidateNode(certificate2, out _, out reason);
            default:
                using (var copy = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData()))
                {
                    return ValidateNode(copy, out _, out reason);
                }
        }
    }

    /// <summary>
    /// The check of a node-to-node client: <see cref="ValidateServerCertificate(X509Certificate?, out string)"/>, and the
    /// identity it names is the node the client meant to call (<paramref name="expected"/>).
    /// </summary>
    public bool ValidateServerCertificate(X509Certificate? certificate, ExpectedServer expected, out string reason)
    {
        switch (certificate)
        {
            case null:
                reason = "no certificate presented";
                return false;
            case X509Certificate2 certificate2:
                return ValidateNode(certificate2, out var identity, out reason) && expected.Admits(identity, out reason);
            default:
                using (var copy = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData()))
                {
                    return ValidateNode(copy, out var copied, out reason) && expected.Admits(copied, out reason);
                }
        }
    }

    private string Describe(X509Certificate2 peer, X509ChainStatus[] statuses)
    {
        var flags = statuses.Aggregate(X509ChainStatusFlags.NoError, (all, s) => all | s.Status);
        if (flags.HasFlag(X509ChainStatusFlags.NotTimeValid))
        {
            return $"is outside its validity period ({peer.NotBefore.ToUniversalTime():u} to {peer.NotAfter.ToUniversalTime():u})";
        }

        if (flags.HasFlag(X509ChainStatusFlags.PartialChain) || flags.HasFlag(X509ChainStatusFlags.UntrustedRoot))
        {
            // Every operator CA has the same subject, so name this one by its fingerprint.
            var fingerprint = Ca.GetCertHashString(HashAlgorithmName.SHA256)[..16];
            return $"was not issued by this network's CA ('{Ca.Subject}', SHA-256 {fingerprint}...)";
        }

        return "did not validate: " + string.Join("; ", statuses.Select(s => s.StatusInformation.Trim()).Distinct());
    }
}
