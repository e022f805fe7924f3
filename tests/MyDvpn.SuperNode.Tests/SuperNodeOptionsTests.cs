using System.Net;
using System.Net.Sockets;
using MyDvpn.Common;
using MyDvpn.Security;
using MyDvpn.SuperNode.Edge;

namespace MyDvpn.SuperNode.Tests;

public sealed class SuperNodeOptionsTests : IDisposable
{
    private readonly TempDirectory temp = new();
    private readonly string nodeTls;

    public SuperNodeOptionsTests() => nodeTls = new Pki(temp).IssueSuper("super-1", "eu-west");

    public void Dispose() => temp.Dispose();

    [Theory]
    [InlineData("--region", null)]
    [InlineData("--region", "")]
    [InlineData("--region", "EU-west")]
    [InlineData("--region", "eu_west")]
    [InlineData("--id", null)]
    [InlineData("--id", "")]
    [InlineData("--id", "-super")]
    [InlineData("--id", "super 1")]
    [InlineData("--base", "")]
    [InlineData("--base", " , ")]
    [InlineData("--base", "127.0.0.1")]
    [InlineData("--base", "127.0.0.1:7000,base-2")]
    [InlineData("--public-ip", null)]
    [InlineData("--public-ip", "")]
    [InlineData("--public-ip", "public")]
    [InlineData("--public-ip", "203.0.113.300")]
    [InlineData("--relay-ports", null)]
    [InlineData("--relay-ports", "")]
    [InlineData("--relay-ports", "40000")]
    [InlineData("--relay-ports", "40999-40000")]
    [InlineData("--relay-ports", "0-100")]
    [InlineData("--relay-ports", "40000-70000")]
    [InlineData("--relay-ports", "a-b")]
    [InlineData("--relay-ports", "40000-40500-40999")]
    [InlineData("--max-streams", "0")]
    [InlineData("--max-streams", "-1")]
    public void A_bad_setting_is_refused_naming_its_flag(string flag, string? value)
    {
        var options = ValidOptions();
        Set(options, flag, value);

        var error = Assert.Throws<ConfigurationException>(options.Validate);

        Assert.Equal(flag, error.Setting);
    }

    [Fact]
    public void A_bad_setting_of_the_cluster_node_is_refused_too()
    {
        var options = ValidOptions();
        options.Tls = null;

        var error = Assert.Throws<ConfigurationException>(options.Validate);

        Assert.Equal("--tls", error.Setting);
    }

    [Fact]
    public void A_bad_edge_limit_is_refused_naming_its_setting()
    {
        var zeroChallenges = ValidOptions();
        zeroChallenges.Edge = zeroChallenges.Edge with { MaxChallengesPerSource = 0 };
        var noRefill = ValidOptions();
        noRefill.Edge = noRefill.Edge with { Messages = new StreamMessageRates { StatusReports = new MessageRate { Burst = 5, PerSecond = 0 } } };

        Assert.Equal("Super:Edge:MaxChallengesPerSource", Assert.Throws<ConfigurationException>(zeroChallenges.Validate).Setting);
        Assert.Equal("Super:Edge:Messages:StatusReports:PerSecond", Assert.Throws<ConfigurationException>(noRefill.Validate).Setting);
    }

    [Fact]
    public void The_deregistration_wait_is_taken_from_the_settings_and_must_be_positive()
    {
        var minute = ValidOptions();
        minute.DeregisterTimeout = TimeSpan.FromMinutes(1);
        var zero = ValidOptions();
        zero.DeregisterTimeout = TimeSpan.Zero;

        Assert.Equal(TimeSpan.FromMinutes(1), minute.Validate().DeregisterTimeout);
        Assert.Equal(TimeSpan.FromSeconds(3), ValidOptions().Validate().DeregisterTimeout);
        Assert.Equal("Super:DeregisterTimeout", Assert.Throws<ConfigurationException>(zero.Validate).Setting);
    }

    [Fact]
    public void A_tunnel_pool_in_reserved_address_space_fails_startup_naming_the_setting()
    {
        var options = ValidOptions();
        options.Exits = options.Exits with { TunnelPool = "127.0.0.0/16" };

        var error = Assert.Throws<ConfigurationException>(options.Validate);

        Assert.Equal("Super:Exits:TunnelPool", error.Setting);
        Assert.Contains("loopback", error.Message);
    }

    [Fact]
    public void A_valid_set_gives_settings_with_the_public_ip_and_listen_port_as_gRPC_endpoint()
    {
        var options = ValidOptions();
        options.Base = ["10.0.0.1:7000, 10.0.0.2:7000", "base-3:7000"];

        var settings = options.Validate();
        using var tls = settings.Node.Tls;

        var listenPort = HostPort.Parse(options.Listen, "--listen").Port;
        Assert.Equal($"203.0.113.7:{listenPort}", settings.GrpcEndpoint);
        Assert.Equal("eu-west", settings.Region);
        Assert.Equal("super-1", settings.Id);
        Assert.Equal(
            [new HostPort("10.0.0.1", 7000), new HostPort("10.0.0.2", 7000), new HostPort("base-3", 7000)],
            settings.BaseNodes);
        Assert.Equal(IPAddress.Parse("203.0.113.7"), settings.PublicIp);
        Assert.Equal(40000, settings.RelayPortLow);
        Assert.Equal(40999, settings.RelayPortHigh);
        // No --max-streams: as many as this process's descriptor limit leaves room for.
        Assert.Equal(SuperNodeOptions.DefaultMaxStreams(MyDvpn.Hosting.FileDescriptorLimit.Current(), 1000), settings.MaxStreams);
        Assert.Equal(CertificateKind.Node, settings.Node.Tls.Kind);
    }

    [Theory]
    [InlineData(20_000UL, 1000, 17_720)] // 20,000 - 256 other connections - 1,000 relay sockets - 1,024 spare
    [InlineData(20_000UL, 1, 18_719)]
    [InlineData(1_048_576UL, 1000, SuperNodeOptions.MaxStreamsCap)]
    [InlineData(1024UL, 100, 1)] // too few for any headroom: one stream, and the start warns
    public void The_default_of_max_streams_leaves_room_for_everything_else_under_the_descriptor_limit(ulong limit, int relayPorts, int expected)
    {
        Assert.Equal(expected, SuperNodeOptions.DefaultMaxStreams(limit, relayPorts));
    }

    [Theory]
    [InlineData(5000, 1400UL, 100, 20)] // asked for more than fits: what fits (1,400 - 256 - 100 - 1,024)
    [InlineData(10, 1400UL, 100, 10)] // fits: as asked
    [InlineData(150_000, 2_000_000UL, 1000, 150_000)] // an explicit value may pass the default's cap where it fits
    [InlineData(5000, null, 100, 5000)] // no readable limit: as asked
    public void Max_streams_admits_no_more_streams_than_the_descriptor_limit_fits(int requested, ulong? limit, int relayPorts, int expected)
    {
        Assert.Equal(expected, SuperNodeOptions.StreamsAdmitted(requested, limit, relayPorts));
    }

    [Fact]
    public void Without_max_streams_the_streams_admitted_are_the_default()
    {
        Assert.Equal(SuperNodeOptions.DefaultMaxStreams(20_000UL, 1000), SuperNodeOptions.StreamsAdmitted(null, 20_000UL, 1000));
    }

    [Fact]
    public void Without_a_readable_descriptor_limit_the_default_of_max_streams_is_its_cap()
    {
        Assert.Equal(SuperNodeOptions.MaxStreamsCap, SuperNodeOptions.DefaultMaxStreams(null, 1000));
    }

    [Fact]
    public void An_IPv6_public_ip_is_bracketed_in_the_gRPC_endpoint()
    {
        var options = ValidOptions();
        options.PublicIp = "2001:db8::7";
        options.RelayPorts = " 40000 - 40000 ";
        options.MaxStreams = 1;

        var settings = options.Validate();
        using var tls = settings.Node.Tls;

        Assert.Equal($"[2001:db8::7]:{settings.Node.Listen.Port}", settings.GrpcEndpoint);
        Assert.Equal((40000, 40000), (settings.RelayPortLow, settings.RelayPortHigh));
        Assert.Equal(1, settings.MaxStreams);
    }

    private SuperNodeOptions ValidOptions()
    {
        var ports = FreePorts(2);
        return new SuperNodeOptions
        {
            DataDir = temp.Sub("data"),
            Cluster = $"127.0.0.1:{ports[0]}",
            Listen = $"127.0.0.1:{ports[1]}",
            Tls = nodeTls,
            Region = "eu-west",
            Id = "super-1",
            Base = ["127.0.0.1:7000"],
            PublicIp = "203.0.113.7",
            RelayPorts = "40000-40999",
        };
    }

    private static void Set(SuperNodeOptions options, string flag, string? value)
    {
        switch (flag)
        {
            case "--region": options.Region = value; break;
            case "--id": options.Id = value; break;
            case "--base": options.Base = value is null ? [] : [value]; break;
            case "--public-ip": options.PublicIp = value; break;
            case "--relay-ports": options.RelayPorts = value; break;
            case "--max-streams": options.MaxStreams = int.Parse(value!); break;
            default: throw new ArgumentOutOfRangeException(nameof(flag), flag, "no such flag");
        }
    }

    /// <summary>Distinct ports nothing listens on right now: all are held until all are picked.</summary>
    private static int[] FreePorts(int count)
    {
        var listeners = Enumerable.Range(0, count).Select(_ => new TcpListener(IPAddress.Loopback, 0)).ToList();
        try
        {
            listeners.ForEach(listener => listener.Start());
            return [.. listeners.Select(listener => ((IPEndPoint)listener.LocalEndpoint).Port)];
        }
        finally
        {
            listeners.ForEach(listener => listener.Stop());
        }
    }
}
