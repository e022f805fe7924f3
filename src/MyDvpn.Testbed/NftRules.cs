using System.Net;
using System.Text.Json.Nodes;

namespace MyDvpn.Testbed;

/// <summary>
/// The testbed's nftables rulesets, as libnftables JSON for <c>nft -j -f -</c> (one batch = one transaction). Each lives
/// in a table of the testbed's own (<see cref="Table"/>) inside the testbed's namespaces, so it goes with them.
/// </summary>
internal static class NftRules
{
    public const string Table = "mydvpn_testbed";
    public const string BridgeForwardChain = "forward";

    /// <summary>
    /// A home-router NAT: the LAN masqueraded out of <paramref name="wan"/>; from outside only replies (and, with
    /// <paramref name="portForward"/>, that one UDP port, DNAT-ed to a LAN host) get in.
    /// </summary>
    public static string Nat(string wan, string lan, IPAddress lanNetwork, int lanPrefixLength, IPAddress publicAddress,
        (int Port, IPAddress To)? portForward)
    {
        var commands = new JsonArray
        {
            Add("table", new JsonObject { ["family"] = "ip", ["name"] = Table }),
            Add("chain", BaseChain("ip", "prerouting", "nat", "prerouting", -100, "accept")),
            Add("chain", BaseChain("ip", "postrouting", "nat", "postrouting", 100, "accept")),
            Add("chain", BaseChain("ip", "forward", "filter", "forward", 0, "drop")),
            Rule("ip", "postrouting",
                Match(Payload("ip", "saddr"), Prefix(lanNetwork, lanPrefixLength)),
                Match(Meta("oifname"), wan),
                Verdict("masquerade")),
            Rule("ip", "forward", Match(Ct("state"), new JsonArray("established", "related"), "in"), Verdict("accept")),
            Rule("ip", "forward", Match(Meta("iifname"), lan), Match(Meta("oifname"), wan), Verdict("accept")),
            Rule("ip", "forward", Match(Ct("status"), "dnat", "in"), Verdict("accept")),
        };
        if (portForward is { } forward)
        {
            commands.Add(Rule("ip", "prerouting",
                Match(Meta("iifname"), wan),
                Match(Payload("ip", "daddr"), publicAddress.ToString()),
                Match(Payload("udp", "dport"), forward.Port),
                new JsonObject { ["dnat"] = new JsonObject { ["addr"] = forward.To.ToString(), ["port"] = forward.Port } }));
        }
        return Document(commands);
    }

    /// <summary>The internet router's bridge filter: an empty forward chain (accept) that <see cref="DropUdpBetween"/> fills.</summary>
    public static string BridgeFilter() => Document(new JsonArray
    {
        Add("table", new JsonObject { ["family"] = "bridge", ["name"] = Table }),
        Add("chain", BaseChain("bridge", BridgeForwardChain, "filter", "forward", 0, "accept")),
    });

    /// <summary>Replaces the bridge's forward rules with counted drops of UDP between the two addresses, both ways.</summary>
    public static string DropUdpBetween(IPAddress a, IPAddress b) => Document(new JsonArray
    {
        FlushBridgeForward(),
        DropUdp(a, b),
        DropUdp(b, a),
    });

    /// <summary>Replaces the bridge's forward rules with counted drops of all UDP from and to <paramref name="host"/> (TCP still passes).</summary>
    public static string DropUdpOf(IPAddress host) => Document(new JsonArray
    {
        FlushBridgeForward(),
        Rule("bridge", BridgeForwardChain, Match(Payload("ip", "saddr"), host.ToString()), Match(Payload("ip", "protocol"), "udp"),
            new JsonObject { ["counter"] = null }, Verdict("drop")),
        Rule("bridge", BridgeForwardChain, Match(Payload("ip", "daddr"), host.ToString()), Match(Payload("ip", "protocol"), "udp"),
            new JsonObject { ["counter"] = null }, Verdict("drop")),
    });

    /// <summary>Empties the bridge's forward chain: everything passes again.</summary>
    public static string AllowAll() => Document(new JsonArray { FlushBridgeForward() });

    private static JsonObject DropUdp(IPAddress from, IPAddress to) =>
        Rule("bridge", BridgeForwardChain,
            Match(Payload("ip", "saddr"), from.ToString()),
            Match(Payload("ip", "daddr"), to.ToString()),
            Match(Payload("ip", "protocol"), "udp"),
            new JsonObject { ["counter"] = null },
            Verdict("drop"));

    private static JsonObject FlushBridgeForward() => new()
    {
        ["flush"] = new JsonObject
        {
            ["chain"] = new JsonObject { ["family"] = "bridge", ["table"] = Table, ["name"] = BridgeForwardChain },
        },
    };

    private static string Document(JsonArray commands) => new JsonObject { ["nftables"] = commands }.ToJsonString();

    private static JsonObject Add(string kind, JsonObject body) => new() { ["add"] = new JsonObject { [kind] = body } };

    private static JsonObject BaseChain(string family, string name, string type, string hook, int priority, string policy) => new()
    {
        ["family"] = family,
        ["table"] = Table,
        ["name"] = name,
        ["type"] = type,
        ["hook"] = hook,
        ["prio"] = priority,
        ["policy"] = policy,
    };

    private static JsonObject Rule(string family, string chain, params JsonNode[] expressions) =>
        Add("rule", new JsonObject
        {
            ["family"] = family,
            ["table"] = Table,
            ["chain"] = chain,
            ["expr"] = new JsonArray(expressions),
        });

    private static JsonObject Match(JsonNode left, JsonNode right, string op = "==") => new()
    {
        ["match"] = new JsonObject { ["op"] = op, ["left"] = left, ["right"] = right },
    };

    private static JsonObject Payload(string protocol, string field) => new()
    {
        ["payload"] = new JsonObject { ["protocol"] = protocol, ["field"] = field },
    };

    private static JsonObject Meta(string key) => new() { ["meta"] = new JsonObject { ["key"] = key } };

    private static JsonObject Ct(string key) => new() { ["ct"] = new JsonObject { ["key"] = key } };

    private static JsonObject Prefix(IPAddress network, int length) => new()
    {
        ["prefix"] = new JsonObject { ["addr"] = network.ToString(), ["len"] = length },
    };

    private static JsonObject Verdict(string verdict) => new() { [verdict] = null };
}
