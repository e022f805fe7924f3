using System.Buffers;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;

namespace MyDvpn.SuperNode.Relay;

/// <summary>
/// One UDP port of <c>--relay-ports</c> holding one peer's side of one relayed assignment (ARCHITECTURE §4 Relay).
/// Datagrams from the peer go to the partner (the other leg of the chain), datagrams from the partner go to the peer;
/// anything else is dropped and counted. The leg only moves WireGuard's ciphertext: it never decrypts. It sends to its
/// peer only once the peer sent to it from the peer's address, and then to the port that datagram came from: an
/// endpoint someone claims for the peer is never sent to unheard, so a leg cannot be aimed at a third party's host.
/// </summary>
/// <remarks>
/// On Linux the legs of a <see cref="RelayService"/> share a few forwarding threads (<see cref="RelaySettings.ForwardingThreads"/>,
/// see <see cref="Forwarder"/>): each waits on its legs' sockets with epoll and moves a leg's queued datagrams with one
/// <c>recvmmsg</c> and one <c>sendmmsg</c>. Elsewhere (or with 0 threads) one async receive loop per leg reads into a
/// buffer rented once and a reused <see cref="SocketAddress"/>. Either way the source is compared in place and the
/// datagram leaves from the same socket, so forwarding allocates nothing per datagram.
/// </remarks>
public sealed partial class RelayLeg
{
    /// <summary>Who the peer is. Replaced whole when the leg is re-targeted; its endpoint is written by the loop only.</summary>
    private sealed class PeerTarget(IPAddress address, IPEndPoint? claimed)
    {
        public IPAddress Address { get; } = address;
        /// <summary>Where the peer is said to listen (an exit's WireGuard endpoint): never sent to before the peer was heard.</summary>
        public IPEndPoint? Claimed { get; } = claimed;
        public byte[] AddressBytes { get; } = address.GetAddressBytes();
        /// <summary>Where datagrams for the peer go: learned from the peer's first datagram from its address; null until then.</summary>
        public SocketAddress? Endpoint { get; set; }
        public volatile IPEndPoint? EndpointSeen;
        /// <summary>When <see cref="Endpoint"/> last sent; 0: never, so the peer's address on any port takes over.</summary>
        public long LastHeardTicks { get; set; }
    }

    /// <summary>The other leg of the chain; <see cref="Address"/> is where it is sent to and must send from.</summary>
    private sealed class PartnerTarget(IPEndPoint announced, IPEndPoint actual)
    {
        public IPEndPoint Announced { get; } = announced;
        public IPEndPoint Actual { get; } = actual;
        public SocketAddress Address { get; } = actual.Serialize();
    }

    private readonly Socket socket;
    private readonly Forwarder? forwarder;
    private readonly RelaySettings settings;
    private readonly TimeProvider time;
    private readonly ILogger logger;
    private readonly long openedTicks;
    private readonly long rebindTicks;
    private volatile PeerTarget peer;
    private volatile PartnerTarget? partner;
    private volatile bool closing;
    private Task loop = Task.CompletedTask;
    private Forwarder.Worker? worker;
    private int descriptor;
    private GCHandle handle;
    private long packetsToPeer, bytesToPeer, packetsToPartner, bytesToPartner, dropped, lastForwardTicks;

    /// <param name="forwarder">The relay's forwarding threads; null: the leg runs an async receive loop of its own.</param>
    internal RelayLeg(string assignmentId, string side, Socket socket, IPEndPoint endpoint, IPAddress peerAddress, IPEndPoint? peerEndpoint,
        RelaySettings settings, TimeProvider time, ILogger logger, Forwarder? forwarder)
    {
        this.forwarder = forwarder;
        AssignmentId = assignmentId;
        Side = side;
        Endpoint = endpoint;
        this.socket = socket;
        this.settings = settings;
        this.time = time;
        this.logger = logger;
        openedTicks = time.GetUtcNow().UtcTicks;
        rebindTicks = settings.PeerRebindAfter.Ticks;
        peer = Target(peerAddress, peerEndpoint);
        SetBuffers(socket, settings.SocketBufferBytes, logger);
    }

    public string AssignmentId { get; }

    /// <summary><c>client</c> or <c>exit</c> (<see cref="RelaySides"/>).</summary>
    public string Side { get; }

    public int Port => Endpoint.Port;

    /// <summary>Where the peer's WireGuard and the partner leg send to: the SuperNode's public IP and this leg's port.</summary>
    public IPEndPoint Endpoint { get; }

    /// <summary>
    /// Called (on the thread that forwards) when the leg learned its peer's port or the peer moved to another one: the
    /// relay's kernel forwarding follows it.
    /// </summary>
    internal Action<RelayLeg>? PeerMoved { get; set; }

    /// <summary>
    /// What the kernel needs to forward for this leg (<see cref="RelayOffload"/>): its peer's endpoint and its partner,
    /// both IPv4; null until both are known.
    /// </summary>
    internal OffloadedLeg? OffloadTarget() =>
        peer.EndpointSeen is { AddressFamily: AddressFamily.InterNetwork } peerEndpoint
        && partner?.Actual is { AddressFamily: AddressFamily.InterNetwork } partnerEndpoint
            ? new OffloadedLeg(Port, peerEndpoint, partnerEndpoint)
            : null;

    /// <summary>
    /// Datagrams the kernel forwarded for the leg since the last reading: counted as the leg's own, and the peer counts
    /// as heard (a datagram from its address on another port may take over only after it went silent).
    /// </summary>
    internal void KernelForwarded(OffloadCounters delta, long now)
    {
        Forwarded(true, delta.PacketsToPeer, delta.BytesToPeer, now);
        Forwarded(false, delta.PacketsToPartner, delta.BytesToPartner, now);
        if (delta.PacketsToPartner > 0)
            peer.LastHeardTicks = now;
    }

    public RelayLegStatus Status()
    {
        var target = peer;
        var lastForward = Volatile.Read(ref lastForwardTicks);
        return new RelayLegStatus(AssignmentId, Side, Port, Endpoint, target.Address, target.EndpointSeen, partner?.Announced,
            Interlocked.Read(ref packetsToPeer), Interlocked.Read(ref bytesToPeer),
            Interlocked.Read(ref packetsToPartner), Interlocked.Read(ref bytesToPartner), Interlocked.Read(ref dropped),
            new DateTimeOffset(openedTicks, TimeSpan.Zero), lastForward == 0 ? null : new DateTimeOffset(lastForward, TimeSpan.Zero));
    }

    internal void Start()
    {
        if (forwarder is not null)
        {
            try
            {
                worker = forwarder.Add(this);
                return;
            }
            catch (IOException ex)
            {
                logger.LogWarning("Relay leg {AssignmentId}/{Side} on port {Port} forwards with an async loop: {Error}", AssignmentId, Side, Port, ex.Message);
            }
        }
        loop = Task.Run(ReceiveLoopAsync);
    }

    /// <summary>Whether the leg already serves this peer as given; if not, it serves it from now on (port and partner kept).</summary>
    internal bool Retarget(IPAddress peerAddress, IPEndPoint? peerEndpoint)
    {
        var wanted = Target(peerAddress, peerEndpoint);
        var current = peer;
        if (current.Address.Equals(wanted.Address) && Equals(current.Claimed, wanted.Claimed))
            return true;
        peer = wanted;
        return false;
    }

    /// <param name="announced">The partner as the caller named it.</param>
    /// <param name="actual">Where it is reached and sends from (differs for a leg of this SuperNode bound to another address).</param>
    internal void SetPartner(IPEndPoint announced, IPEndPoint actual) =>
        partner = new PartnerTarget(announced, new IPEndPoint(UdpAddress.ForSocket(actual.Address, socket, "partner"), actual.Port));

    /// <summary>The peer as this leg's socket sees it (an IPv4-mapped address unmapped, and the like).</summary>
    private PeerTarget Target(IPAddress peerAddress, IPEndPoint? peerEndpoint) =>
        new(UdpAddress.ForSocket(peerAddress, socket, nameof(peerAddress)),
            peerEndpoint is null ? null : new IPEndPoint(UdpAddress.ForSocket(peerEndpoint.Address, socket, nameof(peerEndpoint)), peerEndpoint.Port));

    internal bool IsIdle(long nowTicks, long idleTicks) =>
        nowTicks - Math.Max(openedTicks, Volatile.Read(ref lastForwardTicks)) >= idleTicks;

    /// <summary>Closes the socket (freeing the port) once nothing forwards for the leg any more.</summary>
    internal async Task CloseAsync()
    {
        closing = true;
        if (worker is { } forwarding)
        {
            // The socket stays open until its thread let go of it: its descriptor cannot be reused under it.
            await forwarding.RemoveAsync(this).ConfigureAwait(false);
            socket.Dispose();
            return;
        }
        socket.Dispose();
        await loop.ConfigureAwait(false);
    }

    private async Task ReceiveLoopAsync()
    {
        var size = settings.DatagramBufferSize;
        var buffer = ArrayPool<byte>.Shared.Rent(size);
        var received = new SocketAddress(socket.AddressFamily);
        try
        {
            while (true)
            {
                int length;
                try
                {
                    received.Size = received.Buffer.Length;
                    length = await socket.ReceiveFromAsync(buffer.AsMemory(0, size), SocketFlags.None, received).ConfigureAwait(false);
                }
                catch (SocketException ex) when (ex.SocketErrorCode == SocketError.MessageSize)
                {
                    Drop(RelayDropReason.Oversize);
                    continue;
                }
                catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset && !closing)
                {
                    // Windows reports an earlier send's ICMP port-unreachable on the next receive: nothing was received.
                    continue;
                }
                catch (Exception ex) when (closing && ex is ObjectDisposedException or SocketException or OperationCanceledException)
                {
                    return;
                }

                if (length == size)
                {
                    // Linux truncates a datagram larger than the buffer without saying so: one that fills it may be cut.
                    Drop(RelayDropReason.Oversize);
                    continue;
                }
                var now = time.GetUtcNow().UtcTicks;
                var to = Route(received, now, out var toPeer);
                if (to is null)
                    continue;
                try
                {
                    await socket.SendToAsync(buffer.AsMemory(0, length), SocketFlags.None, to).ConfigureAwait(false);
                }
                catch (SocketException ex) when (!closing)
                {
                    Drop(RelayDropReason.SendFailed);
                    if (logger.IsEnabled(LogLevel.Debug))
                        logger.LogDebug("Relay leg {AssignmentId}/{Side} on port {Port} could not send {Direction}: {Error}",
                            AssignmentId, Side, Port, toPeer ? "to its peer" : "to its partner", ex.SocketErrorCode);
                    continue;
                }
                catch (Exception ex) when (closing && ex is ObjectDisposedException or SocketException)
                {
                    return;
                }
                Forwarded(toPeer, 1, length, now);
            }
        }
        catch (Exception ex)
        {
            logger.LogError(ex, "Relay leg {AssignmentId}/{Side} on port {Port} stopped forwarding", AssignmentId, Side, Port);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// Where a datagram from <paramref name="from"/> goes, or null (dropped and counted). A datagram that goes somewhere
    /// marks the leg in use now, before it is sent: whoever receives it must find the leg active (an idle sweep right
    /// after must not close it). Its packet and byte counts follow once the send returned.
    /// </summary>
    private SocketAddress? Route(SocketAddress from, long now, out bool toPeer)
    {
        var chained = partner;
        var target = peer;
        if (chained is not null && UdpAddress.SameEndpoint(from, chained.Address))
        {
            toPeer = true;
            if (target.Endpoint is { } peerEndpoint)
            {
                Volatile.Write(ref lastForwardTicks, now);
                return peerEndpoint;
            }
            // The peer has not sent yet: nothing goes to it, not even to an endpoint claimed for it.
            Drop(target.Claimed is null ? RelayDropReason.PeerPortUnknown : RelayDropReason.PeerNotHeard);
            return null;
        }

        toPeer = false;
        if (target.Endpoint is not { } known || !UdpAddress.SameEndpoint(from, known))
        {
            if (!UdpAddress.IsFrom(from, target.AddressBytes))
            {
                Drop(RelayDropReason.UnknownSource);
                return null;
            }
            if (target.Endpoint is not null && target.LastHeardTicks != 0 && now - target.LastHeardTicks < rebindTicks)
            {
                Drop(RelayDropReason.WrongPort);
                return null;
            }
            Learn(target, from);
        }
        target.LastHeardTicks = now;
        if (chained is not null)
        {
            Volatile.Write(ref lastForwardTicks, now);
            return chained.Address;
        }
        Drop(RelayDropReason.NoPartner);
        return null;
    }

    /// <summary>The peer's port, from its first datagram (or a rebound NAT mapping): allocates, but once per peer port.</summary>
    private void Learn(PeerTarget target, SocketAddress from)
    {
        var previous = target.EndpointSeen;
        target.Endpoint = UdpAddress.Copy(from);
        var seen = UdpAddress.ToEndPoint(from);
        target.EndpointSeen = seen;
        if (previous is null)
            logger.LogInformation("Relay leg {AssignmentId}/{Side} on port {Port} learned its peer at {PeerEndpoint}", AssignmentId, Side, Port, seen);
        else
            logger.LogInformation("Relay leg {AssignmentId}/{Side} on port {Port}: peer moved from {Previous} to {PeerEndpoint}",
                AssignmentId, Side, Port, previous, seen);
        PeerMoved?.Invoke(this);
    }

    private void Forwarded(bool toPeer, long packets, long bytes, long now)
    {
        if (packets == 0)
            return;
        if (toPeer)
        {
            Interlocked.Add(ref packetsToPeer, packets);
            Interlocked.Add(ref bytesToPeer, bytes);
            RelayMetrics.PacketsToPeer.Inc(packets);
            RelayMetrics.BytesToPeer.Inc(bytes);
        }
        else
        {
            Interlocked.Add(ref packetsToPartner, packets);
            Interlocked.Add(ref bytesToPartner, bytes);
            RelayMetrics.PacketsToPartner.Inc(packets);
            RelayMetrics.BytesToPartner.Inc(bytes);
        }
        Volatile.Write(ref lastForwardTicks, now);
    }

    private void Drop(RelayDropReason reason)
    {
        Interlocked.Increment(ref dropped);
        RelayMetrics.DroppedFor(reason).Inc();
    }

    private const int SolSocket = 1, SoSendBufferForce = 32, SoReceiveBufferForce = 33;
    private static int buffersReported;

    /// <summary>
    /// Sizes the socket's kernel buffers (<see cref="RelaySettings.SocketBufferBytes"/>): forced past the system's cap
    /// where the process may (Linux, CAP_NET_ADMIN), else as far as the cap allows. Says once per process what it got.
    /// </summary>
    private static void SetBuffers(Socket socket, int bytes, ILogger logger)
    {
        if (bytes == 0)
            return;
        Span<byte> value = stackalloc byte[sizeof(int)];
        BitConverter.TryWriteBytes(value, bytes);
        var forced = OperatingSystem.IsLinux();
        try
        {
            if (!(forced && TrySetRaw(socket, SoReceiveBufferForce, value)))
            {
                forced = false;
                socket.ReceiveBufferSize = bytes;
            }
            if (!(forced && TrySetRaw(socket, SoSendBufferForce, value)))
            {
                forced = false;
                socket.SendBufferSize = bytes;
            }
        }
        catch (SocketException ex)
        {
            if (Interlocked.Exchange(ref buffersReported, 1) == 0)
                logger.LogWarning("Relay leg sockets keep the system's buffer sizes: {Bytes} bytes (Super:Relay:SocketBufferBytes) refused: {Error}",
                    bytes, ex.SocketErrorCode);
            return;
        }
        if (Interlocked.Exchange(ref buffersReported, 1) != 0)
            return;
        // Linux reports twice what was set: the other half is its accounting of the datagrams' overhead.
        var (receive, send) = (socket.ReceiveBufferSize, socket.SendBufferSize);
        if (receive < bytes || send < bytes)
            logger.LogWarning(
                "Relay leg sockets got a receive buffer of {ReceiveBytes} and a send buffer of {SendBytes} bytes for {Bytes} asked (Super:Relay:SocketBufferBytes): " +
                "the system caps them at net.core.rmem_max and wmem_max unless the process has CAP_NET_ADMIN", receive, send, bytes);
        else
            logger.LogInformation("Relay leg sockets: receive buffer {ReceiveBytes} bytes, send buffer {SendBytes} bytes{How}", receive, send,
                forced ? " (forced past net.core.rmem_max/wmem_max)" : "");
    }

    private static bool TrySetRaw(Socket socket, int option, ReadOnlySpan<byte> value)
    {
        try
        {
            socket.SetRawSocketOption(SolSocket, option, value);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }
}

/// <summary>A relay leg as admin and status output show it.</summary>
/// <param name="PeerEndpoint">The peer's endpoint as learned from its datagrams (where the leg sends to it); null until it sent.</param>
/// <param name="Partner">The other leg of the chain; null until set.</param>
/// <param name="LastPacketAt">The last datagram forwarded either way; null: none yet.</param>
public sealed record RelayLegStatus(
    string AssignmentId,
    string Side,
    int Port,
    IPEndPoint Endpoint,
    IPAddress PeerAddress,
    IPEndPoint? PeerEndpoint,
    IPEndPoint? Partner,
    long PacketsToPeer,
    long BytesToPeer,
    long PacketsToPartner,
    long BytesToPartner,
    long Dropped,
    DateTimeOffset OpenedAt,
    DateTimeOffset? LastPacketAt);
