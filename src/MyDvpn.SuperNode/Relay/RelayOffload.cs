using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using MyDvpn.HostOs;

namespace MyDvpn.SuperNode.Relay;

/// <summary>One leg forwarded by the kernel: its port on the relay's address, its peer and its partner (IPv4 endpoints).</summary>
public sealed record OffloadedLeg(int Port, IPEndPoint Peer, IPEndPoint Partner);

/// <summary>A leg's counters since it was first offloaded (its named nft counters). Bytes are IP packet lengths (IP and UDP headers included).</summary>
public sealed record OffloadCounters(long PacketsToPeer, long BytesToPeer, long PacketsToPartner, long BytesToPartner);

/// <summary>The kernel cannot forward relay legs here; the message says why and how to fix it.</summary>
public sealed class RelayOffloadUnavailableException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// Kernel forwarding of established relay legs: stateless nftables rules (<see cref="RelayOffloadRules"/>) rewrite a
/// leg's datagrams in prerouting and postrouting, so datagrams between a leg's known peer and partner endpoints never
/// reach the leg's socket. Anything else sent to the leg's port (another source, another source port of the peer) is
/// not matched and still reaches the socket: user space keeps learning endpoints and handles what the kernel does not.
/// <para>
/// Conditions for the kernel path to work, beyond what <see cref="StartAsync"/> checks: the leg address must be the
/// address the datagrams arrive with (on a host behind 1:1 NAT, the private one); peer and partner must be remote (a
/// datagram rewritten to a local address is delivered, not forwarded); no other forward chain may drop the datagrams
/// (an nftables forward chain with policy drop is logged at start; iptables-legacy rules, e.g. Docker's
/// <c>FORWARD DROP</c>, are not visible to nft and drop them silently); forwarded datagrams are routed like any other,
/// so TTL is decremented, rp_filter applies to the source, and a datagram above the outgoing MTU with DF set is
/// answered with ICMP "fragmentation needed" by this host. When peer and partner are on the relay's own link, the
/// kernel may also send ICMP redirects to the sender (harmless; <c>send_redirects=0</c> silences them).
/// The rules are a linear list, evaluated for every IPv4 datagram entering and leaving the host: fine for hundreds of
/// legs, a verdict map would be needed for many thousands.
/// </para>
/// </summary>
public sealed class RelayOffload : IAsyncDisposable
{
    private const string ForwardSetting = "net.ipv4.ip_forward";
    private static readonly TimeSpan DisposeBound = TimeSpan.FromSeconds(15);

    private readonly HostCommand _host;
    private readonly IPAddress _legAddress;
    private readonly string _table;
    private readonly ILogger _logger;
    private readonly string? _forwardBefore;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private HashSet<int> _applied = [];
    private bool _disposed;

    private RelayOffload(HostCommand host, IPAddress legAddress, string table, ILogger logger, string? forwardBefore)
    {
        _host = host;
        _legAddress = legAddress;
        _table = table;
        _logger = logger;
        _forwardBefore = forwardBefore;
    }

    /// <summary>The nftables table (<c>ip mydvpn_relay_&lt;portLow&gt;</c>).</summary>
    public string TableName => _table;

    /// <summary>
    /// Checks nft works here (CAP_NET_ADMIN), deletes a leftover table of the same name (a crashed SuperNode), creates the table
    /// (name: "mydvpn_relay_" + portLow, so several SuperNodes on one host with different --relay-ports never clash), and
    /// sets net.ipv4.ip_forward=1 remembering the previous value. legAddress must be IPv4.
    /// </summary>
    /// <exception cref="RelayOffloadUnavailableException">saying why and how to fix (not root, nft missing, IPv6 address...)</exception>
    public static async Task<RelayOffload> StartAsync(IPAddress legAddress, int portLow, ILogger logger, string? networkNamespace, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(legAddress);
        ArgumentNullException.ThrowIfNull(logger);
        ArgumentOutOfRangeException.ThrowIfLessThan(portLow, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(portLow, 65535);
        if (legAddress.IsIPv4MappedToIPv6)
            legAddress = legAddress.MapToIPv4();
        if (legAddress.AddressFamily != AddressFamily.InterNetwork)
            throw new RelayOffloadUnavailableException(
                $"relay address {legAddress} is not IPv4: kernel offload forwards IPv4 legs only; bind the relay to an IPv4 address or leave offload off");
        if (legAddress.Equals(IPAddress.Any) || IPAddress.IsLoopback(legAddress))
            throw new RelayOffloadUnavailableException(
                $"relay address {legAddress} is not an address datagrams arrive at from other hosts; bind the relay to the host's IPv4 address");

        var host = new HostCommand(networkNamespace);
        var table = RelayOffloadRules.TableName(portLow);
        var tables = RelayOffloadRules.ParseTables(await NftAsync(host, ["-j", "list", "tables"], null, ct));
        if (tables.Contains(table))
            logger.LogWarning("Deleting nftables table ip {Table} left over by an earlier SuperNode with the same first relay port", table);
        await NftAsync(host, ["-j", "-f", "-"], RelayOffloadRules.CreateDocument(table), ct);

        string forwardBefore;
        try
        {
            forwardBefore = (await host.RunCheckedAsync("sysctl", ["-n", ForwardSetting], cancellationToken: ct)).Trim();
            if (forwardBefore != "1")
                await host.RunCheckedAsync("sysctl", ["-q", "-w", ForwardSetting + "=1"], cancellationToken: ct);
        }
        catch (HostCommandException ex)
        {
            await DeleteTableQuietlyAsync(host, table, logger);
            throw new RelayOffloadUnavailableException(
                $"cannot turn on IPv4 forwarding ({ForwardSetting}=1), which kernel offload needs: {ex.Message}. " +
                $"Run the SuperNode as root, or set {ForwardSetting}=1 beforehand (sysctl -w)", ex);
        }

        var offload = new RelayOffload(host, legAddress, table, logger, forwardBefore);
        await offload.WarnAboutForwardDropsAsync(ct);
        logger.LogInformation("Relay offload ready: nftables table ip {Table} for legs on {Address}, {Setting} was {Before}",
            table, legAddress, ForwardSetting, forwardBefore);
        return offload;
    }

    /// <summary>
    /// Replaces the set of offloaded legs atomically (ONE nft transaction): named counters (one per leg and direction, e.g.
    /// "p40000_to_peer"/"p40000_to_partner") are added for new ports and KEPT for ports still present (so counts survive
    /// re-applies), the rule chains flushed and rewritten, counters of ports no longer present deleted (after the flush,
    /// same batch). Concurrent calls are serialized. IPv4-mapped IPv6 endpoints are taken as IPv4.
    /// </summary>
    /// <exception cref="ArgumentException">A leg the kernel cannot forward (see <see cref="RelayOffloadRules.Validate"/>); nothing changed.</exception>
    /// <exception cref="HostCommandException">nft refused the batch; nothing changed.</exception>
    public async Task ApplyAsync(IReadOnlyCollection<OffloadedLeg> legs, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(legs);
        var normalized = RelayOffloadRules.Normalize(legs);
        RelayOffloadRules.Validate(_legAddress, normalized);
        await _gate.WaitAsync(ct);
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var document = RelayOffloadRules.ApplyDocument(_table, _legAddress, normalized, _applied);
            await _host.RunCheckedAsync("nft", ["-j", "-f", "-"], document, ct);
            var previous = _applied;
            _applied = [.. normalized.Select(leg => leg.Port)];
            _logger.LogDebug("Relay offload applied: {Legs} legs in the kernel, {Removed} removed",
                normalized.Count, previous.Count(port => !_applied.Contains(port)));
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>The named counters of the offloaded legs, by port (cumulative).</summary>
    /// <exception cref="HostCommandException">nft failed.</exception>
    public async Task<IReadOnlyDictionary<int, OffloadCounters>> ReadCountersAsync(CancellationToken ct)
    {
        await _gate.WaitAsync(ct);
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var json = await _host.RunCheckedAsync("nft", ["-j", "list", "counters", "table", RelayOffloadRules.Family, _table], cancellationToken: ct);
            return RelayOffloadRules.ParseCounters(json);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// Deletes the table and restores net.ipv4.ip_forward. Idempotent. Failures are logged, not thrown (this runs in
    /// teardown paths). ip_forward is left on while another SuperNode's relay table is still in this namespace.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        await _gate.WaitAsync();
        try
        {
            if (_disposed)
                return;
            _disposed = true;
            using var bound = new CancellationTokenSource(DisposeBound);
            await DeleteTableQuietlyAsync(_host, _table, _logger);
            await RestoreForwardingAsync(bound.Token);
        }
        finally
        {
            _gate.Release();
        }
    }

    private async Task RestoreForwardingAsync(CancellationToken ct)
    {
        if (_forwardBefore is null or "1")
            return;
        try
        {
            var others = RelayOffloadRules.ParseTables(await _host.RunCheckedAsync("nft", ["-j", "list", "tables"], cancellationToken: ct))
                .Where(name => name.StartsWith(RelayOffloadRules.TablePrefix, StringComparison.Ordinal) && name != _table)
                .ToList();
            if (others.Count > 0)
            {
                _logger.LogInformation("Leaving {Setting}=1: other relay offload tables still forward here ({Tables})",
                    ForwardSetting, string.Join(", ", others));
                return;
            }
            await _host.RunCheckedAsync("sysctl", ["-q", "-w", $"{ForwardSetting}={_forwardBefore}"], cancellationToken: ct);
        }
        catch (Exception ex) when (ex is HostCommandException or OperationCanceledException or System.Text.Json.JsonException)
        {
            _logger.LogError(ex, "Could not restore {Setting}={Before} after relay offload", ForwardSetting, _forwardBefore);
        }
    }

    private async Task WarnAboutForwardDropsAsync(CancellationToken ct)
    {
        var listed = await _host.RunAsync("nft", ["-j", "list", "chains"], cancellationToken: ct);
        if (!listed.Succeeded)
            return;
        var dropping = RelayOffloadRules.ParseDroppingForwardChains(listed.StandardOutput);
        if (dropping.Count > 0)
            _logger.LogWarning(
                "Forward chains with policy drop ({Chains}) may drop relay datagrams the kernel forwards; accept UDP to and from the relay peers there, or offloaded legs go silent",
                string.Join(", ", dropping));
    }

    private static async Task DeleteTableQuietlyAsync(HostCommand host, string table, ILogger logger)
    {
        using var bound = new CancellationTokenSource(DisposeBound);
        try
        {
            await host.RunCheckedAsync("nft", ["-j", "-f", "-"], RelayOffloadRules.DeleteDocument(table), bound.Token);
        }
        catch (Exception ex) when (ex is HostCommandException or OperationCanceledException)
        {
            logger.LogError(ex, "Could not delete the relay offload table ip {Table}; delete it by hand: nft delete table ip {Table}", table, table);
        }
    }

    /// <summary>Runs nft for <see cref="StartAsync"/>, turning its failures into <see cref="RelayOffloadUnavailableException"/>s that say how to fix them.</summary>
    private static async Task<string> NftAsync(HostCommand host, IReadOnlyList<string> arguments, string? input, CancellationToken ct)
    {
        CommandResult result;
        try
        {
            result = await host.RunAsync("nft", arguments, input, ct);
        }
        catch (HostCommandException ex)
        {
            throw new RelayOffloadUnavailableException(
                $"{ex.Message}; kernel relay offload needs nftables: install the nftables package, or leave offload off", ex);
        }
        if (result.Succeeded)
            return result.StandardOutput;
        var failure = new HostCommandException(result);
        var error = result.StandardError;
        if (error.Contains("Operation not permitted", StringComparison.OrdinalIgnoreCase) || error.Contains("Permission denied", StringComparison.OrdinalIgnoreCase))
            throw new RelayOffloadUnavailableException(
                $"{failure.Message}; nftables needs CAP_NET_ADMIN: run the SuperNode as root or grant it CAP_NET_ADMIN " +
                "(e.g. AmbientCapabilities=CAP_NET_ADMIN in its systemd unit), or leave offload off", failure);
        if (host.Namespace is not null && (error.Contains("netns", StringComparison.OrdinalIgnoreCase) || error.Contains("exec of", StringComparison.OrdinalIgnoreCase)))
            throw new RelayOffloadUnavailableException(
                $"{failure.Message}; check that network namespace {host.Namespace} exists and nftables is installed", failure);
        throw new RelayOffloadUnavailableException(
            $"{failure.Message}; is nftables installed and the kernel built with nf_tables (nft_ct, nft_counter)?", failure);
    }
}
