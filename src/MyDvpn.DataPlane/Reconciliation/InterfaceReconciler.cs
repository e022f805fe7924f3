using System.Collections.Immutable;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using MyDvpn.Common;
using MyDvpn.DataPlane.Devices;
using MyDvpn.DataPlane.Os;
using MyDvpn.HostOs;

namespace MyDvpn.DataPlane.Reconciliation;

/// <summary>
/// The steps of one reconciliation — desired state → read → diff → apply → re-read — and of a teardown. Holds no state
/// of its own: it gets the actor's memory and device and returns the new ones in an <see cref="OperationResult"/>, also
/// when it fails half way (so the actor always knows what exists). Never throws.
/// </summary>
internal sealed class InterfaceReconciler(IHostNetwork host, IWireGuardDeviceFactory devices, ILogger logger, TimeProvider time)
{
    public const string IpForward = "net.ipv4.ip_forward";
    public const string SrcValidMark = "net.ipv4.conf.all.src_valid_mark";

    public async Task<OperationResult> ReconcileAsync(InterfaceSpec desired, HostMemory memory, IWireGuardDevice? device,
        Action<DeviceExit> exited, CancellationToken cancellationToken)
    {
        var progress = new Progress(memory, device);
        try
        {
            var config = await ApplyAsync(desired, progress, exited, cancellationToken);
            var (reading, differences) = await VerifyAsync(desired, config, progress, cancellationToken);
            return differences.IsEmpty
                ? new OperationResult(progress.Memory, progress.Device, reading, null, [])
                : new OperationResult(progress.Memory, progress.Device, null,
                    $"interface {desired.Name} still differs from the desired state after applying it: {string.Join("; ", differences)}", []);
        }
        catch (Exception e)
        {
            return new OperationResult(progress.Memory, progress.Device, null, Describe(e, desired.Name, cancellationToken), []);
        }
    }

    /// <summary>Removes everything of <paramref name="name"/>: full-tunnel rules and route, nft table, sysctls restored,
    /// the device and anything left of one by that name. Best effort: every step is tried, failures are listed.</summary>
    public async Task<OperationResult> TeardownAsync(string? name, HostMemory memory, IWireGuardDevice? device, CancellationToken cancellationToken)
    {
        var problems = ImmutableArray.CreateBuilder<string>();
        var progress = new Progress(memory, device);

        async Task Step(string what, Func<Task> action)
        {
            try
            {
                await action();
            }
            catch (Exception e)
            {
                problems.Add($"{what}: {Describe(e, name ?? "(none)", cancellationToken)}");
            }
        }

        if (name is not null && progress.Memory.FullTunnel is { } tunnel)
            await Step("removing the full-tunnel rules and route", () => RemoveFullTunnelAsync(name, tunnel, progress, cancellationToken));
        await Step($"restoring {SrcValidMark}", () => RestoreSrcValidMarkAsync(progress, cancellationToken));
        if (name is not null && progress.Memory.NftDocument is not null)
        {
            await Step("deleting the nft table", async () =>
            {
                await host.DeleteNftTableAsync(name, cancellationToken);
                progress.Memory = progress.Memory with { NftDocument = null };
            });
        }
        await Step($"restoring {IpForward}", () => RestoreIpForwardAsync(progress, cancellationToken));
        if (progress.Device is { } current)
        {
            await Step("removing the interface", async () =>
            {
                await current.DestroyAsync(cancellationToken);
                current.Dispose();
                progress.Device = null;
            });
        }
        if (name is not null)
        {
            await Step("removing leftovers of the interface", async () =>
            {
                var removed = await host.RemoveLeftoverDeviceAsync(name, refuseForeignLink: false, cancellationToken);
                if (removed.Length > 0)
                    logger.LogInformation("WireGuard interface {Interface}: removed {Leftovers}", name, string.Join(", ", removed));
            });
        }
        if (progress.Device is null)
            progress.Memory = progress.Memory with { LeftoversRemoved = false };
        if (name is not null && problems.Count == 0)
            logger.LogInformation("WireGuard interface {Interface}: torn down", name);
        return new OperationResult(progress.Memory, progress.Device, null, problems.Count == 0 ? null : string.Join("; ", problems), problems.ToImmutable());
    }

    /// <summary>The interface as the device reports it; null when there is no (live) device or it cannot be read.</summary>
    public async Task<OperationResult> ReadAsync(HostMemory memory, IWireGuardDevice? device, CancellationToken cancellationToken)
    {
        if (device is null || device.HasExited)
            return new OperationResult(memory, device, null, null, []);
        try
        {
            return new OperationResult(memory, device, ToReading(device, await device.ReadAsync(cancellationToken)), null, []);
        }
        catch (Exception e)
        {
            logger.LogWarning("WireGuard interface {Interface} could not be read: {Error}", device.Name, Describe(e, device.Name, cancellationToken));
            return new OperationResult(memory, device, null, null, []);
        }
    }

    private async Task<DeviceConfig> ApplyAsync(InterfaceSpec desired, Progress progress, Action<DeviceExit> exited, CancellationToken cancellationToken)
    {
        var name = desired.Name;

        // A crashed agent's leftovers go first: a wireguard-go still holding the name would stop a new one from starting.
        if (!progress.Memory.LeftoversRemoved && progress.Device is null)
        {
            var removed = await host.RemoveLeftoverDeviceAsync(name, refuseForeignLink: true, cancellationToken);
            if (await host.NftTableRuleCountAsync(name, cancellationToken) is not null)
            {
                await host.DeleteNftTableAsync(name, cancellationToken);
                removed = removed.Add($"nft table {NftExitNat.Family} {NftExitNat.TableName(name)}");
            }
            if (removed.Length > 0)
                logger.LogWarning("WireGuard interface {Interface}: removed leftovers of an earlier run: {Leftovers}", name, string.Join(", ", removed));
            progress.Memory = progress.Memory with { LeftoversRemoved = true };
        }

        // The device: started when there is none, started again when it exited or its link vanished.
        if (progress.Device is { } existing)
        {
            var gone = existing.HasExited ? "its process exited"
                : await host.ReadLinkAsync(name, cancellationToken) is null ? "its link vanished"
                : null;
            if (gone is not null)
            {
                logger.LogWarning("WireGuard interface {Interface} is gone ({Reason}); starting it again", name, gone);
                try
                {
                    await existing.DestroyAsync(cancellationToken);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    logger.LogWarning("WireGuard interface {Interface}: cleaning up the old device failed: {Error}", name, e.Message);
                }
                existing.Dispose();
                progress.Device = null;
            }
        }
        progress.Device ??= await devices.CreateAsync(name, exited, cancellationToken);
        var device = progress.Device;

        // WireGuard itself, peer by peer (the fwmark first of all, before any route could catch WireGuard's own UDP).
        var config = await DeviceConfigAsync(desired, cancellationToken);
        var change = DeviceDiff.Compute(config, await device.ReadAsync(cancellationToken), time.GetUtcNow());
        if (!change.IsEmpty)
        {
            logger.LogInformation("WireGuard interface {Interface}: {Change}", name, change.ToString());
            await device.ApplyAsync(config, change, cancellationToken);
        }

        // Link, addresses, routes.
        var link = await host.ReadLinkAsync(name, cancellationToken) ?? throw new InvalidOperationException($"interface {name} vanished while it was configured");
        if (link.Mtu != desired.Mtu || !link.Up)
            await host.SetLinkAsync(name, desired.Mtu, cancellationToken);

        var wantAddresses = DesiredAddresses(desired);
        var haveAddresses = (await host.ReadAddressesAsync(name, cancellationToken)).Select(Cidr.NormalizeAddress).ToHashSet(StringComparer.OrdinalIgnoreCase);
        foreach (var address in wantAddresses.Where(a => !haveAddresses.Contains(a)))
            await host.AddAddressAsync(name, address, cancellationToken);
        foreach (var address in haveAddresses.Where(a => !wantAddresses.Contains(a)))
            await host.RemoveAddressAsync(name, address, cancellationToken);

        var wantRoutes = DesiredRoutes(desired);
        var haveRoutes = (await host.ReadRoutesAsync(name, cancellationToken)).ToHashSet(StringComparer.OrdinalIgnoreCase);
        foreach (var route in wantRoutes.Where(r => !haveRoutes.Contains(r)))
            await host.AddRouteAsync(name, route, cancellationToken);
        foreach (var route in haveRoutes.Where(r => !wantRoutes.Contains(r)))
            await host.RemoveRouteAsync(name, route, cancellationToken);

        await ReconcileFullTunnelAsync(desired, progress, cancellationToken);
        await ReconcileExitNatAsync(desired, progress, cancellationToken);
        return config;
    }

    private async Task ReconcileFullTunnelAsync(InterfaceSpec desired, Progress progress, CancellationToken cancellationToken)
    {
        var name = desired.Name;
        var want = desired.FullTunnel;
        if (progress.Memory.FullTunnel is { } applied && applied != want)
            await RemoveFullTunnelAsync(name, applied, progress, cancellationToken);
        if (want is null)
        {
            await RestoreSrcValidMarkAsync(progress, cancellationToken);
            return;
        }

        var validMark = await host.ReadSysctlAsync(SrcValidMark, cancellationToken);
        if (validMark != "1")
        {
            progress.Memory = progress.Memory with { OriginalSrcValidMark = progress.Memory.OriginalSrcValidMark ?? validMark };
            await host.WriteSysctlAsync(SrcValidMark, "1", cancellationToken);
        }
        progress.Memory = progress.Memory with { FullTunnel = want };
        if (!await host.HasTableDefaultRouteAsync(name, want.Table, cancellationToken))
        {
            logger.LogInformation("WireGuard interface {Interface}: default route in table {Table}", name, want.Table);
            await host.SetTableDefaultRouteAsync(name, want.Table, cancellationToken);
        }
        var rules = await host.ReadRulesAsync(cancellationToken);
        foreach (var rule in PolicyRule.For(want))
        {
            if (rules.Any(rule.Matches))
                continue;
            logger.LogInformation("WireGuard interface {Interface}: rule {Rule}", name, rule.ToString());
            await host.AddRuleAsync(rule, cancellationToken);
            if (!progress.Memory.OwnedRules.Contains(rule))
                progress.Memory = progress.Memory with { OwnedRules = progress.Memory.OwnedRules.Add(rule) };
        }
    }

    private async Task RemoveFullTunnelAsync(string name, FullTunnelSpec applied, Progress progress, CancellationToken cancellationToken)
    {
        // Rules first, so traffic goes back to the main table before the tunnel's route goes.
        foreach (var rule in progress.Memory.OwnedRules)
        {
            await host.RemoveRuleAsync(rule, cancellationToken);
            progress.Memory = progress.Memory with { OwnedRules = progress.Memory.OwnedRules.Remove(rule) };
        }
        await host.RemoveTableDefaultRouteAsync(name, applied.Table, cancellationToken);
        progress.Memory = progress.Memory with { FullTunnel = null };
    }

    private async Task RestoreSrcValidMarkAsync(Progress progress, CancellationToken cancellationToken)
    {
        if (progress.Memory.OriginalSrcValidMark is not { } original)
            return;
        await host.WriteSysctlAsync(SrcValidMark, original, cancellationToken);
        progress.Memory = progress.Memory with { OriginalSrcValidMark = null };
    }

    private async Task ReconcileExitNatAsync(InterfaceSpec desired, Progress progress, CancellationToken cancellationToken)
    {
        var name = desired.Name;
        if (desired.ExitNat is not { } nat)
        {
            if (progress.Memory.NftDocument is not null)
            {
                await host.DeleteNftTableAsync(name, cancellationToken);
                progress.Memory = progress.Memory with { NftDocument = null };
            }
            await RestoreIpForwardAsync(progress, cancellationToken);
            return;
        }

        var forwarding = await host.ReadSysctlAsync(IpForward, cancellationToken);
        if (forwarding != "1")
        {
            progress.Memory = progress.Memory with { OriginalIpForward = progress.Memory.OriginalIpForward ?? forwarding };
            await host.WriteSysctlAsync(IpForward, "1", cancellationToken);
        }
        var uplink = nat.Uplink
            ?? await host.DefaultRouteDeviceAsync(cancellationToken)
            ?? throw new InvalidOperationException("exit NAT: no uplink given and no IPv4 default route to detect it from");
        var document = NftExitNat.Document(name, uplink, nat.SourceSubnets);
        var rules = await host.NftTableRuleCountAsync(name, cancellationToken);
        if (document != progress.Memory.NftDocument || rules != NftExitNat.RuleCount(nat.SourceSubnets.Length))
        {
            logger.LogInformation("WireGuard interface {Interface}: nft table {Table} masquerades {Subnets} out of {Uplink}",
                name, NftExitNat.TableName(name), string.Join(",", nat.SourceSubnets), uplink);
            await host.ApplyNftAsync(document, cancellationToken);
            progress.Memory = progress.Memory with { NftDocument = document };
        }
    }

    private async Task RestoreIpForwardAsync(Progress progress, CancellationToken cancellationToken)
    {
        if (progress.Memory.OriginalIpForward is not { } original)
            return;
        await host.WriteSysctlAsync(IpForward, original, cancellationToken);
        progress.Memory = progress.Memory with { OriginalIpForward = null };
    }

    /// <summary>Re-reads everything and lists what still differs.</summary>
    private async Task<(InterfaceReading Reading, ImmutableArray<string> Differences)> VerifyAsync(InterfaceSpec desired, DeviceConfig config,
        Progress progress, CancellationToken cancellationToken)
    {
        var name = desired.Name;
        var device = progress.Device!;
        var differences = ImmutableArray.CreateBuilder<string>();
        var state = await device.ReadAsync(cancellationToken);
        var residue = DeviceDiff.Compute(config, state, time.GetUtcNow());
        if (!residue.IsEmpty)
            differences.Add($"device: {residue}");

        var link = await host.ReadLinkAsync(name, cancellationToken);
        if (link is null)
            differences.Add("the link is gone");
        else if (!link.Up || link.Mtu != desired.Mtu)
            differences.Add($"link is {(link.Up ? "up" : "down")} with MTU {link.Mtu}");

        if (link is not null)
        {
            var addresses = (await host.ReadAddressesAsync(name, cancellationToken)).Select(Cidr.NormalizeAddress).ToHashSet(StringComparer.OrdinalIgnoreCase);
            if (!addresses.SetEquals(DesiredAddresses(desired)))
                differences.Add($"addresses are {string.Join(",", addresses)}");
            var routes = (await host.ReadRoutesAsync(name, cancellationToken)).ToHashSet(StringComparer.OrdinalIgnoreCase);
            if (!routes.SetEquals(DesiredRoutes(desired)))
                differences.Add($"routes are {string.Join(",", routes)}");
        }

        if (desired.FullTunnel is { } tunnel)
        {
            if (!await host.HasTableDefaultRouteAsync(name, tunnel.Table, cancellationToken))
                differences.Add($"no default route in table {tunnel.Table}");
            var rules = await host.ReadRulesAsync(cancellationToken);
            foreach (var rule in PolicyRule.For(tunnel).Where(r => !rules.Any(r.Matches)))
                differences.Add($"rule '{rule}' is missing");
        }
        if (desired.ExitNat is { } nat && await host.NftTableRuleCountAsync(name, cancellationToken) != NftExitNat.RuleCount(nat.SourceSubnets.Length))
            differences.Add($"nft table {NftExitNat.TableName(name)} is missing or incomplete");

        return (ToReading(device, state), differences.ToImmutable());
    }

    private static async Task<DeviceConfig> DeviceConfigAsync(InterfaceSpec spec, CancellationToken cancellationToken)
    {
        var peers = ImmutableList.CreateBuilder<DevicePeerConfig>();
        foreach (var peer in spec.Peers ?? [])
        {
            System.Net.IPEndPoint? endpoint = null;
            if (peer.Endpoint is not null)
            {
                try
                {
                    endpoint = await Endpoints.ResolveAsync(peer.Endpoint, cancellationToken);
                }
                catch (SocketException e)
                {
                    throw new InvalidOperationException($"endpoint '{peer.Endpoint}' of peer {DeviceChange.Short(peer.PublicKey)} does not resolve: {e.Message}", e);
                }
            }
            var allowed = (peer.AllowedIps.IsDefault ? [] : peer.AllowedIps).Select(Cidr.NormalizeNetwork).Distinct(StringComparer.OrdinalIgnoreCase);
            peers.Add(new DevicePeerConfig(peer.PublicKey, endpoint, [.. allowed], peer.PersistentKeepalive) { HandshakeNotBefore = peer.HandshakeNotBefore });
        }
        return new DeviceConfig(spec.PrivateKey, spec.ListenPort, spec.FullTunnel?.FirewallMark ?? 0, peers.ToImmutable());
    }

    private static HashSet<string> DesiredAddresses(InterfaceSpec spec) =>
        (spec.Addresses.IsDefault ? [] : spec.Addresses).Select(Cidr.NormalizeAddress).ToHashSet(StringComparer.OrdinalIgnoreCase);

    /// <summary>
    /// Main-table routes through the interface: every peer's allowed network that the interface's own address subnets do
    /// not already cover (the kernel routes those). A /0 is never routed here: the IPv4 default goes through
    /// <see cref="FullTunnelSpec"/>'s table, an IPv6 default is not routed at all.
    /// </summary>
    internal static HashSet<string> DesiredRoutes(InterfaceSpec spec)
    {
        var subnets = (spec.Addresses.IsDefault ? [] : spec.Addresses).Select(a => Cidr.Parse(a).Network()).ToList();
        return (spec.Peers ?? [])
            .SelectMany(p => p.AllowedIps.IsDefault ? [] : p.AllowedIps)
            .Select(ip => Cidr.Parse(ip).Network())
            .Where(n => !n.IsDefault && !subnets.Any(s => s.Contains(n)))
            .Select(n => n.ToString())
            .ToHashSet(StringComparer.OrdinalIgnoreCase);
    }

    private static InterfaceReading ToReading(IWireGuardDevice device, DeviceState state) =>
        new(device.Name, state.PublicKey ?? [], state.ListenPort, [.. state.Peers.Select(p => p.ToReading())], device.Backend);

    private static string Describe(Exception e, string name, CancellationToken cancellationToken) => e switch
    {
        OperationCanceledException when cancellationToken.IsCancellationRequested => $"interface {name}: the operation was cancelled or timed out",
        HostCommandException or UapiException or InvalidOperationException => e.Message,
        _ => $"{e.GetType().Name}: {e.Message}",
    };

    /// <summary>The memory and device as one operation changes them (local to that operation).</summary>
    private sealed class Progress(HostMemory memory, IWireGuardDevice? device)
    {
        public HostMemory Memory { get; set; } = memory;

        public IWireGuardDevice? Device { get; set; } = device;
    }
}
