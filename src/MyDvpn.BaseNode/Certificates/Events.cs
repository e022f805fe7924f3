namespace MyDvpn.BaseNode.Certificates;

/// <summary>The operator published a certificate revocation list (DER) with a higher CRL number than the last.</summary>
public sealed record CrlPublished(ulong Number, byte[] Der, DateTimeOffset At);
