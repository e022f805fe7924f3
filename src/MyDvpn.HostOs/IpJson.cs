using System.Collections.Immutable;
using System.Globalization;
using System.Text.Json;
using MyDvpn.Common;

namespace MyDvpn.HostOs;

/// <summary>A link as <c>ip -j link show</c> reports it.</summary>
public sealed record LinkReading(int Mtu, bool Up);

/// <summary>An IPv4 policy rule as <c>ip -j rule show</c> reports it.</summary>
public sealed record RuleReading(int Priority, bool Not, long? Fwmark, string? Table, int? SuppressPrefixLength);

/// <summary>A route as <c>ip -j route show</c> reports it.</summary>
public sealed record RouteReading(string Destination, string? Device, string? Protocol, int Metric);

/// <summary>Parsers of iproute2's JSON output (<c>ip -j …</c>) and nft's (<c>nft -j list …</c>).</summary>
public static class IpJson
{
    public static LinkReading? ParseLink(string json)
    {
        using var document = JsonDocument.Parse(Empty(json));
        foreach (var link in document.RootElement.EnumerateArray())
        {
            var mtu = link.TryGetProperty("mtu", out var m) ? m.GetInt32() : 0;
            var up = link.TryGetProperty("flags", out var flags) && flags.EnumerateArray().Any(f => f.GetString() == "UP");
            return new LinkReading(mtu, up);
        }
        return null;
    }

    /// <summary>The kind of link <c>ip -d -j link show</c> reports (<c>tun</c>, <c>wireguard</c>, <c>veth</c> …); "" for a
    /// plain device without link info, null when there is no link.</summary>
    public static string? ParseLinkKind(string json)
    {
        using var document = JsonDocument.Parse(Empty(json));
        foreach (var link in document.RootElement.EnumerateArray())
            return link.TryGetProperty("linkinfo", out var info) ? Text(info, "info_kind") ?? "" : "";
        return null;
    }

    /// <summary>The link's addresses as <c>ADDR/LEN</c>, link-local (scope link) ones left out.</summary>
    public static ImmutableArray<string> ParseAddresses(string json)
    {
        using var document = JsonDocument.Parse(Empty(json));
        var addresses = ImmutableArray.CreateBuilder<string>();
        foreach (var link in document.RootElement.EnumerateArray())
        {
            if (!link.TryGetProperty("addr_info", out var info))
                continue;
            foreach (var address in info.EnumerateArray())
            {
                var family = Text(address, "family");
                if (family is not ("inet" or "inet6") || Text(address, "scope") == "link")
                    continue;
                var local = Text(address, "local");
                if (local is null || !address.TryGetProperty("prefixlen", out var prefix))
                    continue;
                addresses.Add($"{local}/{prefix.GetInt32()}");
            }
        }
        return addresses.ToImmutable();
    }

    /// <param name="ipv6">Whether this is <c>ip -6</c> output (so <c>default</c> means ::/0).</param>
    public static ImmutableArray<RouteReading> ParseRoutes(string json, bool ipv6 = false)
    {
        using var document = JsonDocument.Parse(Empty(json));
        var routes = ImmutableArray.CreateBuilder<RouteReading>();
        foreach (var route in document.RootElement.EnumerateArray())
        {
            var type = Text(route, "type");
            if (type is not (null or "unicast"))
                continue; // multicast, local, broadcast …
            var dst = Text(route, "dst");
            if (dst is null || !Cidr.TryParse(dst, out var cidr, ipv6))
                continue;
            routes.Add(new RouteReading(cidr.Network().ToString(), Text(route, "dev"), Text(route, "protocol"),
                route.TryGetProperty("metric", out var metric) ? metric.GetInt32() : 0));
        }
        return routes.ToImmutable();
    }

    public static ImmutableArray<RuleReading> ParseRules(string json)
    {
        using var document = JsonDocument.Parse(Empty(json));
        var rules = ImmutableArray.CreateBuilder<RuleReading>();
        foreach (var rule in document.RootElement.EnumerateArray())
        {
            long? mark = null;
            if (Text(rule, "fwmark") is { } fwmark)
            {
                // "0xca6c", or "0xca6c/0xffff" with a mask.
                var value = fwmark.Split('/')[0];
                mark = value.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
                    ? long.Parse(value[2..], NumberStyles.HexNumber, CultureInfo.InvariantCulture)
                    : long.Parse(value, CultureInfo.InvariantCulture);
            }
            // iproute2 6.1 writes "suppress_prefixlen"; accept the option's long spelling too.
            int? suppress = rule.TryGetProperty("suppress_prefixlen", out var s) ? s.GetInt32()
                : rule.TryGetProperty("suppress_prefixlength", out var s2) ? s2.GetInt32()
                : null;
            rules.Add(new RuleReading(
                rule.TryGetProperty("priority", out var priority) ? priority.GetInt32() : 0,
                rule.TryGetProperty("not", out _),
                mark,
                Text(rule, "table"),
                suppress));
        }
        return rules.ToImmutable();
    }

    /// <summary>The device of the best IPv4 default route (<c>ip -j -4 route show default</c>), or null.</summary>
    public static string? ParseDefaultRouteDevice(string json) =>
        ParseRoutes(json).Where(r => r.Destination == "0.0.0.0/0" && r.Device is not null).OrderBy(r => r.Metric).FirstOrDefault()?.Device;

    /// <summary>The tables <c>nft -j list tables</c> reports, as <c>(family, name)</c>.</summary>
    public static ImmutableArray<(string Family, string Name)> ParseNftTables(string json)
    {
        using var document = JsonDocument.Parse(json);
        return [.. Objects(document, "table").Select(t => (Text(t, "family") ?? "", Text(t, "name") ?? ""))];
    }

    /// <summary>How many rules <c>nft -j list table …</c> reports.</summary>
    public static int CountNftRules(string json)
    {
        using var document = JsonDocument.Parse(json);
        return Objects(document, "rule").Count();
    }

    private static IEnumerable<JsonElement> Objects(JsonDocument document, string kind)
    {
        if (!document.RootElement.TryGetProperty("nftables", out var items))
            yield break;
        foreach (var item in items.EnumerateArray())
        {
            if (item.TryGetProperty(kind, out var value))
                yield return value;
        }
    }

    private static string? Text(JsonElement element, string property) =>
        element.TryGetProperty(property, out var value) ? value.ValueKind switch
        {
            JsonValueKind.String => value.GetString(),
            JsonValueKind.Number => value.GetRawText(),
            _ => null,
        } : null;

    /// <summary>ip prints nothing at all (not <c>[]</c>) for some empty listings.</summary>
    private static string Empty(string json) => string.IsNullOrWhiteSpace(json) ? "[]" : json;
}
