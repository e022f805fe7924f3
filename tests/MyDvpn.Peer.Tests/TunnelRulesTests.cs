using MyDvpn.Common;
using MyDvpn.Peer.Commands.Handlers;

namespace MyDvpn.Peer.Tests;

/// <summary>The rules a command's tunnel values must meet, as pure functions: what passes, and what is refused saying why.</summary>
public sealed class TunnelRulesTests
{
    private static readonly Cidr Subnet = Cidr.Parse("100.96.3.0/24");

    [Theory]
    [InlineData("100.96.3.0/24")]
    [InlineData("10.0.0.0/8")]
    [InlineData("192.168.7.4/30")]
    public void Exit_subnet_that_TunnelAddressing_can_hand_out_passes(string value)
    {
        Assert.Null(TunnelRules.SubnetProblem(value, "tunnel_subnet", out var subnet));
        Assert.Equal(Cidr.Parse(value), subnet);
    }

    [Theory]
    [InlineData("", "tunnel_subnet is empty")]
    [InlineData("100.96.3.0", "not ADDRESS/PREFIX")]
    [InlineData("0.0.0.0/0", "whole IPv4 address space")]
    [InlineData("fd00::/64", "not IPv4")]
    [InlineData("100.96.3.1/24", "host bits set (the network is 100.96.3.0/24)")]
    [InlineData("100.96.3.0/31", "at most /30")]
    [InlineData("127.0.0.0/24", "loopback")]
    [InlineData("0.0.0.0/8", "'this network'")]
    [InlineData("169.254.0.0/16", "link-local")]
    [InlineData("224.0.0.0/24", "multicast")]
    [InlineData("192.0.0.0/2", "multicast")]
    [InlineData("255.255.255.252/30", "broadcast")]
    public void Exit_subnet_outside_what_a_pool_holds_is_refused(string value, string reason)
    {
        Assert.Contains(reason, TunnelRules.SubnetProblem(value, "tunnel_subnet", out _), StringComparison.Ordinal);
    }

    [Fact]
    public void Client_allowed_ips_must_be_exactly_the_full_tunnel()
    {
        Assert.Null(TunnelRules.ClientAllowedIpsProblem(["0.0.0.0/0"], "peer.allowed_ips"));
        Assert.Contains("peer.allowed_ips is [10.0.0.0/8]; a client routes exactly the full tunnel through its exit: [0.0.0.0/0]",
            TunnelRules.ClientAllowedIpsProblem(["10.0.0.0/8"], "peer.allowed_ips"), StringComparison.Ordinal);
        Assert.Contains("exactly the full tunnel", TunnelRules.ClientAllowedIpsProblem(["0.0.0.0/0", "192.168.1.0/24"], "peer.allowed_ips"), StringComparison.Ordinal);
        Assert.Contains("exactly the full tunnel", TunnelRules.ClientAllowedIpsProblem(["0.0.0.0/0", "::/0"], "peer.allowed_ips"), StringComparison.Ordinal);
        Assert.Contains("exactly the full tunnel", TunnelRules.ClientAllowedIpsProblem(["0.0.0.0/1", "128.0.0.0/1"], "peer.allowed_ips"), StringComparison.Ordinal);
        Assert.Contains("peer.allowed_ips is empty", TunnelRules.ClientAllowedIpsProblem([], "peer.allowed_ips"), StringComparison.Ordinal);
        Assert.Contains("not ADDRESS/PREFIX", TunnelRules.ClientAllowedIpsProblem(["everything"], "peer.allowed_ips"), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("100.96.3.2/32", null)]
    [InlineData("100.96.3.254/32", null)]
    [InlineData("100.96.3.0/24", "not a host route")]
    [InlineData("0.0.0.0/0", "not a host route")]
    [InlineData("100.96.4.2/32", "outside the tunnel subnet 100.96.3.0/24")]
    [InlineData("fd00::2/128", "outside the tunnel subnet")]
    [InlineData("100.96.3.0/32", "network or broadcast")]
    [InlineData("100.96.3.255/32", "network or broadcast")]
    [InlineData("100.96.3/32", "four dotted parts")]
    public void Host_routes_are_hosts_of_the_tunnel_subnet(string value, string? reason)
    {
        var problem = TunnelRules.HostRoutesProblem([value], Subnet, "peer.allowed_ips");

        if (reason is null)
            Assert.Null(problem);
        else
            Assert.Contains(reason, problem, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("100.96.3.1/24", null)]
    [InlineData("100.96.3.1/0", "would masquerade 0.0.0.0/0 (everything) as a source")]
    [InlineData("100.96.3.1/16", "would masquerade 100.96.0.0/16 as a source")]
    [InlineData("100.96.3.1/32", "with its prefix /24")]
    [InlineData("192.168.1.1/24", "not an address of the tunnel subnet 100.96.3.0/24")]
    [InlineData("100.96.3.0/24", "network or broadcast")]
    [InlineData("100.96.3.255/24", "network or broadcast")]
    public void Exit_address_is_a_host_of_the_subnet_with_its_prefix_so_only_the_subnet_is_masqueraded(string value, string? reason)
    {
        var problem = TunnelRules.ExitAddressesProblem([value], Subnet, "tunnel_addresses");

        if (reason is null)
            Assert.Null(problem);
        else
            Assert.Contains(reason, problem, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("198.51.100.7:51820", null)]
    [InlineData("[2001:db8::7]:51820", null)]
    [InlineData("exit.example.net:51820", null)]
    [InlineData("127.0.0.1:51820", "a loopback address")]
    [InlineData("127.8.9.10:51820", "a loopback address")]
    [InlineData("[::1]:51820", "a loopback address")]
    [InlineData("[::ffff:127.0.0.1]:51820", "a loopback address")]
    [InlineData("0.0.0.0:51820", "the unspecified address")]
    [InlineData("[::]:51820", "the unspecified address")]
    [InlineData("224.0.0.1:51820", "a multicast address")]
    [InlineData("239.255.255.250:51820", "a multicast address")]
    [InlineData("[ff02::1]:51820", "a multicast address")]
    [InlineData("255.255.255.255:51820", "the broadcast address")]
    [InlineData("localhost:51820", "names localhost")]
    [InlineData("wg.LOCALHOST:51820", "names localhost")]
    [InlineData("198.51.100.7", "not HOST:PORT")]
    [InlineData("198.51.100.7:0", "no valid port")]
    public void Endpoint_is_a_unicast_address(string value, string? reason)
    {
        var problem = TunnelRules.EndpointProblem(value, "peer.endpoint", out var endpoint);

        if (reason is null)
        {
            Assert.Null(problem);
            Assert.Equal(value, endpoint!.ToString());
        }
        else
        {
            Assert.Contains(reason, problem, StringComparison.Ordinal);
            Assert.Null(endpoint);
        }
    }
}
