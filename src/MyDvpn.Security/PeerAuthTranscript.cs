using System.Buffers.Binary;
using System.Text;

namespace MyDvpn.Security;

/// <summary>
/// What a peer signs to answer a SuperNode's challenge (ARCHITECTURE §3): a domain tag, then
/// <c>peer_id || role || region || challenge || supernode_id</c>, each prefixed with its length
/// (4 bytes, big-endian), so no two different field sets encode to the same bytes and a signature
/// made for anything else in the system can never pass for this one.
/// </summary>
public static class PeerAuthTranscript
{
    public static ReadOnlySpan<byte> DomainTag => "mydvpn/peer-auth/v1"u8;

    public static byte[] Encode(string peerId, int role, string region, ReadOnlySpan<byte> challenge, string superNodeId)
    {
        Span<byte> roleBytes = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(roleBytes, role);
        using var buffer = new MemoryStream();
        Write(buffer, DomainTag);
        Write(buffer, Encoding.UTF8.GetBytes(peerId));
        Write(buffer, roleBytes);
        Write(buffer, Encoding.UTF8.GetBytes(region));
        Write(buffer, challenge);
        Write(buffer, Encoding.UTF8.GetBytes(superNodeId));
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
