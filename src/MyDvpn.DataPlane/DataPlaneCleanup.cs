using System.Collections.Immutable;
using MyDvpn.DataPlane.Os;
using MyDvpn.HostOs;

namespace MyDvpn.DataPlane;

/// <summary>
/// Removes what a crashed agent left of an interface, by name alone: its wireguard-go process (in the runner's
/// namespace), the link, a stale UAPI socket, the nft table <c>inet mydvpn_&lt;name&gt;</c>, and — when the full tunnel it
/// used is given — that tunnel's two policy rules and table route. A link of that name that is not a WireGuard or TUN
/// device is someone else's and is left alone. Sysctl values it changed cannot be restored (the
/// old values died with it). A <see cref="WireGuardActor"/> does the device part itself before it first creates its
/// interface.
/// </summary>
public static class DataPlaneCleanup
{
    /// <returns>What was removed, for the log; empty when nothing was left.</returns>
    /// <exception cref="HostCommandException">A host command failed for another reason than "already gone".</exception>
    public static async Task<ImmutableArray<string>> RemoveLeftoversAsync(HostCommand runner, string interfaceName, FullTunnelSpec? fullTunnel = null,
        string socketDirectory = "/var/run/wireguard", CancellationToken cancellationToken = default)
    {
        if (!Reconciliation.SpecValidation.IsInterfaceName(interfaceName))
            throw new ArgumentException($"'{interfaceName}' is not an interface name", nameof(interfaceName));
        var host = new IpHostNetwork(runner, socketDirectory);
        var removed = ImmutableArray.CreateBuilder<string>();
        if (fullTunnel is not null)
        {
            var rules = await host.ReadRulesAsync(cancellationToken);
            foreach (var rule in PolicyRule.For(fullTunnel).Where(r => rules.Any(r.Matches)))
            {
                await host.RemoveRuleAsync(rule, cancellationToken);
                removed.Add($"rule '{rule}'");
            }
            if (await host.HasTableDefaultRouteAsync(interfaceName, fullTunnel.Table, cancellationToken))
            {
                await host.RemoveTableDefaultRouteAsync(interfaceName, fullTunnel.Table, cancellationToken);
                removed.Add($"default route in table {fullTunnel.Table}");
            }
        }
        if (await host.NftTableRuleCountAsync(interfaceName, cancellationToken) is not null)
        {
            await host.DeleteNftTableAsync(interfaceName, cancellationToken);
            removed.Add($"nft table {NftExitNat.Family} {NftExitNat.TableName(interfaceName)}");
        }
        removed.AddRange(await host.RemoveLeftoverDeviceAsync(interfaceName, refuseForeignLink: false, cancellationToken));
        return removed.ToImmutable();
    }
}
