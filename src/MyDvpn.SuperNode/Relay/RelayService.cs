using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;

namespace MyDvpn.SuperNode.Relay;

/// <summary>
/// The relay legs of this SuperNode (ARCHITECTURE §4 Relay): UDP ports of <c>--relay-ports</c>, one per peer of a
/// relayed assignment, chained to a partner leg here or on another SuperNode. WireGuard stays end to end: a leg
/// forwards ciphertext between its peer and its partner and accepts datagrams from nobody else.
/// </summary>
public sealed class RelayService : IRelayLegs, IAsyncDisposable
{
    private readonly Lock gate = new();
    private readonly Dictionary<(string AssignmentId, string Side), RelayLeg> legs = [];
    private readonly Dictionary<(string AssignmentId, string Side), RelayLegOwner> owners = [];
    private readonly IPAddress publicAddress;
    private readonly IPAddress bindAddress;
    private readonly int portLow, portHigh;
    private readonly RelaySettings settings;
    private readonly TimeProvider time;
    private readonly ILogger<RelayService> logger;
    private readonly ITimer idleSweep;
    // Linux: the threads that forward for every leg (Super:Relay:ForwardingThreads); null: each leg loops on its own.
    private readonly RelayLeg.Forwarder? forwarder;
    // Super:Relay:KernelOffload: the kernel forwards the legs whose peer and partner are known; null: user space only.
    private RelayOffload? offload;
    private ITimer? kernelCounterTimer;
    private readonly SemaphoreSlim offloadSync = new(1, 1), kernelCounterRead = new(1, 1);
    // What the kernel had counted per leg at the last reading (under gate).
    private readonly Dictionary<RelayLeg, OffloadCounters> kernelCounted = [];
    private int nextPortOffset;
    private bool disposed;
    // Shutting down: the legs open keep forwarding while their chains move to another SuperNode; no new one opens.
    private bool draining;

    /// <param name="publicAddress">The SuperNode's public IP (<c>--public-ip</c>): leg endpoints are announced with it.</param>
    /// <param name="portLow">The first port of <c>--relay-ports</c>.</param>
    /// <param name="portHigh">The last port of <c>--relay-ports</c>.</param>
    /// <param name="bindAddress">
    /// Where legs bind; <paramref name="publicAddress"/> when null. <see cref="IPAddress.Any"/> where the public IP is not an
    /// address of this host (a cloud VM behind 1:1 NAT) and in tests.
    /// </param>
    public RelayService(IPAddress publicAddress, int portLow, int portHigh, ILogger<RelayService> logger,
        TimeProvider? time = null, RelaySettings? settings = null, IPAddress? bindAddress = null)
    {
        if (portLow is < 1 or > 65535 || portHigh is < 1 or > 65535 || portLow > portHigh)
            throw new ArgumentOutOfRangeException(nameof(portLow), $"--relay-ports {portLow}-{portHigh} is not a port range within 1-65535");
        this.settings = settings ?? RelaySettings.Default;
        this.settings.Validate();
        this.publicAddress = publicAddress;
        this.bindAddress = bindAddress ?? publicAddress;
        this.portLow = portLow;
        this.portHigh = portHigh;
        this.logger = logger;
        this.time = time ?? TimeProvider.System;
        CheckBindable(this.bindAddress, publicAddress);
        forwarder = RelayLeg.Forwarder.TryStart(this.settings.ForwardingThreads, logger);
        idleSweep = this.time.CreateTimer(_ => _ = SweepAsync(), null, this.settings.IdleSweepInterval, this.settings.IdleSweepInterval);
    }

    public TimeSpan IdleTimeout => settings.IdleTimeout;

    /// <summary>
    /// With <see cref="RelaySettings.KernelOffload"/>: sets up the kernel forwarding of established legs (an nftables table
    /// of this relay, IPv4 forwarding on); without it, nothing. Called once at startup.
    /// </summary>
    /// <exception cref="RelayOffloadUnavailableException">Asked for, but it cannot work here: the message says why.</exception>
    public async Task StartKernelOffloadAsync(CancellationToken cancellationToken)
    {
        if (!settings.KernelOffload || offload is not null)
            return;
        if (bindAddress.AddressFamily != AddressFamily.InterNetwork || bindAddress.Equals(IPAddress.Any))
            throw new RelayOffloadUnavailableException(
                $"the kernel forwards relay legs bound to one IPv4 address of this host; these bind {bindAddress} (--public-ip {publicAddress})");
        offload = await RelayOffload.StartAsync(bindAddress, portLow, logger, null, cancellationToken);
        kernelCounterTimer = time.CreateTimer(_ => _ = ReadKernelCountersAsync(), null, settings.KernelCountersInterval, settings.KernelCountersInterval);
        logger.LogInformation("Relay legs on {Address} are forwarded by the kernel once their peer and partner are known (Super:Relay:KernelOffload)", bindAddress);
    }

    /// <summary>A snapshot of the open legs, by assignment and side.</summary>
    public IReadOnlyList<RelayLegStatus> Legs
    {
        get
        {
            lock (gate)
                return [.. legs.Values.Select(leg => leg.Status()).OrderBy(s => s.AssignmentId, StringComparer.Ordinal).ThenBy(s => s.Side, StringComparer.Ordinal)];
        }
    }

    /// <summary>
    /// Opens the leg of <paramref name="side"/> of the assignment on a free port of <c>--relay-ports</c>, or returns the one
    /// open (re-targeted at this peer if it changed). It accepts datagrams only from <paramref name="peerAddress"/> (the
    /// address the peer's control stream comes from) and from its partner, and sends to the peer only once it heard from
    /// it, to the port its datagram came from — also when <paramref name="peerEndpoint"/> (an exit's claimed WireGuard
    /// endpoint) is given, which is shown but never sent to unheard (what the partner sends before is dropped, counted
    /// as <c>peer_not_heard</c>). The kernel takes the leg over only then, too (<see cref="RelayLeg.OffloadTarget"/>).
    /// </summary>
    /// <exception cref="RelayPortsExhaustedException">No port of <c>--relay-ports</c> is free.</exception>
    /// <exception cref="RelayDrainingException">The relay is handing its legs over (<see cref="BeginHandOver"/>).</exception>
    /// <exception cref="ArgumentException">An unknown side, or an address the legs cannot reach.</exception>
    public Task<RelayLeg> OpenLegAsync(string assignmentId, string side, IPAddress peerAddress, IPEndPoint? peerEndpoint,
        CancellationToken cancellationToken, RelayLegOwner? owner = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(assignmentId);
        if (side is not (RelaySides.Client or RelaySides.Exit))
            throw new ArgumentException($"A relay leg's side is '{RelaySides.Client}' or '{RelaySides.Exit}', not '{side}'.", nameof(side));
        cancellationToken.ThrowIfCancellationRequested();

        RelayLeg leg;
        lock (gate)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            if (draining)
                throw new RelayDrainingException($"this SuperNode ({publicAddress}) is shutting down and opens no relay leg; another SuperNode of its region does");
            if (owner is not null)
                owners[(assignmentId, side)] = owner;
            if (legs.TryGetValue((assignmentId, side), out var open))
            {
                if (!open.Retarget(peerAddress, peerEndpoint))
                {
                    logger.LogInformation("Relay leg {AssignmentId}/{Side} on port {Port} now serves peer {PeerAddress} ({PeerEndpoint})",
                        assignmentId, side, open.Port, peerAddress, peerEndpoint);
                    RequestOffloadSync();
                }
                return Task.FromResult(open);
            }
            var socket = BindFreePort();
            try
            {
                var port = ((IPEndPoint)socket.LocalEndPoint!).Port;
                leg = new RelayLeg(assignmentId, side, socket, new IPEndPoint(publicAddress, port), peerAddress, peerEndpoint, settings, time, logger,
                    forwarder);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
            legs.Add((assignmentId, side), leg);
            leg.PeerMoved = _ => RequestOffloadSync();
            leg.Start();
        }
        RelayMetrics.LegsOpen.Inc();
        logger.LogInformation("Relay leg {AssignmentId}/{Side} opened on port {Port} for peer {PeerAddress} ({PeerEndpoint})",
            assignmentId, side, leg.Port, peerAddress,
            peerEndpoint is null ? "port learned from its first datagram" : $"said to be at {peerEndpoint}; sent to only once it sent from {peerAddress}");
        return Task.FromResult(leg);
    }

    /// <summary>
    /// Chains the leg to <paramref name="partner"/>, the other leg of the assignment (on another SuperNode, or on this
    /// one when client and exit share a region): the peer's datagrams go there, and only its datagrams go to the peer.
    /// </summary>
    /// <remarks>A partner on this SuperNode is open before it is named here, so the chain can tell it is local.</remarks>
    /// <exception cref="InvalidOperationException">No such leg is open.</exception>
    public void SetPartner(string assignmentId, string side, IPEndPoint partner)
    {
        if (partner.Port == 0)
            throw new ArgumentException($"The partner of relay leg {assignmentId}/{side} needs a port, was {partner}.", nameof(partner));
        lock (gate)
        {
            if (!legs.TryGetValue((assignmentId, side), out var leg))
                throw new InvalidOperationException($"No relay leg {assignmentId}/{side} is open here.");
            leg.SetPartner(partner, ReachableAs(partner));
            logger.LogInformation("Relay leg {AssignmentId}/{Side} on port {Port} chained to {Partner}", assignmentId, side, leg.Port, partner);
        }
        RequestOffloadSync();
    }

    /// <summary>Closes every leg of the assignment, freeing their ports; returns how many were open. Idempotent.</summary>
    public async Task<int> CloseLegsAsync(string assignmentId)
    {
        lock (gate)
        {
            // Releases call this whether or not the assignment was relayed here: most find nothing to close.
            if (!legs.Values.Any(leg => leg.AssignmentId == assignmentId))
                return 0;
        }
        // Their last datagrams the kernel forwarded count too.
        await ReadKernelCountersAsync();
        List<RelayLeg> closing;
        lock (gate)
        {
            closing = [.. legs.Values.Where(leg => leg.AssignmentId == assignmentId)];
            foreach (var leg in closing)
                Forget(leg);
        }
        await CloseAllAsync(closing, "closed");
        return closing.Count;
    }

    /// <summary>Closes the legs that forwarded nothing for <see cref="RelaySettings.IdleTimeout"/>; a timer calls it every sweep interval.</summary>
    public async Task<int> CloseIdleLegsAsync()
    {
        // What the kernel forwarded counts as traffic too.
        await ReadKernelCountersAsync();
        var now = time.GetUtcNow().UtcTicks;
        List<RelayLeg> idle;
        lock (gate)
        {
            idle = [.. legs.Values.Where(leg => leg.IsIdle(now, settings.IdleTimeout.Ticks))];
            foreach (var leg in idle)
                Forget(leg);
        }
        await CloseAllAsync(idle, $"idle for {settings.IdleTimeout}");
        return idle.Count;
    }

    public async ValueTask DisposeAsync()
    {
        List<RelayLeg> all;
        lock (gate)
        {
            if (disposed)
                return;
            disposed = true;
            all = [.. legs.Values];
            legs.Clear();
            owners.Clear();
        }
        await idleSweep.DisposeAsync();
        if (kernelCounterTimer is not null)
            await kernelCounterTimer.DisposeAsync();
        await CloseAllAsync(all, "relay stopped");
        forwarder?.Dispose();
        if (offload is not null)
            await offload.DisposeAsync();
    }

    /// <summary>Brings the kernel's counts of the legs it forwards into theirs (a timer does it every <see cref="RelaySettings.KernelCountersInterval"/>).</summary>
    public async Task ReadKernelCountersAsync()
    {
        if (offload is null)
            return;
        await kernelCounterRead.WaitAsync();
        try
        {
            var counters = await offload.ReadCountersAsync(CancellationToken.None);
            var now = time.GetUtcNow().UtcTicks;
            lock (gate)
            {
                foreach (var leg in legs.Values)
                {
                    if (!counters.TryGetValue(leg.Port, out var total))
                        continue;
                    var last = kernelCounted.GetValueOrDefault(leg) ?? NoneCounted;
                    var delta = new OffloadCounters(total.PacketsToPeer - last.PacketsToPeer, total.BytesToPeer - last.BytesToPeer,
                        total.PacketsToPartner - last.PacketsToPartner, total.BytesToPartner - last.BytesToPartner);
                    // A counter that went back was made anew (the port left the kernel's set and came back).
                    if (delta.PacketsToPeer < 0 || delta.PacketsToPartner < 0)
                        delta = total;
                    kernelCounted[leg] = total;
                    if (delta.PacketsToPeer > 0 || delta.PacketsToPartner > 0)
                        leg.KernelForwarded(delta, now);
                }
                var open = legs.Values.ToHashSet();
                foreach (var gone in kernelCounted.Keys.Where(leg => !open.Contains(leg)).ToList())
                    kernelCounted.Remove(gone);
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            logger.LogWarning("Reading the kernel's relay counters failed: {Error}", ex.Message);
        }
        finally
        {
            kernelCounterRead.Release();
        }
    }

    private static readonly OffloadCounters NoneCounted = new(0, 0, 0, 0);

    /// <summary>Closes legs already forgotten: the kernel stops forwarding for them first, so a port is never reused under its rules.</summary>
    private async Task CloseAllAsync(List<RelayLeg> closing, string why)
    {
        if (closing.Count == 0)
            return;
        await SyncOffloadAsync();
        foreach (var leg in closing)
            await CloseAsync(leg, why);
    }

    private void RequestOffloadSync()
    {
        if (offload is not null)
            _ = SyncOffloadAsync();
    }

    /// <summary>
    /// Gives the kernel the legs it forwards now: those whose peer and partner are known, except those it cannot forward
    /// (<see cref="RelayOffloadRules.Forwardable"/>: a partner on this relay, say, as when client and exit share a region —
    /// one hop for the kernel would skip the second leg's rules): they stay in user space.
    /// </summary>
    private async Task SyncOffloadAsync()
    {
        if (offload is null)
            return;
        await offloadSync.WaitAsync();
        try
        {
            List<OffloadedLeg> established;
            lock (gate)
                established = [.. legs.Values.OrderBy(leg => leg.Port).Select(leg => leg.OffloadTarget()).OfType<OffloadedLeg>()];
            var leftToUserSpace = new List<string>();
            var forwarded = RelayOffloadRules.Forwardable(bindAddress, RelayOffloadRules.Normalize(established), leftToUserSpace);
            foreach (var why in leftToUserSpace)
                logger.LogDebug("Relay leg forwarded in user space: {Why}", why);
            await offload.ApplyAsync(forwarded, CancellationToken.None);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // The kernel keeps its previous set (each change is one transaction); user space forwards the rest.
            logger.LogError(ex, "The kernel's relay forwarding could not be updated");
        }
        finally
        {
            offloadSync.Release();
        }
    }

    /// <summary>
    /// Stops opening legs (each new one is refused with <see cref="RelayDrainingException"/>, so callers go to another
    /// SuperNode of the region) and returns the open ones with the sessions that hold their chains, to be told. The legs
    /// keep forwarding until <see cref="DisposeAsync"/>: a chain moves make-before-break.
    /// </summary>
    public IReadOnlyList<RelayLegHandOver> BeginHandOver()
    {
        lock (gate)
        {
            draining = true;
            return [.. legs.Values.Select(leg => new RelayLegHandOver(leg.AssignmentId, leg.Side, leg.Endpoint,
                owners.GetValueOrDefault((leg.AssignmentId, leg.Side))))];
        }
    }

    /// <summary>The exit legs open here whose chain's session is known (what the region's other SuperNodes are told, <see cref="ExitLegWatch"/>).</summary>
    public IReadOnlyList<RelayLegHandOver> ExitLegs()
    {
        lock (gate)
        {
            return [.. legs.Values.Where(leg => leg.Side == RelaySides.Exit && owners.ContainsKey((leg.AssignmentId, leg.Side)))
                .Select(leg => new RelayLegHandOver(leg.AssignmentId, leg.Side, leg.Endpoint, owners[(leg.AssignmentId, leg.Side)]))];
        }
    }

    public IPAddress? PeerAddressOf(string assignmentId, string side)
    {
        IPAddress? address;
        lock (gate)
            address = legs.TryGetValue((assignmentId, side), out var leg) ? leg.Status().PeerAddress : null;
        // A dual-mode socket holds IPv4 peers as IPv4-mapped addresses; callers speak plain IPv4.
        return address is { IsIPv4MappedToIPv6: true } ? address.MapToIPv4() : address;
    }

    async Task<IPEndPoint> IRelayLegs.OpenAsync(string assignmentId, string side, IPAddress peerAddress, IPEndPoint? peerEndpoint,
        RelayLegOwner owner, CancellationToken cancellationToken) =>
        (await OpenLegAsync(assignmentId, side, peerAddress, peerEndpoint, cancellationToken, owner)).Endpoint;

    Task<int> IRelayLegs.CloseAsync(string assignmentId) => CloseLegsAsync(assignmentId);

    /// <summary>Under <see cref="gate"/>: the leg is no longer this relay's.</summary>
    private void Forget(RelayLeg leg)
    {
        legs.Remove((leg.AssignmentId, leg.Side));
        owners.Remove((leg.AssignmentId, leg.Side));
    }

    private async Task SweepAsync()
    {
        try
        {
            await CloseIdleLegsAsync();
        }
        catch (Exception ex)
        {
            logger.LogError(ex, "Closing idle relay legs failed");
        }
    }

    private async Task CloseAsync(RelayLeg leg, string why)
    {
        await leg.CloseAsync();
        RelayMetrics.LegsOpen.Dec();
        var status = leg.Status();
        logger.LogInformation(
            "Relay leg {AssignmentId}/{Side} on port {Port} {Why}: {PacketsToPartner} datagrams ({BytesToPartner} bytes) to its partner, {PacketsToPeer} ({BytesToPeer} bytes) to its peer, {Dropped} dropped",
            leg.AssignmentId, leg.Side, leg.Port, why, status.PacketsToPartner, status.BytesToPartner, status.PacketsToPeer, status.BytesToPeer, status.Dropped);
    }

    /// <summary>
    /// Where a partner is reached and sends from. A leg of this SuperNode is announced with the public IP; when legs bind
    /// another address (the public IP is not on this host), its datagrams come from the bound address (loopback for
    /// the wildcard), so the chain uses that on both sides.
    /// </summary>
    private IPEndPoint ReachableAs(IPEndPoint partner)
    {
        if (bindAddress.Equals(publicAddress) || !partner.Address.Equals(publicAddress) || !legs.Values.Any(leg => leg.Port == partner.Port))
            return partner;
        var local = bindAddress.Equals(IPAddress.Any) ? IPAddress.Loopback
            : bindAddress.Equals(IPAddress.IPv6Any) ? IPAddress.IPv6Loopback
            : bindAddress;
        return new IPEndPoint(local, partner.Port);
    }

    /// <summary>Fails at startup, naming the setting, when legs could never bind.</summary>
    private static void CheckBindable(IPAddress bindAddress, IPAddress publicAddress)
    {
        using var probe = new Socket(bindAddress.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        try
        {
            probe.Bind(new IPEndPoint(bindAddress, 0));
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.AddressNotAvailable)
        {
            throw new ArgumentException(
                $"Relay legs cannot bind {bindAddress}: it is not an address of this host (--public-ip {publicAddress}). Behind 1:1 NAT, bind the wildcard address and announce the public IP.",
                nameof(bindAddress), ex);
        }
    }

    /// <summary>A socket on the next free port of the range, tried round-robin so a port just freed is reused last.</summary>
    private Socket BindFreePort()
    {
        var count = portHigh - portLow + 1;
        var held = legs.Values.Select(leg => leg.Port).ToHashSet();
        var taken = 0;
        for (var i = 0; i < count; i++)
        {
            var offset = (nextPortOffset + i) % count;
            var port = portLow + offset;
            if (held.Contains(port))
                continue;
            var socket = new Socket(bindAddress.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
            try
            {
                if (bindAddress.Equals(IPAddress.IPv6Any))
                    socket.DualMode = true;
                socket.Bind(new IPEndPoint(bindAddress, port));
                nextPortOffset = (offset + 1) % count;
                return socket;
            }
            catch (SocketException ex) when (ex.SocketErrorCode is SocketError.AddressAlreadyInUse or SocketError.AccessDenied)
            {
                socket.Dispose();
                taken++;
            }
            catch (SocketException ex) when (ex.SocketErrorCode == SocketError.AddressNotAvailable)
            {
                // Checked at startup: the address went away since. Not a capacity problem, so not an InvalidOperationException.
                socket.Dispose();
                throw new IOException($"Relay legs cannot bind {bindAddress} any more: it is no longer an address of this host.", ex);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        }
        throw new RelayPortsExhaustedException(
            $"No free UDP port for a relay leg in --relay-ports {portLow}-{portHigh} on {bindAddress}: {held.Count} held by relay legs, {taken} by other sockets. Widen --relay-ports.");
    }
}

/// <summary>A leg open here (when its SuperNode began shutting down, or now), and the session holding its chain (null: not known).</summary>
public sealed record RelayLegHandOver(string AssignmentId, string Side, IPEndPoint Endpoint, RelayLegOwner? Owner);
