using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace MyDvpn.SuperNode.Relay;

/// <summary>
/// The nftables side of <see cref="RelayOffload"/>, as libnftables JSON batches for <c>nft -j -f -</c> (one batch = one
/// transaction), and the parsing of <c>nft -j list counters</c>. Pure: no process is run here.
/// <para>
/// The table <c>ip mydvpn_relay_&lt;portLow&gt;</c> has two base chains, both policy accept (the table adds, it never blocks):
/// <c>pre</c> (filter, prerouting, priority raw) and <c>post</c> (filter, postrouting, priority srcnat). Per leg on port P of
/// address S, between its peer and its partner, four stateless rules:
/// </para>
/// <code>
/// pre:  ip saddr PEER    udp sport PEERPORT    ip daddr S udp dport P notrack counter name pP_to_partner ip daddr set PARTNER udp dport set PARTNERPORT
/// pre:  ip saddr PARTNER udp sport PARTNERPORT ip daddr S udp dport P notrack counter name pP_to_peer    ip daddr set PEER    udp dport set PEERPORT
/// post: ip saddr PEER    udp sport PEERPORT    ip daddr PARTNER udp dport PARTNERPORT ip saddr set S udp sport set P
/// post: ip saddr PARTNER udp sport PARTNERPORT ip daddr PEER    udp dport PEERPORT    ip saddr set S udp sport set P
/// </code>
/// <para>
/// The prerouting rewrite happens before the routing decision, so the datagram is forwarded instead of delivered to the
/// leg's socket; <c>notrack</c> keeps it out of conntrack (no entry to create, none of the relay socket's entries to
/// match), and an untracked packet stays untracked through forward and postrouting, so the postrouting side needs no
/// <c>notrack</c> of its own (it would be too late there anyway: conntrack has run at prerouting). nft fixes the IP and
/// UDP checksums of the rewritten fields. There is deliberately no forward chain: an accept in one base chain never
/// overrides a drop in another table's forward chain, so it could only mislead.
/// </para>
/// </summary>
internal static partial class RelayOffloadRules
{
    public const string Family = "ip";
    public const string TablePrefix = "mydvpn_relay_";
    public const string PreChain = "pre";
    public const string PostChain = "post";

    /// <summary>The priorities nft calls <c>raw</c> (before conntrack) and <c>srcnat</c>.</summary>
    public const int RawPriority = -300;
    public const int SrcNatPriority = 100;

    public static string TableName(int portLow) => TablePrefix + portLow.ToString(CultureInfo.InvariantCulture);

    /// <summary>The named counter of datagrams going to the leg's peer (they came from its partner).</summary>
    public static string ToPeerCounter(int port) => string.Create(CultureInfo.InvariantCulture, $"p{port}_to_peer");

    /// <summary>The named counter of datagrams going to the leg's partner (they came from its peer).</summary>
    public static string ToPartnerCounter(int port) => string.Create(CultureInfo.InvariantCulture, $"p{port}_to_partner");

    /// <summary>How many rules <see cref="ApplyDocument"/> writes for <paramref name="legCount"/> legs.</summary>
    public static int RuleCount(int legCount) => 4 * legCount;

    /// <summary>Creates the table empty, whether or not it existed (add, delete, add), with its two base chains.</summary>
    public static string CreateDocument(string table) => Document(
        Command("add", "table", Table(table)),
        Command("delete", "table", Table(table)),
        Command("add", "table", Table(table)),
        Command("add", "chain", new JsonObject
        {
            ["family"] = Family,
            ["table"] = table,
            ["name"] = PreChain,
            ["type"] = "filter",
            ["hook"] = "prerouting",
            ["prio"] = RawPriority,
            ["policy"] = "accept",
        }),
        Command("add", "chain", new JsonObject
        {
            ["family"] = Family,
            ["table"] = table,
            ["name"] = PostChain,
            ["type"] = "filter",
            ["hook"] = "postrouting",
            ["prio"] = SrcNatPriority,
            ["policy"] = "accept",
        }));

    /// <summary>Deletes the table whether or not it exists (add, then delete, in one batch).</summary>
    public static string DeleteDocument(string table) =>
        Document(Command("add", "table", Table(table)), Command("delete", "table", Table(table)));

    /// <summary>
    /// One transaction replacing the offloaded legs: counters added for every leg (adding an existing named counter
    /// keeps its values, so a kept port keeps counting), both chains flushed and rewritten, then the counters of
    /// <paramref name="previousPorts"/> no longer present deleted — after the flush, since a counter a rule still
    /// refers to cannot be deleted. Call <see cref="Validate"/> first.
    /// </summary>
    public static string ApplyDocument(string table, IPAddress legAddress, IReadOnlyCollection<OffloadedLeg> legs, IEnumerable<int> previousPorts)
    {
        var ordered = legs.OrderBy(leg => leg.Port).ToList();
        var commands = new JsonArray();
        foreach (var leg in ordered)
        {
            commands.Add(Command("add", "counter", Counter(table, ToPeerCounter(leg.Port))));
            commands.Add(Command("add", "counter", Counter(table, ToPartnerCounter(leg.Port))));
        }
        commands.Add(Command("flush", "chain", new JsonObject { ["family"] = Family, ["table"] = table, ["name"] = PreChain }));
        commands.Add(Command("flush", "chain", new JsonObject { ["family"] = Family, ["table"] = table, ["name"] = PostChain }));
        var relay = legAddress.ToString();
        foreach (var leg in ordered)
        {
            commands.Add(Rule(table, PreChain,
                [.. From(leg.Peer), .. To(relay, leg.Port), Notrack(), NamedCounter(ToPartnerCounter(leg.Port)), .. Rewrite("daddr", "dport", leg.Partner)]));
            commands.Add(Rule(table, PreChain,
                [.. From(leg.Partner), .. To(relay, leg.Port), Notrack(), NamedCounter(ToPeerCounter(leg.Port)), .. Rewrite("daddr", "dport", leg.Peer)]));
        }
        foreach (var leg in ordered)
        {
            var self = new IPEndPoint(legAddress, leg.Port);
            commands.Add(Rule(table, PostChain,
                [.. From(leg.Peer), .. To(leg.Partner.Address.ToString(), leg.Partner.Port), .. Rewrite("saddr", "sport", self)]));
            commands.Add(Rule(table, PostChain,
                [.. From(leg.Partner), .. To(leg.Peer.Address.ToString(), leg.Peer.Port), .. Rewrite("saddr", "sport", self)]));
        }
        var present = ordered.Select(leg => leg.Port).ToHashSet();
        foreach (var gone in previousPorts.Where(port => !present.Contains(port)).Order())
        {
            commands.Add(Command("delete", "counter", Counter(table, ToPeerCounter(gone))));
            commands.Add(Command("delete", "counter", Counter(table, ToPartnerCounter(gone))));
        }
        return new JsonObject { ["nftables"] = commands }.ToJsonString();
    }

    /// <summary>The legs with IPv4-mapped IPv6 endpoints (a dual-mode socket's view) as plain IPv4.</summary>
    public static IReadOnlyList<OffloadedLeg> Normalize(IEnumerable<OffloadedLeg> legs) =>
        [.. legs.Select(leg => leg is null ? leg! : leg with { Peer = V4(leg.Peer), Partner = V4(leg.Partner) })];

    private static IPEndPoint V4(IPEndPoint endpoint) =>
        endpoint is { Address.IsIPv4MappedToIPv6: true } ? new IPEndPoint(endpoint.Address.MapToIPv4(), endpoint.Port) : endpoint;

    /// <summary>
    /// Throws <see cref="ArgumentException"/> unless every leg can be forwarded by these rules: ports 1–65535 and
    /// distinct, IPv4 peer and partner, neither of them the relay's own address nor loopback (a datagram rewritten to a
    /// local address is delivered, not forwarded, and never meets another leg's prerouting rule), peer and partner
    /// different, and no two directions sharing the (source, destination) pair the postrouting rules match on.
    /// </summary>
    public static void Validate(IPAddress legAddress, IReadOnlyCollection<OffloadedLeg> legs)
    {
        ArgumentNullException.ThrowIfNull(legs);
        var problems = new List<string>();
        Forwardable(legAddress, legs, problems);
        if (problems.Count > 0)
            throw new ArgumentException(problems[0], nameof(legs));
    }

    /// <summary>
    /// The legs the kernel can forward (see <see cref="Validate"/>), in order; each one left out adds why to
    /// <paramref name="problems"/>. Of two legs that clash (a port or a direction taken twice) the first is kept.
    /// </summary>
    public static List<OffloadedLeg> Forwardable(IPAddress legAddress, IEnumerable<OffloadedLeg> legs, List<string> problems)
    {
        var ports = new HashSet<int>();
        var flows = new Dictionary<(IPEndPoint From, IPEndPoint To), int>();
        var forwardable = new List<OffloadedLeg>();
        foreach (var leg in legs)
        {
            ArgumentNullException.ThrowIfNull(leg);
            var problem = leg.Port is < 1 or > 65535 ? $"leg port {leg.Port} is not a UDP port (1–65535)"
                : ports.Contains(leg.Port) ? $"leg port {leg.Port} is offloaded twice"
                : EndpointProblem(legAddress, leg.Port, "peer", leg.Peer) ?? EndpointProblem(legAddress, leg.Port, "partner", leg.Partner)
                ?? (leg.Peer.Equals(leg.Partner) ? $"leg {leg.Port}: peer and partner are the same endpoint {leg.Peer}" : null)
                ?? (flows.TryGetValue((leg.Peer, leg.Partner), out var other) || flows.TryGetValue((leg.Partner, leg.Peer), out other)
                    ? $"legs {other} and {leg.Port} both forward between {leg.Peer} and {leg.Partner}"
                    : null);
            if (problem is not null)
            {
                problems.Add(problem);
                continue;
            }
            ports.Add(leg.Port);
            flows[(leg.Peer, leg.Partner)] = leg.Port;
            flows[(leg.Partner, leg.Peer)] = leg.Port;
            forwardable.Add(leg);
        }
        return forwardable;
    }

    private static string? EndpointProblem(IPAddress legAddress, int port, string role, IPEndPoint? endpoint) => endpoint switch
    {
        null => $"leg {port}: no {role}",
        { AddressFamily: not AddressFamily.InterNetwork } => $"leg {port}: {role} {endpoint} is not IPv4 (the kernel offload is IPv4 only)",
        { Port: < 1 or > 65535 } => $"leg {port}: {role} {endpoint} has no port",
        _ when endpoint.Address.Equals(legAddress) || IPAddress.IsLoopback(endpoint.Address) || endpoint.Address.Equals(IPAddress.Any) =>
            $"leg {port}: {role} {endpoint} is local; only remote endpoints are forwarded by the kernel",
        _ => null,
    };

    /// <summary>The leg counters in <c>nft -j list counters table ip NAME</c>, by port; other counters are ignored.</summary>
    /// <exception cref="FormatException">The output is not nft's JSON.</exception>
    public static IReadOnlyDictionary<int, OffloadCounters> ParseCounters(string json)
    {
        JsonNode? root;
        try
        {
            root = JsonNode.Parse(json);
        }
        catch (JsonException ex)
        {
            throw new FormatException($"nft printed no JSON: {ex.Message}", ex);
        }
        if (root?["nftables"] is not JsonArray items)
            throw new FormatException("nft's JSON has no \"nftables\" array");
        var found = new Dictionary<int, OffloadCounters>();
        foreach (var item in items)
        {
            if (item?["counter"] is not JsonObject counter || counter["name"]?.GetValue<string>() is not { } name)
                continue;
            var match = CounterName().Match(name);
            if (!match.Success || !int.TryParse(match.Groups["port"].ValueSpan, NumberStyles.None, CultureInfo.InvariantCulture, out var port))
                continue;
            var packets = counter["packets"]?.GetValue<long>() ?? 0;
            var bytes = counter["bytes"]?.GetValue<long>() ?? 0;
            var current = found.GetValueOrDefault(port, new OffloadCounters(0, 0, 0, 0));
            found[port] = match.Groups["direction"].Value == "peer"
                ? current with { PacketsToPeer = packets, BytesToPeer = bytes }
                : current with { PacketsToPartner = packets, BytesToPartner = bytes };
        }
        return found;
    }

    /// <summary>The names of this family's tables in <c>nft -j list tables</c>.</summary>
    public static IReadOnlyList<string> ParseTables(string json) =>
        [.. Items(json, "table").Where(t => t["family"]?.GetValue<string>() == Family).Select(t => t["name"]?.GetValue<string>() ?? "")];

    /// <summary>Forward base chains with policy drop in <c>nft -j list chains</c> (any family but ours), as "family table chain".</summary>
    public static IReadOnlyList<string> ParseDroppingForwardChains(string json) =>
        [.. Items(json, "chain")
            .Where(c => c["hook"]?.GetValue<string>() == "forward" && c["policy"]?.GetValue<string>() == "drop")
            .Where(c => c["family"]?.GetValue<string>() is "ip" or "inet")
            .Select(c => $"{c["family"]} {c["table"]} {c["name"]}")];

    private static IEnumerable<JsonObject> Items(string json, string kind) =>
        !string.IsNullOrWhiteSpace(json) && JsonNode.Parse(json)?["nftables"] is JsonArray items
            ? items.Select(item => item?[kind]).OfType<JsonObject>()
            : [];

    [GeneratedRegex("^p(?<port>[0-9]{1,5})_to_(?<direction>peer|partner)$")]
    private static partial Regex CounterName();

    private static string Document(params JsonNode[] commands) =>
        new JsonObject { ["nftables"] = new JsonArray(commands) }.ToJsonString();

    private static JsonObject Table(string name) => new() { ["family"] = Family, ["name"] = name };

    private static JsonObject Counter(string table, string name) => new() { ["family"] = Family, ["table"] = table, ["name"] = name };

    private static JsonObject Command(string verb, string kind, JsonObject body) => new() { [verb] = new JsonObject { [kind] = body } };

    private static JsonObject Rule(string table, string chain, JsonNode[] expressions) =>
        Command("add", "rule", new JsonObject { ["family"] = Family, ["table"] = table, ["chain"] = chain, ["expr"] = new JsonArray(expressions) });

    private static JsonObject Notrack() => new() { ["notrack"] = null };

    private static JsonObject NamedCounter(string name) => new() { ["counter"] = name };

    private static JsonNode[] From(IPEndPoint endpoint) =>
        [Match("ip", "saddr", endpoint.Address.ToString()), Match("udp", "sport", endpoint.Port)];

    private static JsonNode[] To(string address, int port) =>
        [Match("ip", "daddr", address), Match("udp", "dport", port)];

    private static JsonNode[] Rewrite(string addressField, string portField, IPEndPoint to) =>
        [Mangle("ip", addressField, to.Address.ToString()), Mangle("udp", portField, to.Port)];

    private static JsonObject Payload(string protocol, string field) =>
        new() { ["payload"] = new JsonObject { ["protocol"] = protocol, ["field"] = field } };

    private static JsonObject Match(string protocol, string field, JsonNode value) => new()
    {
        ["match"] = new JsonObject { ["op"] = "==", ["left"] = Payload(protocol, field), ["right"] = value },
    };

    private static JsonObject Mangle(string protocol, string field, JsonNode value) => new()
    {
        ["mangle"] = new JsonObject { ["key"] = Payload(protocol, field), ["value"] = value },
    };
}
