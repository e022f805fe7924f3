using System.Collections.Immutable;
using System.Globalization;
using MyDvpn.Common;
using MyDvpn.HostOs;

namespace MyDvpn.DataPlane.Os;

/// <summary>Links through iproute2, never a shell: every command an argument list, its exit code and stderr checked.</summary>
internal static class IpLinks
{
    /// <summary>The link's kind (<c>tun</c>, <c>wireguard</c> …; "" without link info), or null when there is no such link.</summary>
    public static async Task<string?> KindAsync(HostCommand runner, string name, CancellationToken cancellationToken)
    {
        var result = await runner.RunAsync("ip", ["-d", "-j", "link", "show", "dev", name], cancellationToken: cancellationToken);
        if (!result.Succeeded)
            return IsMissingDevice(result) ? null : throw new HostCommandException(result);
        return IpJson.ParseLinkKind(result.StandardOutput);
    }

    public static async Task<bool> DeleteIfPresentAsync(HostCommand runner, string name, CancellationToken cancellationToken)
    {
        var result = await runner.RunAsync("ip", ["link", "del", "dev", name], cancellationToken: cancellationToken);
        if (result.Succeeded)
            return true;
        return IsMissingDevice(result) ? false : throw new HostCommandException(result);
    }

    public static bool IsMissingDevice(CommandResult result) =>
        result.StandardError.Contains("does not exist", StringComparison.Ordinal)
        || result.StandardError.Contains("Cannot find device", StringComparison.Ordinal);
}

/// <summary>The real host (or the runner's network namespace): iproute2, sysctl and nft through <see cref="HostCommand"/>.</summary>
internal sealed class IpHostNetwork(HostCommand runner, string socketDirectory) : IHostNetwork
{
    public HostCommand Runner { get; } = runner;

    public async Task<LinkReading?> ReadLinkAsync(string name, CancellationToken cancellationToken)
    {
        var result = await Runner.RunAsync("ip", ["-j", "link", "show", "dev", name], cancellationToken: cancellationToken);
        if (!result.Succeeded)
            return IpLinks.IsMissingDevice(result) ? null : throw new HostCommandException(result);
        return IpJson.ParseLink(result.StandardOutput);
    }

    public Task SetLinkAsync(string name, int mtu, CancellationToken cancellationToken) =>
        Run(cancellationToken, "ip", "link", "set", "dev", name, "mtu", mtu.ToString(CultureInfo.InvariantCulture), "up");

    public async Task<ImmutableArray<string>> ReadAddressesAsync(string name, CancellationToken cancellationToken) =>
        IpJson.ParseAddresses(await Runner.RunCheckedAsync("ip", ["-j", "addr", "show", "dev", name], cancellationToken: cancellationToken));

    public Task AddAddressAsync(string name, string address, CancellationToken cancellationToken) =>
        Run(cancellationToken, "ip", "addr", "add", address, "dev", name);

    public async Task RemoveAddressAsync(string name, string address, CancellationToken cancellationToken)
    {
        var result = await Runner.RunAsync("ip", ["addr", "del", address, "dev", name], cancellationToken: cancellationToken);
        if (!result.Succeeded && !result.StandardError.Contains("Address not found", StringComparison.Ordinal)
            && !result.StandardError.Contains("Cannot assign requested address", StringComparison.Ordinal))
            throw new HostCommandException(result);
    }

    public async Task<ImmutableArray<string>> ReadRoutesAsync(string name, CancellationToken cancellationToken)
    {
        var v4 = IpJson.ParseRoutes(await Runner.RunCheckedAsync("ip", ["-j", "-4", "route", "show", "table", "main", "dev", name], cancellationToken: cancellationToken));
        var v6 = IpJson.ParseRoutes(await Runner.RunCheckedAsync("ip", ["-j", "-6", "route", "show", "table", "main", "dev", name], cancellationToken: cancellationToken), ipv6: true);
        return [.. v4.Concat(v6).Where(r => r.Protocol != "kernel" && !r.Destination.StartsWith("fe80:", StringComparison.OrdinalIgnoreCase)).Select(r => r.Destination)];
    }

    public Task AddRouteAsync(string name, string network, CancellationToken cancellationToken) =>
        Run(cancellationToken, "ip", Family(network), "route", "replace", network, "dev", name, "proto", "static");

    public async Task RemoveRouteAsync(string name, string network, CancellationToken cancellationToken)
    {
        var result = await Runner.RunAsync("ip", [Family(network), "route", "del", network, "dev", name], cancellationToken: cancellationToken);
        if (!result.Succeeded && !IsMissingRoute(result))
            throw new HostCommandException(result);
    }

    public async Task<bool> HasTableDefaultRouteAsync(string name, int table, CancellationToken cancellationToken)
    {
        var result = await Runner.RunAsync("ip", ["-j", "-4", "route", "show", "table", Number(table)], cancellationToken: cancellationToken);
        if (!result.Succeeded)
            return IsMissingRoute(result) ? false : throw new HostCommandException(result);
        return IpJson.ParseRoutes(result.StandardOutput).Any(r => r.Destination == "0.0.0.0/0" && r.Device == name);
    }

    public Task SetTableDefaultRouteAsync(string name, int table, CancellationToken cancellationToken) =>
        Run(cancellationToken, "ip", "-4", "route", "replace", "default", "dev", name, "table", Number(table));

    public async Task RemoveTableDefaultRouteAsync(string name, int table, CancellationToken cancellationToken)
    {
        var result = await Runner.RunAsync("ip", ["-4", "route", "del", "default", "dev", name, "table", Number(table)], cancellationToken: cancellationToken);
        if (!result.Succeeded && !IsMissingRoute(result) && !IpLinks.IsMissingDevice(result))
            throw new HostCommandException(result);
    }

    public async Task<ImmutableArray<RuleReading>> ReadRulesAsync(CancellationToken cancellationToken) =>
        IpJson.ParseRules(await Runner.RunCheckedAsync("ip", ["-j", "-4", "rule", "show"], cancellationToken: cancellationToken));

    public Task AddRuleAsync(PolicyRule rule, CancellationToken cancellationToken) =>
        Runner.RunCheckedAsync("ip", ["-4", "rule", "add", .. rule.Arguments()], cancellationToken: cancellationToken);

    public async Task RemoveRuleAsync(PolicyRule rule, CancellationToken cancellationToken)
    {
        var result = await Runner.RunAsync("ip", ["-4", "rule", "del", .. rule.Arguments()], cancellationToken: cancellationToken);
        if (!result.Succeeded && !result.StandardError.Contains("No such file or directory", StringComparison.Ordinal))
            throw new HostCommandException(result);
    }

    public async Task<string> ReadSysctlAsync(string key, CancellationToken cancellationToken) =>
        (await Runner.RunCheckedAsync("sysctl", ["-n", key], cancellationToken: cancellationToken)).Trim();

    public Task WriteSysctlAsync(string key, string value, CancellationToken cancellationToken) =>
        Run(cancellationToken, "sysctl", "-q", "-w", $"{key}={value}");

    public async Task<string?> DefaultRouteDeviceAsync(CancellationToken cancellationToken) =>
        IpJson.ParseDefaultRouteDevice(await Runner.RunCheckedAsync("ip", ["-j", "-4", "route", "show", "default"], cancellationToken: cancellationToken));

    public async Task<int?> NftTableRuleCountAsync(string interfaceName, CancellationToken cancellationToken)
    {
        var result = await Runner.RunAsync("nft", ["-j", "list", "table", NftExitNat.Family, NftExitNat.TableName(interfaceName)], cancellationToken: cancellationToken);
        if (!result.Succeeded)
            return result.StandardError.Contains("No such file or directory", StringComparison.Ordinal) ? null : throw new HostCommandException(result);
        return IpJson.CountNftRules(result.StandardOutput);
    }

    public Task ApplyNftAsync(string document, CancellationToken cancellationToken) =>
        Runner.RunCheckedAsync("nft", ["-j", "-f", "-"], document, cancellationToken);

    public Task DeleteNftTableAsync(string interfaceName, CancellationToken cancellationToken) =>
        ApplyNftAsync(NftExitNat.DeleteDocument(interfaceName), cancellationToken);

    public Task<ImmutableArray<string>> RemoveLeftoverDeviceAsync(string name, bool refuseForeignLink, CancellationToken cancellationToken) =>
        WireGuardGoProcesses.RemoveLeftoverDeviceAsync(Runner, name, socketDirectory, refuseForeignLink, cancellationToken);

    private Task Run(CancellationToken cancellationToken, string program, params string[] arguments) =>
        Runner.RunCheckedAsync(program, arguments, cancellationToken: cancellationToken);

    private static string Family(string network) => Cidr.Parse(network).IsIPv4 ? "-4" : "-6";

    private static string Number(int value) => value.ToString(CultureInfo.InvariantCulture);

    private static bool IsMissingRoute(CommandResult result) =>
        result.StandardError.Contains("No such process", StringComparison.Ordinal)
        || result.StandardError.Contains("FIB table does not exist", StringComparison.Ordinal);
}
