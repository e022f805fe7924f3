namespace MyDvpn.HostOs.Tests;

/// <summary>iproute2 6.1 and nft 1.0.6 JSON as they print it (samples taken from this host).</summary>
public sealed class IpJsonTests
{
    [Fact]
    public void Link_reading_has_mtu_and_up_flag()
    {
        const string down = """[{"ifindex":2,"ifname":"wg0","flags":["POINTOPOINT","MULTICAST","NOARP"],"mtu":1420,"qdisc":"noop","operstate":"DOWN","linkmode":"DEFAULT","group":"default","txqlen":500,"link_type":"none"}]""";
        const string up = """[{"ifindex":2,"ifname":"wg0","flags":["POINTOPOINT","MULTICAST","NOARP","UP","LOWER_UP"],"mtu":1380,"operstate":"UNKNOWN"}]""";

        Assert.Equal(new LinkReading(1420, false), IpJson.ParseLink(down));
        Assert.Equal(new LinkReading(1380, true), IpJson.ParseLink(up));
        Assert.Null(IpJson.ParseLink("[]"));
    }

    [Fact]
    public void Link_kind_tells_a_tun_device_from_others()
    {
        const string tun = """[{"ifindex":2,"ifname":"wg0","flags":["POINTOPOINT"],"mtu":1420,"linkinfo":{"info_kind":"tun","info_data":{"type":"tun","pi":true,"persist":false}}}]""";
        const string plain = """[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK"],"mtu":65536}]""";

        Assert.Equal("tun", IpJson.ParseLinkKind(tun));
        Assert.Equal("", IpJson.ParseLinkKind(plain));
        Assert.Null(IpJson.ParseLinkKind("[]"));
    }

    [Fact]
    public void Addresses_are_read_without_link_local_ones()
    {
        const string json = """
            [{"ifindex":3,"ifname":"wg0","flags":["UP"],"mtu":1420,"addr_info":[
              {"family":"inet","local":"10.78.0.1","prefixlen":24,"scope":"global","label":"wg0","valid_life_time":4294967295},
              {"family":"inet6","local":"fd00::1","prefixlen":64,"scope":"global"},
              {"family":"inet6","local":"fe80::1","prefixlen":64,"scope":"link"}]}]
            """;

        Assert.Equal(["10.78.0.1/24", "fd00::1/64"], IpJson.ParseAddresses(json).AsEnumerable());
        Assert.Empty(IpJson.ParseAddresses("""[{"ifname":"wg0","addr_info":[]}]"""));
    }

    [Fact]
    public void Routes_have_normalized_destinations()
    {
        const string json = """
            [{"dst":"default","dev":"wg0","flags":[]},
             {"dst":"10.61.0.0/24","dev":"wg0","protocol":"static","scope":"link","flags":[]},
             {"dst":"10.78.0.5","dev":"wg0","scope":"link","flags":[]},
             {"dst":"10.78.0.0/24","dev":"wg0","protocol":"kernel","scope":"link","prefsrc":"10.78.0.1","flags":[]},
             {"type":"broadcast","dst":"10.78.0.255","dev":"wg0","protocol":"kernel","flags":[]}]
            """;

        var routes = IpJson.ParseRoutes(json);

        Assert.Equal(["0.0.0.0/0", "10.61.0.0/24", "10.78.0.5/32", "10.78.0.0/24"], routes.Select(r => r.Destination));
        Assert.Equal("kernel", routes[3].Protocol);
        Assert.Equal("::/0", IpJson.ParseRoutes("""[{"dst":"default","dev":"wg0"}]""", ipv6: true)[0].Destination);
    }

    [Fact]
    public void Default_route_device_is_the_one_with_the_lowest_metric()
    {
        const string json = """[{"dst":"default","gateway":"10.0.0.1","dev":"wlan0","metric":600,"flags":[]},{"dst":"default","gateway":"192.168.1.1","dev":"eth0","metric":100,"flags":[]}]""";

        Assert.Equal("eth0", IpJson.ParseDefaultRouteDevice(json));
        Assert.Null(IpJson.ParseDefaultRouteDevice("[]"));
        Assert.Null(IpJson.ParseDefaultRouteDevice(""));
    }

    [Fact]
    public void Nft_tables_and_rules_are_counted()
    {
        const string tables = """{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "inet", "name": "mydvpn_wg0", "handle": 3}}, {"table": {"family": "ip", "name": "nat", "handle": 4}}]}""";
        const string table = """{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"table": {"family": "inet", "name": "mydvpn_t", "handle": 3}}, {"chain": {"family": "inet", "table": "mydvpn_t", "name": "forward", "handle": 1, "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}}, {"rule": {"family": "inet", "table": "mydvpn_t", "chain": "forward", "handle": 3, "expr": [{"accept": null}]}}, {"rule": {"family": "inet", "table": "mydvpn_t", "chain": "forward", "handle": 4, "expr": [{"accept": null}]}}]}""";

        Assert.Equal([("inet", "mydvpn_wg0"), ("ip", "nat")], IpJson.ParseNftTables(tables).AsEnumerable());
        Assert.Equal(2, IpJson.CountNftRules(table));
    }
}
