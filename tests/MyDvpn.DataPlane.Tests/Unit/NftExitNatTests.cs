using System.Text.Json.Nodes;
using MyDvpn.DataPlane.Os;

namespace MyDvpn.DataPlane.Tests.Unit;

public sealed class NftExitNatTests
{
    private static JsonArray Commands(string document) => JsonNode.Parse(document)!["nftables"]!.AsArray();

    [Fact]
    public void Document_replaces_the_table_atomically_then_adds_chains_and_rules()
    {
        var commands = Commands(NftExitNat.Document("wg0", "eth0", ["10.78.0.0/24"]));

        // add table; delete table; add table: idempotent whether or not the table existed.
        Assert.Equal("""{"add":{"table":{"family":"inet","name":"mydvpn_wg0"}}}""", commands[0]!.ToJsonString());
        Assert.Equal("""{"delete":{"table":{"family":"inet","name":"mydvpn_wg0"}}}""", commands[1]!.ToJsonString());
        Assert.Equal("""{"add":{"table":{"family":"inet","name":"mydvpn_wg0"}}}""", commands[2]!.ToJsonString());

        var forward = commands[3]!["add"]!["chain"]!;
        Assert.Equal("forward", forward["hook"]!.GetValue<string>());
        Assert.Equal("filter", forward["type"]!.GetValue<string>());
        Assert.Equal("accept", forward["policy"]!.GetValue<string>());
        var postrouting = commands[4]!["add"]!["chain"]!;
        Assert.Equal("nat", postrouting["type"]!.GetValue<string>());
        Assert.Equal("postrouting", postrouting["hook"]!.GetValue<string>());
        Assert.Equal(100, postrouting["prio"]!.GetValue<int>());

        var rules = commands.Skip(5).Select(c => c!["add"]!["rule"]!).ToList();
        Assert.Equal(NftExitNat.RuleCount(1), rules.Count);
        Assert.Equal(["forward", "forward", "postrouting"], rules.Select(r => r["chain"]!.GetValue<string>()));
        Assert.Contains("""{"match":{"op":"==","left":{"meta":{"key":"iifname"}},"right":"wg0"}}""", rules[0].ToJsonString());
        Assert.Contains("""{"match":{"op":"==","left":{"meta":{"key":"oifname"}},"right":"eth0"}}""", rules[0].ToJsonString());
        Assert.Contains("""["established","related"]""", rules[1].ToJsonString());
        var masquerade = rules[2].ToJsonString();
        Assert.Contains("""{"payload":{"protocol":"ip","field":"saddr"}},"right":{"prefix":{"addr":"10.78.0.0","len":24}}""", masquerade);
        Assert.Contains("""{"masquerade":null}""", masquerade);
    }

    [Fact]
    public void Each_subnet_gets_its_own_masquerade_rule_in_its_family()
    {
        var commands = Commands(NftExitNat.Document("wg0", "eth0", ["10.78.0.7/24", "fd00:1::/64"]));

        var masquerades = commands.Select(c => c!.ToJsonString()).Where(c => c.Contains("masquerade", StringComparison.Ordinal)).ToList();
        Assert.Equal(2, masquerades.Count);
        Assert.Contains("\"addr\":\"10.78.0.0\"", masquerades[0]); // host bits cleared
        Assert.Contains("\"protocol\":\"ip6\"", masquerades[1]);
    }

    [Fact]
    public void Delete_document_works_whether_or_not_the_table_exists()
    {
        var commands = Commands(NftExitNat.DeleteDocument("wg0"));

        Assert.Equal(2, commands.Count);
        Assert.NotNull(commands[0]!["add"]!["table"]);
        Assert.NotNull(commands[1]!["delete"]!["table"]);
    }

    [Theory]
    [InlineData("wg0", "mydvpn_wg0")]
    [InlineData("wg-exit.1", "mydvpn_wg_exit_1")]
    public void Table_name_holds_only_safe_characters(string interfaceName, string table) =>
        Assert.Equal(table, NftExitNat.TableName(interfaceName));
}
