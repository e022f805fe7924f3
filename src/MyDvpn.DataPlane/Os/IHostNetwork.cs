using System.Collections.Immutable;
using System.Globalization;
using MyDvpn.HostOs;

namespace MyDvpn.DataPlane.Os;

/// <summary>
/// The host's network configuration as the reconciler sees it: links, addresses, routes, policy rules, sysctls and the
/// interface's nftables table. <see cref="IpHostNetwork"/> is the real one (iproute2, sysctl, nft through
/// <see cref="HostCommand"/>); tests of the reconciliation logic use an in-memory one.
/// </summary>
internal interface IHostNetwork
{
    Task<LinkReading?> ReadLinkAsync(string name, CancellationToken cancellationToken);

    /// <summary>Sets the MTU and brings the link up.</summary>
    Task SetLinkAsync(string name, int mtu, CancellationToken cancellationToken);

    /// <summary>The link's addresses (<c>ADDR/LEN</c>), link-local ones left out.</summary>
    Task<ImmutableArray<string>> ReadAddressesAsync(string name, CancellationToken cancellationToken);

    Task AddAddressAsync(string name, string address, CancellationToken cancellationToken);

    Task RemoveAddressAsync(string name, string address, CancellationToken cancellationToken);

    /// <summary>The main table's routes through the link that the kernel did not add itself (networks, both families).</summary>
    Task<ImmutableArray<string>> ReadRoutesAsync(string name, CancellationToken cancellationToken);

    Task AddRouteAsync(string name, string network, CancellationToken cancellationToken);

    Task RemoveRouteAsync(string name, string network, CancellationToken cancellationToken);

    Task<bool> HasTableDefaultRouteAsync(string name, int table, CancellationToken cancellationToken);

    Task SetTableDefaultRouteAsync(string name, int table, CancellationToken cancellationToken);

    /// <summary>Removes the IPv4 default route through the link in <paramref name="table"/>, if there is one.</summary>
    Task RemoveTableDefaultRouteAsync(string name, int table, CancellationToken cancellationToken);

    Task<ImmutableArray<RuleReading>> ReadRulesAsync(CancellationToken cancellationToken);

    Task AddRuleAsync(PolicyRule rule, CancellationToken cancellationToken);

    Task RemoveRuleAsync(PolicyRule rule, CancellationToken cancellationToken);

    Task<string> ReadSysctlAsync(string key, CancellationToken cancellationToken);

    Task WriteSysctlAsync(string key, string value, CancellationToken cancellationToken);

    /// <summary>The device of the IPv4 default route (main table), or null when there is none.</summary>
    Task<string?> DefaultRouteDeviceAsync(CancellationToken cancellationToken);

    /// <summary>How many rules the interface's nft table holds; null when it does not exist.</summary>
    Task<int?> NftTableRuleCountAsync(string interfaceName, CancellationToken cancellationToken);

    Task ApplyNftAsync(string document, CancellationToken cancellationToken);

    /// <summary>Deletes the interface's nft table, if it exists.</summary>
    Task DeleteNftTableAsync(string interfaceName, CancellationToken cancellationToken);

    /// <summary>Removes what a crashed agent may have left of a device of this name in this namespace: its wireguard-go
    /// process, its link, a stale UAPI socket. Returns what was removed. A link of that name that is not WireGuard or TUN
    /// is never touched: with <paramref name="refuseForeignLink"/> that is an <see cref="InvalidOperationException"/>.</summary>
    Task<ImmutableArray<string>> RemoveLeftoverDeviceAsync(string name, bool refuseForeignLink, CancellationToken cancellationToken);
}

/// <summary>One of the two IPv4 policy rules of a full tunnel.</summary>
/// <param name="NotFwmark">For <c>not fwmark M lookup T</c>; null for the suppress rule.</param>
/// <param name="SuppressPrefixLength">For <c>lookup main suppress_prefixlength 0</c>; null for the tunnel rule.</param>
internal sealed record PolicyRule(int Priority, string Table, int? NotFwmark, int? SuppressPrefixLength)
{
    /// <summary>The rules of a full tunnel, suppress rule first.</summary>
    public static ImmutableArray<PolicyRule> For(FullTunnelSpec spec) =>
    [
        new(FullTunnelSpec.SuppressRulePriority, "main", null, 0),
        new(FullTunnelSpec.TunnelRulePriority, spec.Table.ToString(CultureInfo.InvariantCulture), spec.FirewallMark, null),
    ];

    /// <summary>The selector and action after <c>ip -4 rule add|del</c>.</summary>
    public ImmutableArray<string> Arguments()
    {
        var arguments = ImmutableArray.CreateBuilder<string>();
        if (NotFwmark is { } mark)
            arguments.AddRange("not", "fwmark", mark.ToString(CultureInfo.InvariantCulture));
        arguments.AddRange("table", Table);
        if (SuppressPrefixLength is { } suppress)
            arguments.AddRange("suppress_prefixlength", suppress.ToString(CultureInfo.InvariantCulture));
        arguments.AddRange("priority", Priority.ToString(CultureInfo.InvariantCulture));
        return arguments.ToImmutable();
    }

    public bool Matches(RuleReading rule) =>
        rule.Priority == Priority
        && rule.Table == Table
        && rule.Not == NotFwmark.HasValue
        && rule.Fwmark == NotFwmark
        && rule.SuppressPrefixLength == SuppressPrefixLength;

    public override string ToString() => string.Join(' ', Arguments());
}
