namespace MyDvpn.SuperNode.Relay;

/// <summary>
/// How this SuperNode's relay legs behave. The ports and the address come from <c>--relay-ports</c> and
/// <c>--public-ip</c>; these are the finer settings (config/environment only: <c>Super:Relay:…</c>).
/// </summary>
public sealed record RelaySettings
{
    /// <summary>
    /// A leg that forwarded nothing either way for this long is closed. WireGuard sends a keepalive every 25 s on a
    /// relayed tunnel, so only a chain whose peers are gone reaches it.
    /// </summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromMinutes(3);

    /// <summary>How often legs are checked for idleness: a leg lives at most this much past its idle timeout.</summary>
    public TimeSpan IdleSweepInterval { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// The peer's port is learned from its first packet and kept; a packet from the peer's address on another port
    /// takes over only once the known port has been silent this long (a NAT that rebound the peer's mapping). Shorter
    /// than that, a second sender behind the same public IP could steal the leg. Longer than the 25 s keepalive.
    /// </summary>
    public TimeSpan PeerRebindAfter { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// The largest datagram a leg takes, plus one. A WireGuard datagram is its inner packet plus 32 bytes: 1452 at
    /// WireGuard's default MTU of 1420, at most 1472 over an internet path of MTU 1500. 2048 covers that with room for an
    /// inner MTU of up to ~2000. A datagram that fills the buffer may have been truncated (Linux cuts it silently): it is
    /// dropped and counted as <c>oversize</c>, so the largest forwarded is one byte less than this. A leg with an async
    /// loop of its own (<see cref="ForwardingThreads"/> 0) rents a buffer this large for its life, which keeps 10 000
    /// legs within 20 MiB; the forwarding threads' buffers do not depend on it.
    /// </summary>
    public int DatagramBufferSize { get; init; } = 2048;

    /// <summary>
    /// The kernel's receive and send buffer of each leg's socket (SO_RCVBUF, SO_SNDBUF). Linux's default (~208 KiB)
    /// holds about 140 full-size datagrams: a burst of WireGuard traffic overflows it while the leg waits for a CPU, and
    /// every datagram dropped there is a retransmission inside the tunnel. Set with SO_RCVBUFFORCE/SO_SNDBUFFORCE where
    /// the process may (CAP_NET_ADMIN), else capped at <c>net.core.rmem_max</c>/<c>wmem_max</c>. The kernel charges
    /// only what is queued, not this much per leg. 0: the system default.
    /// </summary>
    public int SocketBufferBytes { get; init; } = 4 << 20;

    /// <summary>
    /// Linux: threads that forward for every leg of the process. Each waits on its legs' sockets with epoll and moves
    /// a leg's queued datagrams with one <c>recvmmsg</c> and one <c>sendmmsg</c> per wakeup, without the thread pool.
    /// A leg is served by one thread, so this many legs forward at once. 0, and on other systems: each leg runs an
    /// async receive loop of its own.
    /// </summary>
    public int ForwardingThreads { get; init; } = Math.Clamp(Environment.ProcessorCount, 1, 4);

    /// <summary>
    /// The kernel forwards a leg once its peer's endpoint and its partner are known: per leg four nftables rules (in a
    /// table of this relay's, <c>mydvpn_relay_&lt;first port&gt;</c>) rewrite its datagrams' addresses statelessly, so they
    /// never reach this process; everything else (a peer's first datagram, strangers, a peer that moved) still does.
    /// Needs Linux, CAP_NET_ADMIN, nft, legs bound to one IPv4 address (--public-ip an address of this host), and turns
    /// on <c>net.ipv4.ip_forward</c> (restored on stop); a host whose own forward chains drop forwarded traffic must let
    /// it through. Off: user space forwards everything.
    /// </summary>
    public bool KernelOffload { get; init; }

    /// <summary>How often the kernel's counts of the legs it forwards are brought into the legs' (metrics, idleness).</summary>
    public TimeSpan KernelCountersInterval { get; init; } = TimeSpan.FromSeconds(5);

    public static readonly RelaySettings Default = new();

    /// <summary>Throws <see cref="ArgumentException"/> naming the setting that is wrong and why.</summary>
    public void Validate()
    {
        foreach (var (value, name) in new[]
                 {
                     (IdleTimeout, nameof(IdleTimeout)), (IdleSweepInterval, nameof(IdleSweepInterval)), (PeerRebindAfter, nameof(PeerRebindAfter)),
                     (KernelCountersInterval, nameof(KernelCountersInterval)),
                 })
        {
            if (value <= TimeSpan.Zero)
                throw new ArgumentException($"Super:Relay:{name} must be positive, was {value}.", name);
        }
        if (DatagramBufferSize is < 1500 or > 65536)
            throw new ArgumentException($"Super:Relay:{nameof(DatagramBufferSize)} must be within 1500-65536 bytes, was {DatagramBufferSize}.",
                nameof(DatagramBufferSize));
        if (SocketBufferBytes is < 0 or > 1 << 30)
            throw new ArgumentException($"Super:Relay:{nameof(SocketBufferBytes)} must be within 0-1073741824 bytes (0: the system default), was {SocketBufferBytes}.",
                nameof(SocketBufferBytes));
        if (ForwardingThreads is < 0 or > 256)
            throw new ArgumentException($"Super:Relay:{nameof(ForwardingThreads)} must be within 0-256 (0: an async loop per leg), was {ForwardingThreads}.",
                nameof(ForwardingThreads));
    }
}
