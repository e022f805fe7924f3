using System.Collections.Immutable;
using MyDvpn.DataPlane.Os;
using MyDvpn.DataPlane.Reconciliation;
using MyDvpn.Security;

namespace MyDvpn.DataPlane.Tests.Unit;

public sealed class SpecAndAddressTests
{
    private static InterfaceSpec Valid() => new("wg0", WireGuardKey.Generate().PrivateKey, 51820, ["10.78.0.1/24"],
        [new PeerSpec(WireGuardKey.Generate().PublicKey, "exit.example:51820", ["0.0.0.0/0"], 25)], new FullTunnelSpec(), null);

    [Fact]
    public void A_valid_spec_has_no_problem() => Assert.Null(SpecValidation.Problem(Valid()));

    [Theory]
    [InlineData("this-name-is-too-long")]
    [InlineData("has space")]
    [InlineData("")]
    [InlineData("..")]
    public void Bad_interface_names_are_refused(string name) =>
        Assert.Contains("interface name", SpecValidation.Problem(Valid() with { Name = name }));

    [Fact]
    public void Every_problem_of_a_spec_is_named()
    {
        var key = WireGuardKey.Generate().PublicKey;
        var spec = Valid() with
        {
            ListenPort = 70000,
            Peers = [new PeerSpec(key, "no-port", ["10.0.0.0/33"], -1), new PeerSpec(key, null, [], 0)],
            FullTunnel = new FullTunnelSpec(Table: 254),
            ExitNat = new ExitNatSpec([], "wg0"),
        };

        var problem = SpecValidation.Problem(spec)!;

        Assert.Contains("listen port 70000", problem);
        Assert.Contains("endpoint 'no-port'", problem);
        Assert.Contains("'10.0.0.0/33'", problem);
        Assert.Contains("keepalive -1", problem);
        Assert.Contains("listed twice", problem);
        Assert.Contains("table 254", problem);
        Assert.Contains("at least one source subnet", problem);
        Assert.Contains("uplink cannot be the WireGuard interface", problem);
    }

    [Theory]
    [InlineData("192.0.2.1:51820", "192.0.2.1", 51820)]
    [InlineData("[2001:db8::1]:443", "2001:db8::1", 443)]
    [InlineData("exit.example:1", "exit.example", 1)]
    public void Endpoints_are_parsed(string text, string host, int port)
    {
        Assert.True(Endpoints.TryParse(text, out var h, out var p));
        Assert.Equal(host, h);
        Assert.Equal(port, p);
    }

    [Theory]
    [InlineData("192.0.2.1")]
    [InlineData("2001:db8::1:443")]
    [InlineData("host:0")]
    [InlineData("host:70000")]
    [InlineData("[2001:db8::1:443")]
    public void Bad_endpoints_are_refused(string text) => Assert.False(Endpoints.TryParse(text, out _, out _));

    [Fact]
    public void Routes_are_added_only_for_allowed_networks_outside_the_interface_subnets()
    {
        var spec = Valid() with
        {
            Addresses = ["10.78.0.1/24"],
            Peers =
            [
                new PeerSpec(WireGuardKey.Generate().PublicKey, null, ["10.78.0.2/32", "10.90.0.0/16", "0.0.0.0/0", "::/0"], 0),
                new PeerSpec(WireGuardKey.Generate().PublicKey, null, ["10.90.1.0/24", "fd00::/64"], 0),
            ],
        };

        var routes = InterfaceReconciler.DesiredRoutes(spec);

        Assert.Equal(new[] { "10.90.0.0/16", "10.90.1.0/24", "fd00::/64" }.ToImmutableSortedSet(), routes.ToImmutableSortedSet());
    }
}
