using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace MyDvpn.SuperNode.Relay;

/// <summary>
/// Reads a received <see cref="SocketAddress"/> in place, so the relay's hot path compares sources without creating
/// <see cref="IPEndPoint"/>s. sockaddr_in and sockaddr_in6 put the port (network order) at byte 2 and the address at
/// byte 4 (IPv4) or 8 (IPv6) on Linux, Windows and the BSDs alike (the BSDs' sin_len/sin_family bytes keep the offsets).
/// </summary>
internal static class UdpAddress
{
    private const int PortOffset = 2;

    private static int AddressOffset(AddressFamily family) => family == AddressFamily.InterNetwork ? 4 : 8;

    private static int AddressLength(AddressFamily family) => family == AddressFamily.InterNetwork ? 4 : 16;

    /// <summary>Whether <paramref name="address"/> (a socket address of the family of <paramref name="ip"/>) is from <paramref name="ip"/>.</summary>
    public static bool IsFrom(SocketAddress address, ReadOnlySpan<byte> ip)
    {
        var offset = ip.Length == 4 ? 4 : 8;
        return address.Size >= offset + ip.Length && address.Buffer.Span.Slice(offset, ip.Length).SequenceEqual(ip);
    }

    /// <summary>Same family, port and address (flow label and padding are not compared).</summary>
    public static bool SameEndpoint(SocketAddress a, SocketAddress b)
    {
        if (a.Family != b.Family)
            return false;
        var span = a.Buffer.Span;
        var other = b.Buffer.Span;
        var offset = AddressOffset(a.Family);
        var length = AddressLength(a.Family);
        return a.Size >= offset + length && b.Size >= offset + length
            && span[PortOffset] == other[PortOffset] && span[PortOffset + 1] == other[PortOffset + 1]
            && span.Slice(offset, length).SequenceEqual(other.Slice(offset, length));
    }

    /// <summary>A copy that outlives the receive buffer it was read into.</summary>
    public static SocketAddress Copy(SocketAddress address)
    {
        var copy = new SocketAddress(address.Family, address.Size);
        address.Buffer.Span[..address.Size].CopyTo(copy.Buffer.Span);
        return copy;
    }

    public static IPEndPoint ToEndPoint(SocketAddress address)
    {
        var span = address.Buffer.Span;
        var ip = new IPAddress(span.Slice(AddressOffset(address.Family), AddressLength(address.Family)));
        return new IPEndPoint(ip, BinaryPrimitives.ReadUInt16BigEndian(span[PortOffset..]));
    }

    /// <summary>
    /// <paramref name="address"/> as <paramref name="socket"/> sees it: an IPv4-mapped IPv6 address (as Kestrel reports a
    /// dual-stack peer) becomes IPv4 for an IPv4 socket; IPv4 becomes mapped for a dual-mode IPv6 one.
    /// </summary>
    public static IPAddress ForSocket(IPAddress address, Socket socket, string name)
    {
        if (socket.AddressFamily == AddressFamily.InterNetwork)
        {
            if (address.AddressFamily == AddressFamily.InterNetwork)
                return address;
            if (address.IsIPv4MappedToIPv6)
                return address.MapToIPv4();
        }
        else if (address.AddressFamily == AddressFamily.InterNetworkV6)
            return address;
        else if (socket.DualMode)
            return address.MapToIPv6();
        throw new ArgumentException($"{address} cannot reach a relay leg bound to {socket.LocalEndPoint}.", name);
    }
}
