namespace MyDvpn.Security;

/// <summary>What a certificate issued by the operator CA may be used for.</summary>
public enum CertificateKind
{
    /// <summary>A base or super node: serves TLS and connects to other nodes.</summary>
    Node,

    /// <summary>An operator tool: connects as a client only.</summary>
    Admin,
}
