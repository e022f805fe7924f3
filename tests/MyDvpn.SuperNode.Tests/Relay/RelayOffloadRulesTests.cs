using System.Net;
using System.Text.Json.Nodes;
using MyDvpn.SuperNode.Relay;

namespace MyDvpn.SuperNode.Tests.Relay;

/// <summary>The nftables batches of the relay's kernel offload and the parsing of nft's counters, without running nft.</summary>
public sealed class RelayOffloadRulesTests
{
    private const string Table = "mydvpn_relay_40000";
    private static readonly IPAddress Relay = IPAddress.Parse("10.9.1.1");
    private static readonly IPEndPoint Peer = IPEndPoint.Parse("10.9.1.2:5000");
    private static readonly IPEndPoint Partner = IPEndPoint.Parse("10.9.2.2:6000");

    private static JsonArray Commands(string document) => JsonNode.Parse(document)!["nftables"]!.AsArray();

    private static List<JsonNode> Rules(JsonArray commands, string chain) =>
        [.. commands.Select(c => c!["add"]?["rule"]).OfType<JsonNode>().Where(r => r["chain"]!.GetValue<string>() == chain)];

    private static string Verbs(JsonArray commands) =>
        string.Join(" ", commands.Select(c => $"{c!.AsObject().Single().Key}:{c.AsObject().Single().Value!.AsObject().Single().Key}"));

    private static string Match(string protocol, string field, string value) =>
        $$$"""{"match":{"op":"==","left":{"payload":{"protocol":"{{{protocol}}}","field":"{{{field}}}"}},"right":{{{value}}}}}""";

    private static string Mangle(string protocol, string field, string value) =>
        $$$"""{"mangle":{"key":{"payload":{"protocol":"{{{protocol}}}","field":"{{{field}}}"}},"value":{{{value}}}}}""";

    [Fact]
    public void Table_is_named_after_the_first_relay_port()
    {
        Assert.Equal("mydvpn_relay_40000", RelayOffloadRules.TableName(40000));
        Assert.Equal("p40000_to_peer", RelayOffloadRules.ToPeerCounter(40000));
        Assert.Equal("p40000_to_partner", RelayOffloadRules.ToPartnerCounter(40000));
    }

    [Fact]
    public void Create_replaces_a_leftover_table_and_adds_a_raw_prerouting_and_a_srcnat_postrouting_chain()
    {
        var commands = Commands(RelayOffloadRules.CreateDocument(Table));

        Assert.Equal("add:table delete:table add:table add:chain add:chain", Verbs(commands));
        Assert.Equal("""{"add":{"table":{"family":"ip","name":"mydvpn_relay_40000"}}}""", commands[0]!.ToJsonString());
        Assert.Equal("""{"add":{"chain":{"family":"ip","table":"mydvpn_relay_40000","name":"pre","type":"filter","hook":"prerouting","prio":-300,"policy":"accept"}}}""",
            commands[3]!.ToJsonString());
        Assert.Equal("""{"add":{"chain":{"family":"ip","table":"mydvpn_relay_40000","name":"post","type":"filter","hook":"postrouting","prio":100,"policy":"accept"}}}""",
            commands[4]!.ToJsonString());
    }

    [Fact]
    public void Delete_works_whether_or_not_the_table_exists()
    {
        Assert.Equal("add:table delete:table", Verbs(Commands(RelayOffloadRules.DeleteDocument(Table))));
    }

    [Fact]
    public void One_leg_gets_counters_then_flushed_chains_then_four_rules_rewriting_both_directions()
    {
        var commands = Commands(RelayOffloadRules.ApplyDocument(Table, Relay, [new OffloadedLeg(40000, Peer, Partner)], []));

        Assert.Equal("add:counter add:counter flush:chain flush:chain add:rule add:rule add:rule add:rule", Verbs(commands));
        Assert.Equal(RelayOffloadRules.RuleCount(1), commands.Count(c => c!["add"]?["rule"] is not null));
        Assert.Equal("""{"add":{"counter":{"family":"ip","table":"mydvpn_relay_40000","name":"p40000_to_peer"}}}""", commands[0]!.ToJsonString());
        Assert.Equal("""{"flush":{"chain":{"family":"ip","table":"mydvpn_relay_40000","name":"pre"}}}""", commands[2]!.ToJsonString());

        var pre = Rules(commands, "pre");
        // From the peer: counted as to_partner, sent on to the partner.
        Assert.Equal(
            "[" + string.Join(",",
                Match("ip", "saddr", "\"10.9.1.2\""), Match("udp", "sport", "5000"),
                Match("ip", "daddr", "\"10.9.1.1\""), Match("udp", "dport", "40000"),
                """{"notrack":null}""", """{"counter":"p40000_to_partner"}""",
                Mangle("ip", "daddr", "\"10.9.2.2\""), Mangle("udp", "dport", "6000")) + "]",
            pre[0]["expr"]!.ToJsonString());
        // From the partner: counted as to_peer, sent on to the peer.
        Assert.Equal(
            "[" + string.Join(",",
                Match("ip", "saddr", "\"10.9.2.2\""), Match("udp", "sport", "6000"),
                Match("ip", "daddr", "\"10.9.1.1\""), Match("udp", "dport", "40000"),
                """{"notrack":null}""", """{"counter":"p40000_to_peer"}""",
                Mangle("ip", "daddr", "\"10.9.1.2\""), Mangle("udp", "dport", "5000")) + "]",
            pre[1]["expr"]!.ToJsonString());

        var post = Rules(commands, "post");
        // Both directions leave from the leg's own address and port.
        Assert.Equal(
            "[" + string.Join(",",
                Match("ip", "saddr", "\"10.9.1.2\""), Match("udp", "sport", "5000"),
                Match("ip", "daddr", "\"10.9.2.2\""), Match("udp", "dport", "6000"),
                Mangle("ip", "saddr", "\"10.9.1.1\""), Mangle("udp", "sport", "40000")) + "]",
            post[0]["expr"]!.ToJsonString());
        Assert.Equal(
            "[" + string.Join(",",
                Match("ip", "saddr", "\"10.9.2.2\""), Match("udp", "sport", "6000"),
                Match("ip", "daddr", "\"10.9.1.2\""), Match("udp", "dport", "5000"),
                Mangle("ip", "saddr", "\"10.9.1.1\""), Mangle("udp", "sport", "40000")) + "]",
            post[1]["expr"]!.ToJsonString());
    }

    [Fact]
    public void Reapply_adds_counters_of_present_ports_and_deletes_those_of_gone_ports_after_the_flush()
    {
        var kept = new OffloadedLeg(40000, Peer, Partner);
        var added = new OffloadedLeg(40002, IPEndPoint.Parse("10.9.3.3:7000"), IPEndPoint.Parse("10.9.4.4:8000"));

        var commands = Commands(RelayOffloadRules.ApplyDocument(Table, Relay, [added, kept], previousPorts: [40000, 40001]));

        var verbs = Verbs(commands).Split(' ');
        Assert.Equal(
            ["add:counter p40000_to_peer", "add:counter p40000_to_partner", "add:counter p40002_to_peer", "add:counter p40002_to_partner"],
            commands.Take(4).Select(c => "add:counter " + c!["add"]!["counter"]!["name"]!.GetValue<string>()));
        Assert.Equal(["delete:counter", "delete:counter"], verbs[^2..]);
        Assert.Equal(["p40001_to_peer", "p40001_to_partner"], commands.TakeLast(2).Select(c => c!["delete"]!["counter"]!["name"]!.GetValue<string>()));
        var lastFlush = Array.LastIndexOf(verbs, "flush:chain");
        Assert.True(lastFlush < verbs.Length - 2, "counters are deleted after the rules that used them are flushed");
        Assert.Equal(RelayOffloadRules.RuleCount(2), verbs.Count(v => v == "add:rule"));
        // Rules in port order.
        Assert.Contains("\"right\":40000", Rules(commands, "pre")[0].ToJsonString(), StringComparison.Ordinal);
        Assert.Contains("\"right\":40002", Rules(commands, "pre")[2].ToJsonString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Applying_no_legs_flushes_the_chains_and_deletes_every_counter()
    {
        var commands = Commands(RelayOffloadRules.ApplyDocument(Table, Relay, [], previousPorts: [40000]));

        Assert.Equal("flush:chain flush:chain delete:counter delete:counter", Verbs(commands));
    }

    [Theory]
    [InlineData(0, "10.9.1.2:5000", "10.9.2.2:6000", "not a UDP port")]
    [InlineData(40000, "[2001:db8::1]:5000", "10.9.2.2:6000", "not IPv4")]
    [InlineData(40000, "10.9.1.1:5000", "10.9.2.2:6000", "is local")]
    [InlineData(40000, "10.9.1.2:5000", "127.0.0.1:6000", "is local")]
    [InlineData(40000, "10.9.1.2:5000", "10.9.1.2:5000", "the same endpoint")]
    public void Legs_the_kernel_cannot_forward_are_refused(int port, string peer, string partner, string reason)
    {
        var leg = new OffloadedLeg(port, IPEndPoint.Parse(peer), IPEndPoint.Parse(partner));

        var refused = Assert.Throws<ArgumentException>(() => RelayOffloadRules.Validate(Relay, [leg]));
        Assert.Contains(reason, refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_port_twice_or_two_legs_sharing_a_flow_are_refused()
    {
        var leg = new OffloadedLeg(40000, Peer, Partner);

        Assert.Contains("twice", Assert.Throws<ArgumentException>(() => RelayOffloadRules.Validate(Relay, [leg, leg])).Message, StringComparison.Ordinal);
        // Postrouting could not tell which leg's port a datagram between the same two endpoints should leave from.
        Assert.Contains("both forward", Assert.Throws<ArgumentException>(() =>
            RelayOffloadRules.Validate(Relay, [leg, leg with { Port = 40001 }])).Message, StringComparison.Ordinal);
        RelayOffloadRules.Validate(Relay, [leg, leg with { Port = 40001, Partner = IPEndPoint.Parse("10.9.2.2:6001") }]);
    }

    [Fact]
    public void Ipv4_mapped_endpoints_are_taken_as_ipv4()
    {
        var mapped = new OffloadedLeg(40000, new IPEndPoint(Peer.Address.MapToIPv6(), Peer.Port), Partner);

        var normalized = RelayOffloadRules.Normalize([mapped]).Single();

        Assert.Equal(Peer, normalized.Peer);
        RelayOffloadRules.Validate(Relay, [normalized]);
    }

    [Fact]
    public void Counters_are_read_by_port_and_direction_and_other_counters_ignored()
    {
        const string listed = """
            {"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
              {"counter": {"family": "ip", "name": "p40000_to_peer", "table": "mydvpn_relay_40000", "handle": 3, "packets": 2, "bytes": 84}},
              {"counter": {"family": "ip", "name": "p40000_to_partner", "table": "mydvpn_relay_40000", "handle": 4, "packets": 3, "bytes": 129}},
              {"counter": {"family": "ip", "name": "p40001_to_partner", "table": "mydvpn_relay_40000", "handle": 5, "packets": 0, "bytes": 0}},
              {"counter": {"family": "ip", "name": "someone_else", "table": "mydvpn_relay_40000", "handle": 6, "packets": 9, "bytes": 9}}]}
            """;

        var counters = RelayOffloadRules.ParseCounters(listed);

        Assert.Equal(new OffloadCounters(PacketsToPeer: 2, BytesToPeer: 84, PacketsToPartner: 3, BytesToPartner: 129), counters[40000]);
        Assert.Equal(new OffloadCounters(0, 0, 0, 0), counters[40001]);
        Assert.Equal(2, counters.Count);
    }

    [Fact]
    public void Output_that_is_not_nft_json_is_a_format_error()
    {
        Assert.Throws<FormatException>(() => RelayOffloadRules.ParseCounters("Error: No such file or directory"));
        Assert.Throws<FormatException>(() => RelayOffloadRules.ParseCounters("""{"other": []}"""));
    }

    [Fact]
    public void Tables_and_dropping_forward_chains_are_found_in_nft_listings()
    {
        Assert.Equal(["mydvpn_relay_40000", "filter"], RelayOffloadRules.ParseTables("""
            {"nftables": [{"metainfo": {}}, {"table": {"family": "ip", "name": "mydvpn_relay_40000", "handle": 1}},
              {"table": {"family": "inet", "name": "fw", "handle": 2}}, {"table": {"family": "ip", "name": "filter", "handle": 3}}]}
            """));
        Assert.Empty(RelayOffloadRules.ParseTables(""));

        Assert.Equal(["ip filter FORWARD"], RelayOffloadRules.ParseDroppingForwardChains("""
            {"nftables": [{"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}},
              {"chain": {"family": "inet", "table": "fw", "name": "fwd", "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}},
              {"chain": {"family": "inet", "table": "fw", "name": "in", "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}},
              {"chain": {"family": "inet", "table": "fw", "name": "helper"}}]}
            """));
    }
}
