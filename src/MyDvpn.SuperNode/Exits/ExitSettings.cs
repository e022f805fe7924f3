using System.Net;
using MyDvpn.Common;

namespace MyDvpn.SuperNode.Exits;

/// <summary>
/// How a region hands out exits and tunnel addresses. Bound from configuration (<c>Super:Exits:…</c>, environment
/// <c>MYDVPN__SUPER__EXITS__…</c>); every SuperNode of a region must use the same <see cref="TunnelPool"/> and
/// <see cref="SubnetPrefixLength"/>, since the pool's journal stores indexes into them.
/// </summary>
public sealed record ExitSettings
{
    /// <summary>The IPv4 block the region's exit subnets are cut from (CGNAT space by default, like Tailscale's).</summary>
    public string TunnelPool { get; init; } = "100.96.0.0/12";

    /// <summary>Each exit gets one subnet of this prefix length: its own address is the first host, clients get the rest.</summary>
    public int SubnetPrefixLength { get; init; } = 24;

    /// <summary>What a client routes through its exit: the full tunnel, the only value agents accept.</summary>
    public string[] ClientAllowedIps { get; init; } = ["0.0.0.0/0"];

    public int PersistentKeepaliveSeconds { get; init; } = 25;

    /// <summary>
    /// Exit peer id → <c>IP:PORT</c>: where clients reach that exit, as the operator vouches for it, whatever the exit
    /// claims. Without an entry an exit's claimed endpoint (<c>--public-endpoint</c>) is taken only on the address its
    /// control stream comes from or in <see cref="TrustedEndpointNetworks"/> (<see cref="ExitEndpoints"/>).
    /// </summary>
    public Dictionary<string, string> TrustedEndpoints { get; init; } = new(StringComparer.Ordinal);

    /// <summary>
    /// CIDRs in which an exit's claimed endpoint is taken even when its control stream comes from another address: exits
    /// whose control traffic leaves through a load balancer or another NAT address than their WireGuard. Empty by default.
    /// </summary>
    public string[] TrustedEndpointNetworks { get; init; } = [];

    /// <summary>How long an exit has to acknowledge SetupExit before the pool tries another.</summary>
    public TimeSpan AckTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Exits tried for one request before the client is told the setup failed.</summary>
    public int MaxExitAttempts { get; init; } = 3;

    /// <summary>An exit that failed a setup is picked only when no other fits, for this long.</summary>
    public TimeSpan FailureCooldown { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>An exit's session re-announces it this often while its stream is attached.</summary>
    public TimeSpan ExitHeartbeat { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>An exit not announced for this long counts as offline.</summary>
    public TimeSpan ExitOfflineAfter { get; init; } = TimeSpan.FromSeconds(20);

    /// <summary>
    /// An exit whose stream ended (a kill -9 of its agent ends the TCP connection at once; a heartbeat timeout ends it
    /// too) and did not come back within this grace is lost: its clients are moved to other exits of the region.
    /// </summary>
    public TimeSpan LostAfter { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>A client asked to move that still holds its assignment on a lost or drained exit is asked again this often.</summary>
    public TimeSpan RotationRetry { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>How long a client has to apply its half (SetupExit) before the assignment is rolled back.</summary>
    public TimeSpan ClientSetupTimeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// A client that reports no WireGuard handshake with its exit this long after the assignment became active (or its
    /// stream attached) gets a relay chain instead of the direct path. A direct handshake takes one round trip; the agent
    /// reports the first one at once, or that none happened within 2 s of the set-up (<c>FirstHandshakeWithin</c>), so
    /// the relay carries the traffic of a client that cannot reach its exit directly within a few seconds.
    /// </summary>
    public TimeSpan DirectPathTimeout { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// After a relay chain could not be set up, the next attempt waits this long, and twice as long after each further
    /// failure, up to <see cref="RelayRetryMax"/>. A chain usually fails while a SuperNode of the exit's region that just
    /// crashed is being replaced (the region's cluster downs it and re-homes its shards within seconds): a short first wait
    /// puts the traffic back on a chain soon after.
    /// </summary>
    public TimeSpan RelayRetry { get; init; } = TimeSpan.FromSeconds(2);

    public TimeSpan RelayRetryMax { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>The wait before the next attempt at a chain after <paramref name="failedAttempts"/> in a row that failed (the first: 0).</summary>
    public TimeSpan RelayRetryAfter(int failedAttempts) => Doubling(RelayRetry, RelayRetryMax, failedAttempts);

    /// <summary>
    /// A path that worked (a direct one that handshook, or a relay chain) is broken once the client reports no
    /// handshake with its exit for this long: a direct one gets a relay chain, a relayed one a new chain. WireGuard
    /// renews its handshake every 2 minutes while packets flow (and the 25 s keepalive keeps them flowing), so a
    /// working path's last handshake is never older than about 2.5 minutes.
    /// </summary>
    public TimeSpan PathStaleAfter { get; init; } = TimeSpan.FromMinutes(3);

    /// <summary>
    /// A path that worked is broken once the client's reports show it sending to its exit (more than its keepalives)
    /// and receiving nothing back for this long. It is WireGuard's own test of a path: a peer answers whatever it
    /// receives within 10 s at the latest (a passive keepalive when it has nothing to send), and a sender that heard
    /// nothing for 10 + 5 s starts a new handshake (KEEPALIVE_TIMEOUT + REKEY_TIMEOUT). The reports come every 5 s.
    /// </summary>
    public TimeSpan SilentPathAfter { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// A relayed client tries its direct path again this long after the chain was set up, and after each attempt that
    /// fails twice as long as before, up to <see cref="DirectRetryMax"/> (an attempt that fails costs the client about
    /// <see cref="DirectPathTimeout"/> of lost packets until the chain carries it again). A direct path that works tears the chain down.
    /// </summary>
    public TimeSpan DirectRetry { get; init; } = TimeSpan.FromSeconds(60);

    public TimeSpan DirectRetryMax { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>The wait before the next try of the direct path after <paramref name="failedAttempts"/> that failed since the chain was set up.</summary>
    public TimeSpan DirectRetryAfter(int failedAttempts) => Doubling(DirectRetry, DirectRetryMax, failedAttempts);

    /// <summary><paramref name="first"/>, doubled <paramref name="doublings"/> times, at most <paramref name="max"/>.</summary>
    private static TimeSpan Doubling(TimeSpan first, TimeSpan max, int doublings) =>
        TimeSpan.FromTicks(Math.Min(max.Ticks, first.Ticks * (1L << Math.Clamp(doublings, 0, 30))));

    /// <summary>
    /// An exit is stale (<c>EXIT_STALE</c>) when, within <see cref="StaleWindow"/>, this many of its clients report their
    /// path to it breaking after it worked — or every client it serves does and one of those paths went through a relay
    /// chain (a SuperNode of the region reaching the exit heard nothing either). One client whose direct path breaks is
    /// more likely behind a NAT that changed, and a relay carries it; the exit is the common factor of several.
    /// </summary>
    public int StaleClients { get; init; } = 2;

    public TimeSpan StaleWindow { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>
    /// For this long a stale exit takes new clients only when no other exit of the region fits (its control stream is alive:
    /// its data plane may recover, and a chain may have broken with a SuperNode rather than with it).
    /// </summary>
    public TimeSpan StaleFor { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>RemoveExit waits this long for a peer that is away; its half goes with its next connect within it.</summary>
    public TimeSpan RemoveDeadline { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>One allocation across regions, all SuperNodes of the region tried, at most.</summary>
    public TimeSpan AllocationTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Between attempts to release an assignment at a region that does not answer.</summary>
    public TimeSpan ReleaseRetry { get; init; } = TimeSpan.FromSeconds(5);

    public static readonly ExitSettings Default = new();

    /// <summary>How long past an exit's ack timeout the pool waits for its session to report the outcome.</summary>
    public static readonly TimeSpan OverdueGrace = TimeSpan.FromSeconds(2);

    /// <summary>The longest a pool takes to answer an allocation: every exit it may try, each until overdue, and some room.</summary>
    public TimeSpan PoolAnswerWithin => (AckTimeout + OverdueGrace) * MaxExitAttempts + TimeSpan.FromSeconds(5);

    /// <summary>The parsed pool; throws <see cref="ArgumentException"/> naming the setting that is wrong.</summary>
    public TunnelAddressing Addressing() => TunnelAddressing.Parse(TunnelPool, SubnetPrefixLength);

    /// <summary>Throws <see cref="ArgumentException"/> naming the setting that is wrong and why.</summary>
    public void Validate()
    {
        Addressing();
        foreach (var (value, name) in new[]
                 {
                     (AckTimeout, nameof(AckTimeout)), (FailureCooldown, nameof(FailureCooldown)), (ExitHeartbeat, nameof(ExitHeartbeat)),
                     (ExitOfflineAfter, nameof(ExitOfflineAfter)), (ClientSetupTimeout, nameof(ClientSetupTimeout)),
                     (LostAfter, nameof(LostAfter)), (RotationRetry, nameof(RotationRetry)),
                     (RemoveDeadline, nameof(RemoveDeadline)), (AllocationTimeout, nameof(AllocationTimeout)), (ReleaseRetry, nameof(ReleaseRetry)),
                     (DirectPathTimeout, nameof(DirectPathTimeout)), (RelayRetry, nameof(RelayRetry)),
                     (PathStaleAfter, nameof(PathStaleAfter)), (SilentPathAfter, nameof(SilentPathAfter)),
                     (DirectRetry, nameof(DirectRetry)), (DirectRetryMax, nameof(DirectRetryMax)), (RelayRetryMax, nameof(RelayRetryMax)),
                     (StaleWindow, nameof(StaleWindow)), (StaleFor, nameof(StaleFor)),
                 })
        {
            if (value <= TimeSpan.Zero)
                throw new ArgumentException($"Super:Exits:{name} must be positive, was {value}.", name);
        }
        if (RelayRetryMax < RelayRetry)
            throw new ArgumentException($"Super:Exits:{nameof(RelayRetryMax)} ({RelayRetryMax}) must be at least {nameof(RelayRetry)} ({RelayRetry}).", nameof(RelayRetryMax));
        if (DirectRetryMax < DirectRetry)
            throw new ArgumentException($"Super:Exits:{nameof(DirectRetryMax)} ({DirectRetryMax}) must be at least {nameof(DirectRetry)} ({DirectRetry}).", nameof(DirectRetryMax));
        if (StaleClients < 1)
            throw new ArgumentException($"Super:Exits:{nameof(StaleClients)} must be at least 1, was {StaleClients}.", nameof(StaleClients));
        if (MaxExitAttempts < 1)
            throw new ArgumentException($"Super:Exits:{nameof(MaxExitAttempts)} must be at least 1, was {MaxExitAttempts}.", nameof(MaxExitAttempts));
        if (AllocationTimeout < PoolAnswerWithin)
            throw new ArgumentException(
                $"Super:Exits:{nameof(AllocationTimeout)} ({AllocationTimeout}) must be at least {PoolAnswerWithin}: {nameof(MaxExitAttempts)} × ({nameof(AckTimeout)} + {OverdueGrace.TotalSeconds:0} s) + 5 s, the longest a region's pool takes to answer.",
                nameof(AllocationTimeout));
        if (ExitOfflineAfter <= ExitHeartbeat)
            throw new ArgumentException($"Super:Exits:{nameof(ExitOfflineAfter)} ({ExitOfflineAfter}) must be longer than {nameof(ExitHeartbeat)} ({ExitHeartbeat}).", nameof(ExitOfflineAfter));
        if (PersistentKeepaliveSeconds is < 0 or > 65535)
            throw new ArgumentException($"Super:Exits:{nameof(PersistentKeepaliveSeconds)} must be within 0-65535.", nameof(PersistentKeepaliveSeconds));
        foreach (var (exitPeerId, endpoint) in TrustedEndpoints)
        {
            if (!NodeId.IsValid(exitPeerId, out var idProblem))
                throw new ArgumentException($"Super:Exits:{nameof(TrustedEndpoints)}: '{exitPeerId}' is no peer id: {idProblem}.", nameof(TrustedEndpoints));
            if (!IPEndPoint.TryParse(endpoint ?? "", out var parsed) || parsed.Port == 0 || !endpoint!.Contains(':'))
                throw new ArgumentException($"Super:Exits:{nameof(TrustedEndpoints)}:{exitPeerId} '{endpoint}' is not an IP:PORT (e.g. 203.0.113.9:51820).",
                    nameof(TrustedEndpoints));
        }
        foreach (var network in TrustedEndpointNetworks)
        {
            if (!Cidr.IsValid(network, out var reason))
                throw new ArgumentException($"Super:Exits:{nameof(TrustedEndpointNetworks)}: {reason}.", nameof(TrustedEndpointNetworks));
            if (Cidr.Parse(network).IsDefault)
                throw new ArgumentException(
                    $"Super:Exits:{nameof(TrustedEndpointNetworks)}: '{network}' is every address; it would let any exit aim its clients anywhere.",
                    nameof(TrustedEndpointNetworks));
        }
        if (ClientAllowedIps is not ["0.0.0.0/0"])
            throw new ArgumentException(
                $"Super:Exits:{nameof(ClientAllowedIps)} must be exactly [0.0.0.0/0], the full tunnel (agents refuse any other allowed IPs for their exit), was [{string.Join(", ", ClientAllowedIps)}].",
                nameof(ClientAllowedIps));
    }
}
