using System.Text;
using MyDvpn.Testbed;

namespace MyDvpn.NetnsTests;

/// <summary>The parsing and naming below the real namespaces: no root needed.</summary>
public sealed class ParsingAndNamingTests
{
    [Fact]
    public void Ping_summary_with_answers_is_parsed()
    {
        const string output = """
            PING 198.51.100.1 (198.51.100.1) 56(84) bytes of data.

            --- 198.51.100.1 ping statistics ---
            3 packets transmitted, 3 received, 0% packet loss, time 404ms
            rtt min/avg/max/mdev = 0.041/0.057/0.080/0.016 ms
            """;

        var result = PingResult.Parse(output);

        Assert.Equal(new PingResult(3, 3, 0, TimeSpan.FromMilliseconds(0.057)), result);
    }

    [Fact]
    public void Ping_summary_without_answers_has_no_round_trip()
    {
        const string output = """
            --- 198.51.100.99 ping statistics ---
            2 packets transmitted, 0 received, +2 errors, 100% packet loss, time 1020ms
            """;

        Assert.Equal(new PingResult(2, 0, 100, null), PingResult.Parse(output));
    }

    [Fact]
    public void Text_without_a_ping_summary_is_refused()
    {
        Assert.Throws<FormatException>(() => PingResult.Parse("ping: connect: Network is unreachable"));
    }

    [Theory]
    [InlineData("CapEff:\t000001ffffffffff", "")]
    [InlineData("CapEff:\t0000000000000000", "CAP_NET_ADMIN,CAP_SYS_ADMIN")]
    [InlineData("CapEff:\t0000000000001000", "CAP_SYS_ADMIN")]
    [InlineData("CapEff:\t0000000000200000", "CAP_NET_ADMIN")]
    [InlineData("Name:\tdotnet", "CAP_NET_ADMIN,CAP_SYS_ADMIN")]
    public void Missing_capabilities_are_named(string status, string missing)
    {
        var text = $"Name:\ttesthost\nUid:\t1000\t1000\t1000\t1000\n{status}\n";

        Assert.Equal(missing, string.Join(',', Prerequisites.MissingCapabilities(text)));
    }

    [Fact]
    public void A_chunked_http_response_is_reassembled()
    {
        var raw = Encoding.ASCII.GetBytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n198.5\r\n8\r\n1.100.21\r\n0\r\n\r\n");

        var response = MinimalHttp.Parse(raw);

        Assert.Equal(200, response.Status);
        Assert.Equal("198.51.100.21", response.Body);
    }

    [Fact]
    public void A_testbed_namespace_is_found_by_role_or_by_name_and_nothing_else()
    {
        var namespaces = new TestbedNamespaces("tb00beef");

        Assert.Equal("tb00beef-sn-a", namespaces.Resolve(TestbedRoles.SnA));
        Assert.Equal("tb00beef-client-nat", namespaces.Resolve("tb00beef-client-nat"));
        Assert.Equal(TestbedRoles.ClientNat, namespaces.RoleOf("tb00beef-client-nat"));
        Assert.Throws<ArgumentException>(() => namespaces.Resolve("tb00beef-router"));
        Assert.Throws<ArgumentException>(() => namespaces.Resolve("tb12ab34-sn-a"));
        Assert.All(namespaces.All, name => Assert.StartsWith("tb00beef-", name, StringComparison.Ordinal));
    }

    [Fact]
    public void The_second_exit_hosts_namespaces_belong_only_to_a_testbed_built_with_them()
    {
        var plain = new TestbedNamespaces("tb00beef");
        var withSecondExit = new TestbedNamespaces("tb00beef", SecondExit: true);

        Assert.DoesNotContain("tb00beef-exit2", plain.All);
        var refused = Assert.Throws<ArgumentException>(() => plain.Resolve(TestbedRoles.Exit2));
        Assert.Contains("second exit", refused.Message, StringComparison.Ordinal);
        Assert.Equal(plain.All, withSecondExit.All.Take(plain.All.Count));
        Assert.Equal(["tb00beef-exit2-nat", "tb00beef-exit2"], withSecondExit.All.Skip(plain.All.Count));
        Assert.Equal(TestbedRoles.Exit2Nat, withSecondExit.RoleOf("tb00beef-exit2-nat"));
    }
}
