using MyDvpn.Common;
using MyDvpn.Protocol.Control;
using MyDvpn.Security;

namespace MyDvpn.Peer.Tests;

/// <summary>Validation of <c>mydvpn peer</c> settings against real key and CA files.</summary>
public sealed class PeerOptionsTests : IDisposable
{
    private readonly TempDirectory temp = new();
    private readonly Pki pki;
    private readonly string keyFile;
    private readonly IdentityKey key = IdentityKey.Generate();

    public PeerOptionsTests()
    {
        pki = new Pki(temp);
        keyFile = temp.Sub("peer.key");
        key.Save(keyFile);
    }

    public void Dispose() => temp.Dispose();

    [Fact]
    public void Valid_options_give_settings_with_the_documented_defaults()
    {
        var settings = Valid().Validate();

        Assert.Equal(PeerRole.Client, settings.Role);
        Assert.Equal("peer-1", settings.Id);
        Assert.Equal("eu-west", settings.Region);
        Assert.Equal(key.PublicKeyBase64, settings.Key.PublicKeyBase64);
        Assert.Equal([new HostPort("127.0.0.1", 7443), new HostPort("127.0.0.2", 7443), new HostPort("localhost", 7444)], settings.SuperNodes);
        Assert.Null(settings.Token);
        Assert.Equal(Path.GetFullPath(temp.Sub("state")), settings.StateDir);
        Assert.True(Directory.Exists(settings.StateDir));
        Assert.Equal(new DataPlaneSettings("mydvpn0", null, null, 100, 51820, DataPlaneMode.None), settings.DataPlane);
        Assert.Equal(TimeSpan.FromMilliseconds(500), settings.Timings.ReconnectBase);
        Assert.Equal(TimeSpan.FromSeconds(30), settings.Timings.ReconnectCap);
    }

    [Theory]
    [InlineData("client", PeerRole.Client)]
    [InlineData("exit", PeerRole.Exit)]
    [InlineData("Both", PeerRole.Both)]
    public void Roles_are_client_exit_or_both(string role, PeerRole expected)
    {
        var options = Valid();
        options.Role = role;

        Assert.Equal(expected, options.Validate().Role);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("supernode")]
    [InlineData("relay")]
    public void Other_roles_are_refused(string? role)
    {
        var options = Valid();
        options.Role = role;

        AssertRefused("--role", options);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("-peer")]
    [InlineData("peer one")]
    [InlineData("peer-1\n")]
    public void Bad_ids_are_refused(string? id)
    {
        var options = Valid();
        options.Id = id;

        AssertRefused("--id", options);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("EU-West")]
    [InlineData("eu_west")]
    [InlineData("eu-")]
    public void Bad_regions_are_refused(string? region)
    {
        var options = Valid();
        options.Region = region;

        AssertRefused("--region", options);
    }

    [Fact]
    public void Metrics_are_served_only_where_asked_and_a_malformed_address_is_refused()
    {
        var options = Valid();
        Assert.Null(options.Validate().Metrics);

        options.Metrics = "127.0.0.1:9470";
        Assert.Equal(new HostPort("127.0.0.1", 9470), options.Validate().Metrics);

        options.Metrics = "127.0.0.1";
        AssertRefused("--metrics", options);
    }

    [Fact]
    public void Missing_key_file_says_how_to_make_one()
    {
        var options = Valid();
        options.Key = temp.Sub("missing.key");

        var problem = AssertRefused("--key", options);

        Assert.Contains($"mydvpn keygen --out {options.Key}", problem.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Malformed_key_file_is_refused()
    {
        var options = Valid();
        options.Key = temp.Sub("bad.key");
        File.WriteAllText(options.Key, "not a key\n");

        AssertRefused("--key", options);
    }

    [Fact]
    public void Missing_ca_file_is_refused()
    {
        var options = Valid();
        options.Ca = temp.Sub("missing-ca.crt");

        var problem = AssertRefused("--ca", options);

        Assert.Contains("does not exist", problem.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Node_certificate_given_as_the_ca_is_refused()
    {
        var options = Valid();
        options.Ca = Path.Combine(pki.IssueSuper("super-1", "eu-west"), CertificateAuthority.CertFile);

        var problem = AssertRefused("--ca", options);

        Assert.Contains("not a CA certificate", problem.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Empty_supernode_list_is_refused()
    {
        var options = Valid();
        options.Supernode = [" , "];

        var problem = AssertRefused("--supernode", options);

        Assert.Contains("is required", problem.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Supernode_that_is_not_host_port_is_refused()
    {
        var options = Valid();
        options.Supernode = ["127.0.0.1"];

        AssertRefused("--supernode", options);
    }

    [Fact]
    public void Blank_token_is_refused()
    {
        var options = Valid();
        options.Token = "  ";

        AssertRefused("--token", options);
    }

    [Fact]
    public void State_dir_that_cannot_be_created_is_refused()
    {
        var file = temp.Sub("a-file");
        File.WriteAllText(file, "");
        var options = Valid();
        options.StateDir = Path.Combine(file, "state");

        var problem = AssertRefused("--state-dir", options);

        Assert.Contains("not a writable directory", problem.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Default_state_dir_is_in_the_users_home_and_under_var_lib_for_root()
    {
        Assert.Equal("/home/ann/.local/state/mydvpn/peer-1", PeerOptions.DefaultStateDir("peer-1", isRoot: false, "/home/ann"));
        Assert.Equal("/var/lib/mydvpn/peer-1", PeerOptions.DefaultStateDir("peer-1", isRoot: true, "/root"));
    }

    [Fact]
    public void Without_a_state_dir_the_home_default_is_created()
    {
        var options = Valid();
        options.StateDir = null;

        var settings = options.Validate(isRoot: false, home: temp.Sub("home"));

        Assert.Equal(Path.Combine(temp.Sub("home"), ".local", "state", "mydvpn", "peer-1"), settings.StateDir);
        Assert.True(Directory.Exists(settings.StateDir));
    }

    [Fact]
    public void The_data_plane_is_wireguard_unless_told_and_needs_root()
    {
        var options = Valid();
        options.DataPlane = null;

        Assert.Equal(DataPlaneMode.WireGuard, options.Validate(isRoot: true).DataPlane.Mode);
        var problem = Assert.Throws<ConfigurationException>(() => options.Validate(isRoot: false, home: temp.Sub("home")));
        Assert.Equal("--data-plane", problem.Setting);
        Assert.Contains("needs root", problem.Message, StringComparison.Ordinal);
        Assert.Contains("--data-plane none", problem.Message, StringComparison.Ordinal);
        options.DataPlane = "none";
        Assert.Equal(DataPlaneMode.None, options.Validate(isRoot: false, home: temp.Sub("home")).DataPlane.Mode);
    }

    [Fact]
    public void An_unknown_data_plane_is_refused_naming_the_choices()
    {
        var options = Valid();
        options.DataPlane = "kernel";

        var problem = AssertRefused("--data-plane", options);
        Assert.Contains("wireguard (the default) or none", problem.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Data_plane_settings_are_validated()
    {
        var options = Valid();
        options.Role = "both";
        options.ExitRegion = "us-east";
        options.WgInterface = "wg-test";
        options.Uplink = "eth0";
        options.PublicEndpoint = "203.0.113.9:51820";
        options.MaxClients = 5;
        options.WgPort = 51821;

        var settings = options.Validate();

        Assert.Equal("us-east", settings.ExitRegion);
        Assert.Equal(new DataPlaneSettings("wg-test", "eth0", new HostPort("203.0.113.9", 51820), 5, 51821, DataPlaneMode.None), settings.DataPlane);
    }

    [Theory]
    [InlineData("--wg-port", "client")]
    [InlineData("--wg-interface", "client")]
    [InlineData("--uplink", "exit")]
    [InlineData("--max-clients", "exit")]
    [InlineData("--max-clients", "client")]
    [InlineData("--public-endpoint", "exit")]
    [InlineData("--public-endpoint", "client")]
    [InlineData("--exit-region", "client")]
    [InlineData("--exit-region", "exit")]
    public void Bad_data_plane_settings_are_refused_naming_the_flag(string flag, string role)
    {
        var options = Valid();
        options.Role = role;
        switch (flag, role)
        {
            case ("--wg-port", _):
                options.WgPort = 70000;
                break;
            case ("--wg-interface", _):
                options.WgInterface = "an-interface-name-too-long";
                break;
            case ("--uplink", _):
                options.Uplink = "eth0/1";
                break;
            case ("--max-clients", "exit"):
                options.MaxClients = 0;
                break;
            case ("--max-clients", _):
                options.MaxClients = 10; // A client serves nobody.
                break;
            case ("--public-endpoint", "exit"):
                options.PublicEndpoint = "203.0.113.9";
                break;
            case ("--public-endpoint", _):
                options.PublicEndpoint = "203.0.113.9:51820"; // A client is reached by nobody.
                break;
            case ("--exit-region", "client"):
                options.ExitRegion = "US-East";
                break;
            case ("--exit-region", _):
                options.ExitRegion = "us-east"; // An exit asks for no exit.
                break;
        }

        AssertRefused(flag, options);
    }

    [Fact]
    public void A_revocation_list_given_with_crl_is_kept_in_the_state_directory_and_read_again_after_a_restart()
    {
        var superNode = pki.IssueSuper("sn-1", "eu-west");
        CaRevocations.RevokeCertificate(pki.CaDir, Path.Combine(superNode, CertificateAuthority.CertFile), null, DateTimeOffset.UtcNow);
        var options = Valid();
        options.Crl = Path.Combine(pki.CaDir, CaRevocations.CrlFile);

        Assert.Equal(1ul, options.Validate().Crl!.Number);

        options.Crl = null;
        var restarted = options.Validate();
        Assert.Equal(1ul, restarted.Crl!.Number);
        Assert.True(File.Exists(Path.Combine(restarted.StateDir, PeerOptions.CrlFileName)));
    }

    [Fact]
    public void A_crl_that_is_missing_or_not_a_list_of_the_CA_is_refused_naming_the_flag()
    {
        var options = Valid();
        options.Crl = temp.Sub("missing.crl");
        Assert.Contains("does not exist", AssertRefused("--crl", options).Message, StringComparison.Ordinal);

        var other = new Pki(temp, "other-ca");
        CaRevocations.RevokeCertificate(other.CaDir, Path.Combine(other.IssueSuper("sn-1", "eu-west"), CertificateAuthority.CertFile), null, DateTimeOffset.UtcNow);
        options.Crl = Path.Combine(other.CaDir, CaRevocations.CrlFile);
        Assert.Contains("signature is not this network's CA's", AssertRefused("--crl", options).Message, StringComparison.Ordinal);
    }

    private PeerOptions Valid() => new()
    {
        Role = "client",
        Id = "peer-1",
        Region = "eu-west",
        Key = keyFile,
        Ca = pki.CaFile,
        Supernode = ["127.0.0.1:7443,127.0.0.2:7443", "localhost:7444"],
        StateDir = temp.Sub("state"),
        DataPlane = "none",
    };

    private static ConfigurationException AssertRefused(string setting, PeerOptions options)
    {
        var problem = Assert.Throws<ConfigurationException>(() => options.Validate());
        Assert.Equal(setting, problem.Setting);
        return problem;
    }
}
