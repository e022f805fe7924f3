using MyDvpn.SuperNode.Exits;

namespace MyDvpn.SuperNode.Tests.Exits;

/// <summary>How the tunnel pool is cut into exit subnets, and which exit settings are refused.</summary>
public sealed class TunnelAddressingTests
{
    private static readonly TunnelAddressing Default = ExitSettings.Default.Addressing();

    [Fact]
    public void Default_pool_is_cut_into_4096_subnets_of_253_clients()
    {
        Assert.Equal(24, Default.SubnetPrefixLength);
        Assert.Equal(4096, Default.SubnetCount);
        Assert.Equal(254, Default.LastClientHost);
        Assert.Equal(253, Default.ClientsPerSubnet);
    }

    [Fact]
    public void Subnet_n_holds_the_exit_at_host_1_and_clients_as_host_routes()
    {
        Assert.Equal("100.96.0.0/24", Default.Subnet(0));
        Assert.Equal("100.96.0.1/24", Default.ExitAddress(0));
        Assert.Equal("100.96.0.2/32", Default.ClientAddress(0, 2));
        Assert.Equal("100.96.5.0/24", Default.Subnet(5));
        Assert.Equal("100.96.5.1/24", Default.ExitAddress(5));
        Assert.Equal("100.96.5.254/32", Default.ClientAddress(5, 254));
        Assert.Equal("100.111.255.0/24", Default.Subnet(4095));
    }

    [Fact]
    public void Hosts_and_subnets_outside_the_pool_are_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Default.Address(0, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => Default.Address(0, 255));
        Assert.Throws<ArgumentOutOfRangeException>(() => Default.Subnet(4096));
        Assert.Throws<ArgumentOutOfRangeException>(() => Default.Subnet(-1));
    }

    [Fact]
    public void Slash_30_subnet_holds_the_exit_and_one_client()
    {
        var addressing = TunnelAddressing.Parse("10.200.0.0/16", 30);

        Assert.Equal(1, addressing.ClientsPerSubnet);
        Assert.Equal(16384, addressing.SubnetCount);
        Assert.Equal("10.200.0.4/30", addressing.Subnet(1));
        Assert.Equal("10.200.0.5/30", addressing.ExitAddress(1));
        Assert.Equal("10.200.0.6/32", addressing.ClientAddress(1, TunnelAddressing.FirstClientHost));
        Assert.Throws<ArgumentOutOfRangeException>(() => addressing.ClientAddress(1, 3));
    }

    [Fact]
    public void Pool_as_large_as_one_subnet_holds_exactly_one()
    {
        var addressing = TunnelAddressing.Parse("192.168.7.0/24", 24);

        Assert.Equal(1, addressing.SubnetCount);
        Assert.Equal("192.168.7.0/24", addressing.Subnet(0));
    }

    [Theory]
    [InlineData("fd00::/64", 24, "Super:Exits:TunnelPool")]
    [InlineData("::ffff:100.96.0.0/108", 24, "Super:Exits:TunnelPool")]
    [InlineData("100.96.0.0", 24, "Super:Exits:TunnelPool")]
    [InlineData("not-a-cidr", 24, "Super:Exits:TunnelPool")]
    [InlineData("", 24, "Super:Exits:TunnelPool")]
    [InlineData("100.96.0.0/12", 31, "Super:Exits:SubnetPrefixLength")]
    [InlineData("100.96.0.0/12", 32, "Super:Exits:SubnetPrefixLength")]
    [InlineData("100.96.0.0/12", 11, "Super:Exits:SubnetPrefixLength")]
    [InlineData("100.96.0.0/12", -1, "Super:Exits:SubnetPrefixLength")]
    public void Bad_pool_or_subnet_prefix_is_refused_naming_the_setting(string pool, int subnetPrefix, string setting)
    {
        var error = Assert.Throws<ArgumentException>(() => TunnelAddressing.Parse(pool, subnetPrefix));

        Assert.Contains(setting, error.Message);
    }

    [Theory]
    [InlineData("100.96.0.1/12")]
    [InlineData("100.96.4.0/12")]
    public void Pool_with_host_bits_set_is_refused_naming_the_setting(string pool)
    {
        // .NET's IPNetwork.TryParse masks the host bits away instead of failing: the pool must check them itself,
        // or 100.96.4.0/12 silently becomes 100.96.0.0/12.
        var error = Assert.Throws<ArgumentException>(() => TunnelAddressing.Parse(pool, 24));

        Assert.Contains("Super:Exits:TunnelPool", error.Message);
    }

    [Theory]
    [InlineData("127.0.0.0/8", "loopback")]
    [InlineData("127.64.0.0/16", "loopback")]
    [InlineData("224.0.0.0/12", "multicast")]
    [InlineData("169.254.0.0/16", "link-local")]
    [InlineData("0.0.0.0/12", "'this network'")]
    [InlineData("240.0.0.0/12", "reserved and broadcast")]
    [InlineData("128.0.0.0/1", "link-local")]
    public void Pool_in_reserved_address_space_is_refused_naming_the_setting_and_the_block(string pool, string block)
    {
        // Agents validate every exit subnet with the same blocks (TunnelRules) and would refuse every command.
        var error = Assert.Throws<ArgumentException>(() => TunnelAddressing.Parse(pool, 24));

        Assert.Contains("Super:Exits:TunnelPool", error.Message);
        Assert.Contains(block, error.Message);
        Assert.Equal("TunnelPool", error.ParamName);
    }

    [Fact]
    public void Default_exit_settings_are_valid()
    {
        ExitSettings.Default.Validate();
    }

    public static TheoryData<ExitSettings, string> BadSettings() => new()
    {
        { ExitSettings.Default with { TunnelPool = "100.96.0.0/33" }, "TunnelPool" },
        { ExitSettings.Default with { SubnetPrefixLength = 8 }, "SubnetPrefixLength" },
        { ExitSettings.Default with { AckTimeout = TimeSpan.Zero }, "AckTimeout" },
        { ExitSettings.Default with { FailureCooldown = TimeSpan.FromSeconds(-1) }, "FailureCooldown" },
        { ExitSettings.Default with { ClientSetupTimeout = TimeSpan.Zero }, "ClientSetupTimeout" },
        { ExitSettings.Default with { RemoveDeadline = TimeSpan.Zero }, "RemoveDeadline" },
        { ExitSettings.Default with { AllocationTimeout = TimeSpan.Zero }, "AllocationTimeout" },
        { ExitSettings.Default with { ReleaseRetry = TimeSpan.Zero }, "ReleaseRetry" },
        { ExitSettings.Default with { MaxExitAttempts = 0 }, "MaxExitAttempts" },
        { ExitSettings.Default with { ExitHeartbeat = TimeSpan.FromSeconds(20) }, "ExitOfflineAfter" },
        { ExitSettings.Default with { PersistentKeepaliveSeconds = -1 }, "PersistentKeepaliveSeconds" },
        { ExitSettings.Default with { PersistentKeepaliveSeconds = 65536 }, "PersistentKeepaliveSeconds" },
        { ExitSettings.Default with { ClientAllowedIps = [] }, "ClientAllowedIps" },
        { ExitSettings.Default with { ClientAllowedIps = ["0.0.0.0/0", "everything"] }, "ClientAllowedIps" },
        { ExitSettings.Default with { ClientAllowedIps = ["10.0.0.0/8"] }, "ClientAllowedIps must be exactly [0.0.0.0/0]" },
        { ExitSettings.Default with { ClientAllowedIps = ["0.0.0.0/0", "::/0"] }, "ClientAllowedIps must be exactly [0.0.0.0/0]" },
    };

    [Theory]
    [MemberData(nameof(BadSettings))]
    public void Bad_exit_setting_is_refused_naming_it(ExitSettings settings, string setting)
    {
        var error = Assert.Throws<ArgumentException>(settings.Validate);

        Assert.Contains("Super:Exits:" + setting, error.Message);
    }
}
