using System.Buffers.Binary;
using System.Text;

namespace MyDvpn.Security;

/// <summary>
/// What a peer signs to answer a SuperNode's challenge (ARCHITECTURE §3): a domain tag, then
/// <c>peer_id || role || region || challenge || supernode_id || server_certificate_sha256 || exit_offer_max_clients</c>, each prefixed with its
/// length (4 bytes, big-endian), so no two different field sets encode to the same bytes and a signature made for
/// anything else in the system can never pass for this one. The last field binds the login to the TLS channel: the
/// SHA-256 of the certificate the peer's TLS saw, which the SuperNode computes over its own, so a login relayed
/// through another server (another certificate) does not verify there. The last one is what the peer offers as an exit
/// (<c>AuthRequest.exit_offer.max_clients</c>, 4 bytes big-endian; 0 without an offer): the region's exit pool gives
/// it clients by that number, so it is the peer's word too.
/// </summary>
public static class PeerAuthTranscript
{
    /// <summary>
    /// v3: with the exit offer. v2 had none (and v1 no channel binding either): an older peer's signature never verifies
    /// as v3, so a peer older than its SuperNode is refused (<c>BAD_SIGNATURE</c>) until it is upgraded.
    /// </summary>
    public static ReadOnlySpan<byte> DomainTag => "mydvpn/peer-auth/v3"u8;

    public const int CertificateHashLength = 32;

    /// <param name="serverCertificateSha256">SHA-256 of the server certificate (DER) the stream runs over.</param>
    /// <param name="exitOfferMaxClients">The request's <c>exit_offer.max_clients</c>; 0 when it carries no offer.</param>
    public static byte[] Encode(string peerId, int role, string region, ReadOnlySpan<byte> challenge, string superNodeId,
        ReadOnlySpan<byte> serverCertificateSha256, uint exitOfferMaxClients = 0)
    {
        if (serverCertificateSha256.Length != CertificateHashLength)
        {
            throw new ArgumentException(
                $"the channel binding is a SHA-256 of {CertificateHashLength} bytes, got {serverCertificateSha256.Length}",
                nameof(serverCertificateSha256));
        }

        Span<byte> roleBytes = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(roleBytes, role);
        Span<byte> offerBytes = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(offerBytes, exitOfferMaxClients);
        using var buffer = new MemoryStream();
        Write(buffer, DomainTag);
        Write(buffer, Encoding.UTF8.GetBytes(peerId));
        Write(buffer, roleBytes);
        Write(buffer, Encoding.UTF8.GetBytes(region));
        Write(buffer, challenge);
        Write(buffer, Encoding.UTF8.GetBytes(superNodeId));
        Write(buffer, serverCertificateSha256);
        Write(buffer, offerBytes);
        return buffer.ToArray();
    }

    private static void Write(MemoryStream buffer, ReadOnlySpan<byte> field)
    {
        Span<byte> length = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(length, field.Length);
        buffer.Write(length);
        buffer.Write(field);
    }
}
