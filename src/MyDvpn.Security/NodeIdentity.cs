using System.Diagnostics.CodeAnalysis;
using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using MyDvpn.Common;

namespace MyDvpn.Security;

/// <summary>What kind of node a node certificate was issued to.</summary>
public enum NodeRole
{
    /// <summary>A BaseNode: the directory and the admin API.</summary>
    Base,

    /// <summary>A SuperNode of one region.</summary>
    Super,
}

/// <summary>
/// Who a node certificate was issued to: its role, its id and (a SuperNode's) region, carried as one subject
/// alternative name URI — <c>mydvpn://base/ID</c> or <c>mydvpn://super/REGION/ID</c>. Services compare what a caller
/// claims (a SuperNode id, a region) with this, never with the certificate's CN.
/// </summary>
public sealed record NodeIdentity
{
    public const string UriScheme = "mydvpn";

    private const string Prefix = UriScheme + "://";
    private const string SubjectAltNameOid = "2.5.29.17";
    private static readonly Asn1Tag UriTag = new(TagClass.ContextSpecific, 6);

    private NodeIdentity(NodeRole role, string id, string? region)
    {
        Role = role;
        Id = id;
        Region = region;
    }

    public NodeRole Role { get; }

    /// <summary>The node's id (a SuperNode's <c>--id</c>; a BaseNode's name).</summary>
    public string Id { get; }

    /// <summary>A SuperNode's region; null for a BaseNode.</summary>
    public string? Region { get; }

    /// <summary>The identity of BaseNode <paramref name="id"/>; throws <see cref="CertificateException"/> for an invalid id.</summary>
    public static NodeIdentity Base(string id) => new(NodeRole.Base, CheckId(id), null);

    /// <summary>The identity of SuperNode <paramref name="id"/> of <paramref name="region"/>; throws <see cref="CertificateException"/> for invalid values.</summary>
    public static NodeIdentity Super(string id, string region)
    {
        if (!RegionName.IsValid(region, out var problem))
            throw new CertificateException($"Invalid SuperNode region: {problem}.");
        return new(NodeRole.Super, CheckId(id), region);
    }

    /// <summary>The subject alternative name URI: <c>mydvpn://base/ID</c> or <c>mydvpn://super/REGION/ID</c>.</summary>
    public string Uri => Role == NodeRole.Base ? $"{Prefix}base/{Id}" : $"{Prefix}super/{Region}/{Id}";

    /// <summary>Whether this node and <paramref name="other"/> may be members of the same cluster: the same role and region.</summary>
    public bool SharesClusterWith(NodeIdentity other) => Role == other.Role && Region == other.Region;

    public override string ToString() => Role == NodeRole.Base ? $"BaseNode {Id}" : $"SuperNode {Id} of region {Region}";

    /// <summary>Parses a node identity URI; <paramref name="problem"/> says what is wrong with it otherwise.</summary>
    public static bool TryParse(string? uri, [NotNullWhen(true)] out NodeIdentity? identity, out string problem)
    {
        identity = null;
        const string Shapes = $"expected {Prefix}base/ID or {Prefix}super/REGION/ID";
        if (uri is null || !uri.StartsWith(Prefix, StringComparison.Ordinal))
        {
            problem = $"'{uri}' is not a myDvpn node identity: {Shapes}";
            return false;
        }

        var parts = uri[Prefix.Length..].Split('/');
        switch (parts)
        {
            case ["base", var id]:
                if (!NodeId.IsValid(id, out var idProblem))
                {
                    problem = $"'{uri}': the BaseNode id '{id}' {idProblem}";
                    return false;
                }

                identity = new(NodeRole.Base, id, null);
                break;
            case ["super", var region, var id]:
                if (!RegionName.IsValid(region, out var regionProblem))
                {
                    problem = $"'{uri}': {regionProblem}";
                    return false;
                }

                if (!NodeId.IsValid(id, out idProblem))
                {
                    problem = $"'{uri}': the SuperNode id '{id}' {idProblem}";
                    return false;
                }

                identity = new(NodeRole.Super, id, region);
                break;
            default:
                problem = $"'{uri}' is not a myDvpn node identity: {Shapes}";
                return false;
        }

        problem = "";
        return true;
    }

    /// <summary>
    /// Reads the node identity of <paramref name="certificate"/>: exactly one subject alternative name URI of the
    /// <c>mydvpn</c> scheme, well formed. A certificate with none, a malformed one, or two (which no CA of ours issues)
    /// has none, and <paramref name="problem"/> says which.
    /// </summary>
    public static bool TryRead(X509Certificate2 certificate, [NotNullWhen(true)] out NodeIdentity? identity, out string problem)
    {
        identity = null;
        List<string> uris;
        try
        {
            uris = [.. MyDvpnUris(certificate)];
        }
        catch (Exception e) when (e is AsnContentException or CryptographicException)
        {
            problem = $"certificate '{certificate.Subject}' has an unreadable subject alternative name ({e.Message})";
            return false;
        }

        switch (uris.Count)
        {
            case 0:
                problem = $"certificate '{certificate.Subject}' names no node identity (no {Prefix}… subject alternative name): " +
                    "it was issued before node identities; issue a new one with `mydvpn ca issue --role base|super …`";
                return false;
            case > 1:
                problem = $"certificate '{certificate.Subject}' names {uris.Count} node identities ({string.Join(", ", uris)}); it is refused";
                return false;
        }

        if (!TryParse(uris[0], out identity, out var parseProblem))
        {
            problem = $"certificate '{certificate.Subject}' has a malformed node identity: {parseProblem}";
            return false;
        }

        problem = "";
        return true;
    }

    /// <summary>Adds this identity's URI to a subject alternative name.</summary>
    internal void AddTo(SubjectAlternativeNameBuilder builder) => builder.AddUri(new System.Uri(Uri, UriKind.Absolute));

    private static IEnumerable<string> MyDvpnUris(X509Certificate2 certificate)
    {
        foreach (var extension in certificate.Extensions)
        {
            if (extension.Oid?.Value != SubjectAltNameOid)
                continue;
            var reader = new AsnReader(extension.RawData, AsnEncodingRules.DER);
            var names = reader.ReadSequence();
            reader.ThrowIfNotEmpty();
            while (names.HasData)
            {
                if (names.PeekTag() == UriTag)
                {
                    var uri = names.ReadCharacterString(UniversalTagNumber.IA5String, UriTag);
                    if (uri.StartsWith(UriScheme + ":", StringComparison.OrdinalIgnoreCase))
                        yield return uri;
                }
                else
                {
                    names.ReadEncodedValue();
                }
            }
        }
    }

    private static string CheckId(string id) =>
        NodeId.IsValid(id, out var problem) ? id : throw new CertificateException($"Invalid node id '{id}': it {problem}.");
}
