using System.Text;
using System.Text.Json.Nodes;
using MyDvpn.Common;

namespace MyDvpn.DataPlane.Os;

/// <summary>
/// The exit's nftables table, <c>inet mydvpn_&lt;interface&gt;</c>, as one JSON batch for <c>nft -j -f -</c>:
/// add table, delete table, add table (so the batch replaces whatever was there, atomically, and works whether or not
/// it existed), then a forward chain accepting interface→uplink and uplink→interface (established, related) and a
/// postrouting NAT chain masquerading each source subnet out of the uplink. Both chains have policy accept: the table
/// adds, it never blocks anything of the host's own rules.
/// </summary>
internal static class NftExitNat
{
    public const string Family = "inet";

    /// <summary>The table of an interface: <c>mydvpn_</c> + the name with anything but letters, digits and _ as _.</summary>
    public static string TableName(string interfaceName)
    {
        var name = new StringBuilder("mydvpn_");
        foreach (var c in interfaceName)
            name.Append(char.IsAsciiLetterOrDigit(c) || c == '_' ? c : '_');
        return name.ToString();
    }

    /// <summary>How many rules <see cref="Document"/> creates for <paramref name="subnetCount"/> subnets.</summary>
    public static int RuleCount(int subnetCount) => 2 + subnetCount;

    public static string Document(string interfaceName, string uplink, IEnumerable<string> sourceSubnets)
    {
        var table = TableName(interfaceName);
        var commands = new JsonArray
        {
            Command("add", "table", Table(table)),
            Command("delete", "table", Table(table)),
            Command("add", "table", Table(table)),
            Command("add", "chain", new JsonObject
            {
                ["family"] = Family, ["table"] = table, ["name"] = "forward",
                ["type"] = "filter", ["hook"] = "forward", ["prio"] = 0, ["policy"] = "accept",
            }),
            Command("add", "chain", new JsonObject
            {
                ["family"] = Family, ["table"] = table, ["name"] = "postrouting",
                ["type"] = "nat", ["hook"] = "postrouting", ["prio"] = 100, ["policy"] = "accept",
            }),
            Rule(table, "forward", Match("iifname", interfaceName), Match("oifname", uplink), Counter(), Verdict("accept")),
            Rule(table, "forward", Match("iifname", uplink), Match("oifname", interfaceName),
                new JsonObject { ["match"] = new JsonObject { ["op"] = "in", ["left"] = new JsonObject { ["ct"] = new JsonObject { ["key"] = "state" } }, ["right"] = new JsonArray("established", "related") } },
                Counter(), Verdict("accept")),
        };
        foreach (var subnet in sourceSubnets)
        {
            var network = Cidr.Parse(subnet).Network();
            commands.Add(Rule(table, "postrouting",
                new JsonObject
                {
                    ["match"] = new JsonObject
                    {
                        ["op"] = "==",
                        ["left"] = new JsonObject { ["payload"] = new JsonObject { ["protocol"] = network.IsIPv4 ? "ip" : "ip6", ["field"] = "saddr" } },
                        ["right"] = new JsonObject { ["prefix"] = new JsonObject { ["addr"] = network.Address.ToString(), ["len"] = network.PrefixLength } },
                    },
                },
                Match("oifname", uplink), Counter(), Verdict("masquerade")));
        }
        return new JsonObject { ["nftables"] = commands }.ToJsonString();
    }

    /// <summary>Deletes the table whether or not it exists (add, then delete, in one batch).</summary>
    public static string DeleteDocument(string interfaceName)
    {
        var table = TableName(interfaceName);
        return new JsonObject { ["nftables"] = new JsonArray(Command("add", "table", Table(table)), Command("delete", "table", Table(table))) }.ToJsonString();
    }

    private static JsonObject Table(string name) => new() { ["family"] = Family, ["name"] = name };

    private static JsonObject Command(string verb, string kind, JsonObject body) => new() { [verb] = new JsonObject { [kind] = body } };

    private static JsonObject Rule(string table, string chain, params JsonNode[] expressions) =>
        Command("add", "rule", new JsonObject { ["family"] = Family, ["table"] = table, ["chain"] = chain, ["expr"] = new JsonArray(expressions) });

    private static JsonObject Match(string metaKey, string value) => new()
    {
        ["match"] = new JsonObject { ["op"] = "==", ["left"] = new JsonObject { ["meta"] = new JsonObject { ["key"] = metaKey } }, ["right"] = value },
    };

    private static JsonObject Counter() => new() { ["counter"] = null };

    private static JsonObject Verdict(string verdict) => new() { [verdict] = null };
}
