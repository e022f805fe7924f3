namespace MyDvpn.Common.Tests;

public sealed class HostPortTests
{
    private const string Setting = "--some-flag";

    [Theory]
    [InlineData("127.0.0.1:7000", "127.0.0.1", 7000)]
    [InlineData("node-1.example.org:443", "node-1.example.org", 443)]
    [InlineData("localhost:1", "localhost", 1)]
    [InlineData("[::1]:7000", "::1", 7000)]
    [InlineData("[2001:db8::5]:65535", "2001:db8::5", 65535)]
    [InlineData("  10.0.0.2:8080  ", "10.0.0.2", 8080)]
    public void Valid_addresses_are_parsed_into_host_and_port(string value, string host, int port)
    {
        Assert.Equal(new HostPort(host, port), HostPort.Parse(value, Setting));
    }

    [Theory]
    [InlineData(null, "is required")]
    [InlineData("", "is required")]
    [InlineData("   ", "is required")]
    [InlineData("127.0.0.1", "is not HOST:PORT")]
    [InlineData("127.0.0.1:", "is not HOST:PORT")]
    [InlineData(":7000", "is not HOST:PORT")]
    [InlineData("::1:7000", "IPv6 host in brackets")]
    [InlineData("2001:db8::5:7000", "IPv6 host in brackets")]
    [InlineData("127.0.0.1:0", "no valid port")]
    [InlineData("127.0.0.1:70000", "no valid port")]
    [InlineData("127.0.0.1:-1", "no valid port")]
    [InlineData("127.0.0.1:http", "no valid port")]
    [InlineData("bad host:7000", "no valid host name")]
    [InlineData("[]:7000", "is not [IPv6]:PORT")]
    [InlineData("[abc]:7000", "is not [IPv6]:PORT")]
    [InlineData("[::1]", "is not [IPv6]:PORT")]
    [InlineData("127.0.0.1:+80", "no valid port")]
    [InlineData("127.0.0.1: 80", "no valid port")]
    public void Invalid_addresses_are_refused_naming_the_setting(string? value, string problem)
    {
        var error = Assert.Throws<ConfigurationException>(() => HostPort.Parse(value, Setting));

        Assert.Equal(Setting, error.Setting);
        Assert.Contains(problem, error.Message, StringComparison.Ordinal);
        Assert.StartsWith(Setting + ": ", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_bracketed_IPv6_host_without_a_port_is_refused_naming_the_setting()
    {
        var error = Assert.Throws<ConfigurationException>(() => HostPort.Parse("[::1]", Setting));

        Assert.Equal(Setting, error.Setting);
    }

    [Theory]
    [InlineData("127.0.0.1", 7000, "127.0.0.1:7000")]
    [InlineData("node-1.example.org", 443, "node-1.example.org:443")]
    [InlineData("::1", 7000, "[::1]:7000")]
    public void ToString_writes_HOST_PORT_with_IPv6_hosts_in_brackets(string host, int port, string expected)
    {
        var endpoint = new HostPort(host, port);

        Assert.Equal(expected, endpoint.ToString());
        Assert.Equal(endpoint, HostPort.Parse(endpoint.ToString(), Setting));
    }

    [Fact]
    public void ParseList_splits_comma_separated_values_and_trims_spaces()
    {
        var list = HostPort.ParseList(["10.0.0.1:7000, base-2:7001 ,[::1]:7002", " 10.0.0.4:7003"], Setting);

        Assert.Equal(
            [new HostPort("10.0.0.1", 7000), new HostPort("base-2", 7001), new HostPort("::1", 7002), new HostPort("10.0.0.4", 7003)],
            list);
    }

    [Fact]
    public void ParseList_skips_empty_entries()
    {
        Assert.Equal([new HostPort("a", 1), new HostPort("b", 2)], HostPort.ParseList(["a:1,,b:2,", ""], Setting));
    }

    [Fact]
    public void ParseList_of_nothing_is_empty()
    {
        Assert.Empty(HostPort.ParseList(null, Setting));
        Assert.Empty(HostPort.ParseList([], Setting));
    }

    [Fact]
    public void ParseList_refuses_a_bad_entry_naming_the_setting()
    {
        var error = Assert.Throws<ConfigurationException>(() => HostPort.ParseList(["10.0.0.1:7000, 10.0.0.2"], "--base"));

        Assert.Equal("--base", error.Setting);
        Assert.Contains("'10.0.0.2'", error.Message, StringComparison.Ordinal);
    }
}
