namespace MyDvpn.Common.Tests;

public sealed class CidrTests
{
    [Theory]
    [InlineData("10.0.0.7/24", "10.0.0.0/24", "10.0.0.7/24")]
    [InlineData("10.0.0.7", "10.0.0.7/32", "10.0.0.7/32")]
    [InlineData("fd00::1:2/64", "fd00::/64", "fd00::1:2/64")]
    public void Cidrs_are_normalized(string text, string network, string address)
    {
        Assert.Equal(network, Cidr.NormalizeNetwork(text));
        Assert.Equal(address, Cidr.NormalizeAddress(text));
    }

    [Fact]
    public void A_network_contains_its_subnets_only()
    {
        var net = Cidr.Parse("10.78.0.0/24");

        Assert.True(net.Contains(Cidr.Parse("10.78.0.9/32")));
        Assert.True(net.Contains(Cidr.Parse("10.78.0.0/24")));
        Assert.False(net.Contains(Cidr.Parse("10.78.0.0/16")));
        Assert.False(net.Contains(Cidr.Parse("10.79.0.1/32")));
        Assert.False(net.Contains(Cidr.Parse("fd00::1/128")));
    }
}
