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
    /// The receive buffer of one leg, rented once for the leg's life. A WireGuard datagram is its inner packet plus 32
    /// bytes: 1452 at WireGuard's default MTU of 1420, at most 1472 over an internet path of MTU 1500. 2048 covers that
    /// with room for an inner MTU of up to ~2000 and keeps 10 000 legs within 20 MiB (64 KiB each would be 640 MiB).
    /// A datagram that fills the buffer may have been truncated (Linux cuts it silently): it is dropped and counted as
    /// <c>oversize</c>, so the largest forwarded is one byte less than this.
    /// </summary>
    public int DatagramBufferSize { get; init; } = 2048;

    public static readonly RelaySettings Default = new();

    /// <summary>Throws <see cref="ArgumentException"/> naming the setting that is wrong and why.</summary>
    public void Validate()
    {
        foreach (var (value, name) in new[]
                 {
                     (IdleTimeout, nameof(IdleTimeout)), (IdleSweepInterval, nameof(IdleSweepInterval)), (PeerRebindAfter, nameof(PeerRebindAfter)),
                 })
        {
            if (value <= TimeSpan.Zero)
                throw new ArgumentException($"Super:Relay:{name} must be positive, was {value}.", name);
        }
        if (DatagramBufferSize is < 1500 or > 65536)
            throw new ArgumentException($"Super:Relay:{nameof(DatagramBufferSize)} must be within 1500-65536 bytes, was {DatagramBufferSize}.",
                nameof(DatagramBufferSize));
    }
}
