using MyDvpn.DataPlane.Os;
using MyDvpn.HostOs;

namespace MyDvpn.DataPlane.Tests.Unit;

/// <summary>The full tunnel's policy rules: what <c>ip rule</c> is given and how they are found in what it prints.</summary>
public sealed class PolicyRuleTests
{
    [Fact]
    public void Rules_with_not_fwmark_and_suppress_prefixlen_are_read()
    {
        const string json = """[{"priority":0,"src":"all","table":"local"},{"priority":32764,"src":"all","table":"main","suppress_prefixlen":0},{"priority":32765,"not":null,"src":"all","fwmark":"0xca6c","table":"51820"},{"priority":32766,"src":"all","table":"main"},{"priority":32767,"src":"all","table":"default"}]""";

        var rules = IpJson.ParseRules(json);

        Assert.Equal(5, rules.Length);
        Assert.Equal(new RuleReading(32764, false, null, "main", 0), rules[1]);
        Assert.Equal(new RuleReading(32765, true, 51820, "51820", null), rules[2]);
        var ours = PolicyRule.For(new FullTunnelSpec());
        Assert.True(ours[0].Matches(rules[1]));
        Assert.True(ours[1].Matches(rules[2]));
        Assert.False(ours[0].Matches(rules[3]));
        Assert.False(ours[1].Matches(rules[2] with { Fwmark = 1 }));
    }

    [Fact]
    public void Policy_rule_arguments_are_what_ip_rule_takes()
    {
        var rules = PolicyRule.For(new FullTunnelSpec(Table: 1234, FirewallMark: 99));

        Assert.Equal(["table", "main", "suppress_prefixlength", "0", "priority", "32764"], rules[0].Arguments().AsEnumerable());
        Assert.Equal(["not", "fwmark", "99", "table", "1234", "priority", "32765"], rules[1].Arguments().AsEnumerable());
    }
}
