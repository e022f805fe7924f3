using MyDvpn.SuperNode.Exits;

namespace MyDvpn.SuperNode.Tests.Exits;

/// <summary>Which endpoint the region gives an exit's clients, from its claim and its control stream's address.</summary>
public sealed class ExitEndpointsTests
{
    private const string Stream = "198.51.100.7";

    [Fact]
    public void A_claim_on_the_streams_address_is_taken_with_its_port()
    {
        var choice = ExitEndpoints.Choose("exit-1", "198.51.100.7:40000", 51820, Stream, ExitSettings.Default);

        Assert.Equal(new ExitEndpoints.Choice("198.51.100.7:40000", null), choice);
    }

    [Fact]
    public void A_claim_on_the_streams_address_as_an_IPv4_mapped_address_is_taken()
    {
        var choice = ExitEndpoints.Choose("exit-1", "198.51.100.7:51820", 51820, "::ffff:198.51.100.7", ExitSettings.Default);

        Assert.Equal(new ExitEndpoints.Choice("198.51.100.7:51820", null), choice);
    }

    [Theory]
    [InlineData("203.0.113.50:53")]
    [InlineData("127.0.0.1:51820")]
    [InlineData("exit.example:51820")]
    public void A_claim_elsewhere_gives_the_streams_address_and_the_wireguard_port_and_says_why(string claimed)
    {
        var choice = ExitEndpoints.Choose("exit-1", claimed, 51820, Stream, ExitSettings.Default);

        Assert.Equal("198.51.100.7:51820", choice.Endpoint);
        Assert.NotNull(choice.RefusedClaim);
        Assert.Contains(claimed, choice.RefusedClaim);
    }

    [Fact]
    public void No_claim_gives_the_streams_address_and_no_complaint()
    {
        Assert.Equal(new ExitEndpoints.Choice("198.51.100.7:51820", null), ExitEndpoints.Choose("exit-1", "", 51820, Stream, ExitSettings.Default));
    }

    [Fact]
    public void A_claim_that_cannot_be_checked_without_a_stream_address_gives_no_endpoint()
    {
        var choice = ExitEndpoints.Choose("exit-1", "203.0.113.50:51820", 51820, "", ExitSettings.Default);

        Assert.Null(choice.Endpoint);
        Assert.Contains("cannot be checked", choice.RefusedClaim);
    }

    [Fact]
    public void The_operators_endpoint_for_an_exit_wins_over_its_claim_and_its_stream()
    {
        var settings = ExitSettings.Default with { TrustedEndpoints = new(StringComparer.Ordinal) { ["exit-1"] = "192.0.2.10:51999" } };

        Assert.Equal(new ExitEndpoints.Choice("192.0.2.10:51999", null), ExitEndpoints.Choose("exit-1", "203.0.113.50:53", 51820, Stream, settings));
        Assert.Equal("198.51.100.7:51820", ExitEndpoints.Choose("exit-2", "203.0.113.50:53", 51820, Stream, settings).Endpoint);
    }

    [Fact]
    public void A_claim_in_a_trusted_network_is_taken_from_another_stream_address()
    {
        var settings = ExitSettings.Default with { TrustedEndpointNetworks = ["203.0.113.0/24"] };

        Assert.Equal(new ExitEndpoints.Choice("203.0.113.50:51820", null), ExitEndpoints.Choose("exit-1", "203.0.113.50:51820", 51820, Stream, settings));
        Assert.Equal("198.51.100.7:51820", ExitEndpoints.Choose("exit-1", "192.0.2.1:51820", 51820, Stream, settings).Endpoint);
    }

    public static TheoryData<ExitSettings, string> BadSettings() => new()
    {
        { ExitSettings.Default with { TrustedEndpoints = new() { ["exit 1"] = "192.0.2.10:51820" } }, "TrustedEndpoints" },
        { ExitSettings.Default with { TrustedEndpoints = new() { ["exit-1"] = "192.0.2.10" } }, "TrustedEndpoints:exit-1" },
        { ExitSettings.Default with { TrustedEndpoints = new() { ["exit-1"] = "exit.example:51820" } }, "TrustedEndpoints:exit-1" },
        { ExitSettings.Default with { TrustedEndpointNetworks = ["203.0.113.0"] }, "TrustedEndpointNetworks" },
        { ExitSettings.Default with { TrustedEndpointNetworks = ["0.0.0.0/0"] }, "TrustedEndpointNetworks" },
    };

    [Theory]
    [MemberData(nameof(BadSettings))]
    public void A_bad_trusted_endpoint_setting_is_refused_naming_it(ExitSettings settings, string setting)
    {
        var error = Assert.Throws<ArgumentException>(settings.Validate);

        Assert.Contains("Super:Exits:" + setting, error.Message);
    }
}
