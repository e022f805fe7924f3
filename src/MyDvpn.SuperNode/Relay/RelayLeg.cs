using System.Buffers;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;

namespace MyDvpn.SuperNode.Relay;

/// <summary>
/// One UDP port of <c>--relay-ports</c> holding one peer's side of one relayed assignment (ARCHITECTURE §4 Relay).
/// Datagrams from the peer go to the partner (the other leg of the chain), datagrams from the partner go to the peer;
/// anything else is dropped and counted. The leg only moves WireGuard's ciphertext: it never decrypts.
/// </summary>
/// <remarks>
/// One receive loop per leg reads into a buffer rented once and a reused <see cref="SocketAddress"/>, compares the
/// source in place and sends from the same socket, so forwarding allocates nothing per datagram.
/// </remarks>
public sealed class RelayLeg
{
    /// <summary>Who the peer is. Replaced whole when the leg is re-targeted; its endpoint is written by the loop only.</summary>
    private sealed class PeerTarget(IPAddress address, IPEndPoint? known)
    {
        public IPAddress Address { get; } = address;
        public IPEndPoint? Known { get; } = known;
        public byte[] AddressBytes { get; } = address.GetAddressBytes();
        /// <summary>Where datagrams for the peer go: the known endpoint, else learned from the peer's first datagram.</summary>
        public SocketAddress? Endpoint { get; set; } = known?.Serialize();
        public volatile IPEndPoint? EndpointSeen = known;
        /// <summary>When <see cref="Endpoint"/> last sent; 0: never, so the peer's address on any port takes over.</summary>
        public long LastHeardTicks { get; set; }
    }

    /// <summary>The other leg of the chain; <see cref="Address"/> is where it is sent to and must send from.</summary>
    private sealed class PartnerTarget(IPEndPoint announced, IPEndPoint actual)
    {
        public IPEndPoint Announced { get; } = announced;
        public SocketAddress Address { get; } = actual.Serialize();
    }

    private readonly Socket socket;
    private readonly RelaySettings settings;
    private readonly TimeProvider time;
    private readonly ILogger logger;
    private readonly long openedTicks;
    private readonly long rebindTicks;
    private volatile PeerTarget peer;
    private volatile PartnerTarget? partner;
    private volatile bool closing;
    private Task loop = Task.CompletedTask;
    private long packetsToPeer, bytesToPeer, packetsToPartner, bytesToPartner, dropped, lastForwardTicks;

    internal RelayLeg(string assignmentId, string side, Socket socket, IPEndPoint endpoint, IPAddress peerAddress, IPEndPoint? peerEndpoint,
        RelaySettings settings, TimeProvider time, ILogger logger)
    {
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
    }

    public string AssignmentId { get; }

    /// <summary><c>client</c> or <c>exit</c> (<see cref="Exits.RelaySides"/>).</summary>
    public string Side { get; }

    public int Port => Endpoint.Port;

    /// <summary>Where the peer's WireGuard and the partner leg send to: the SuperNode's public IP and this leg's port.</summary>
    public IPEndPoint Endpoint { get; }

    public RelayLegStatus Status()
    {
        var target = peer;
        var lastForward = Volatile.Read(ref lastForwardTicks);
        return new RelayLegStatus(AssignmentId, Side, Port, Endpoint, target.Address, target.EndpointSeen, partner?.Announced,
            Interlocked.Read(ref packetsToPeer), Interlocked.Read(ref bytesToPeer),
            Interlocked.Read(ref packetsToPartner), Interlocked.Read(ref bytesToPartner), Interlocked.Read(ref dropped),
            new DateTimeOffset(openedTicks, TimeSpan.Zero), lastForward == 0 ? null : new DateTimeOffset(lastForward, TimeSpan.Zero));
    }

    internal void Start() => loop = Task.Run(ReceiveLoopAsync);

    /// <summary>Whether the leg already serves this peer as given; if not, it serves it from now on (port and partner kept).</summary>
    internal bool Retarget(IPAddress peerAddress, IPEndPoint? peerEndpoint)
    {
        var wanted = Target(peerAddress, peerEndpoint);
        var current = peer;
        if (current.Address.Equals(wanted.Address) && Equals(current.Known, wanted.Known))
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

    /// <summary>Closes the socket (freeing the port) and waits for the receive loop to end.</summary>
    internal async Task CloseAsync()
    {
        closing = true;
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
                Forwarded(toPeer, length, now);
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

    /// <summary>Where a datagram from <paramref name="from"/> goes, or null (dropped and counted).</summary>
    private SocketAddress? Route(SocketAddress from, long now, out bool toPeer)
    {
        var chained = partner;
        var target = peer;
        if (chained is not null && UdpAddress.SameEndpoint(from, chained.Address))
        {
            toPeer = true;
            if (target.Endpoint is { } peerEndpoint)
                return peerEndpoint;
            Drop(RelayDropReason.PeerPortUnknown);
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
            return chained.Address;
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
    }

    private void Forwarded(bool toPeer, int length, long now)
    {
        if (toPeer)
        {
            Interlocked.Increment(ref packetsToPeer);
            Interlocked.Add(ref bytesToPeer, length);
            RelayMetrics.PacketsToPeer.Inc();
            RelayMetrics.BytesToPeer.Inc(length);
        }
        else
        {
            Interlocked.Increment(ref packetsToPartner);
            Interlocked.Add(ref bytesToPartner, length);
            RelayMetrics.PacketsToPartner.Inc();
            RelayMetrics.BytesToPartner.Inc(length);
        }
        Volatile.Write(ref lastForwardTicks, now);
    }

    private void Drop(RelayDropReason reason)
    {
        Interlocked.Increment(ref dropped);
        RelayMetrics.DroppedFor(reason).Inc();
    }
}

/// <summary>A relay leg as admin and status output show it.</summary>
/// <param name="PeerEndpoint">The peer's known endpoint, or the one learned from its datagrams; null until then.</param>
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
