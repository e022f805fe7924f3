using System.Net;
using System.Net.Sockets;
using MyDvpn.Security;

namespace MyDvpn.Cli.Tests;

public sealed class CommandLineTests : IDisposable
{
    private readonly TempDirectory temp = new();

    public void Dispose() => temp.Dispose();

    /// <summary>The certificate of SuperNode sn-1 of eu-west (what <see cref="SuperArgs"/> runs as) in <c>node</c>.</summary>
    private string NodeCertificate(string id = "sn-1", string region = "eu-west")
    {
        if (!File.Exists(temp.Sub("ca/ca.crt")))
            CertificateAuthority.Init(temp.Sub("ca"));
        CertificateAuthority.IssueNode(temp.Sub("ca"), NodeIdentity.Super(id, region), [IPAddress.Loopback], [], temp.Sub("node"));
        return temp.Sub("node");
    }

    private string[] SuperArgs(params string[] overrides)
    {
        var args = new Dictionary<string, string>
        {
            ["--data-dir"] = temp.Sub("data"),
            ["--region"] = "eu-west",
            ["--id"] = "sn-1",
            ["--cluster"] = $"127.0.0.1:{FreePort()}",
            ["--base"] = "127.0.0.1:1",
            ["--listen"] = $"127.0.0.1:{FreePort()}",
            ["--public-ip"] = "127.0.0.1",
            ["--relay-ports"] = "40000-40099",
            ["--tls"] = temp.Sub("node"),
        };
        for (var i = 0; i < overrides.Length; i += 2)
            args[overrides[i]] = overrides[i + 1];
        return ["super", .. args.SelectMany(pair => new[] { pair.Key, pair.Value })];
    }

    [Fact]
    public async Task Unknown_subcommand_is_bad_usage()
    {
        var (exitCode, _, error) = await CliRunner.RunAsync("frobnicate");
        Assert.Equal(2, exitCode);
        Assert.Contains("frobnicate", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Missing_required_flag_is_bad_usage_naming_it()
    {
        var (exitCode, _, error) = await CliRunner.RunAsync("keygen");
        Assert.Equal(2, exitCode);
        Assert.Contains("--out", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--region", "EU_West", "--region")]
    [InlineData("--region", "", "--region")]
    [InlineData("--id", "has space", "--id")]
    [InlineData("--relay-ports", "40000", "--relay-ports")]
    [InlineData("--relay-ports", "5000-4000", "--relay-ports")]
    [InlineData("--public-ip", "not-an-ip", "--public-ip")]
    [InlineData("--base", "nohostport", "--base")]
    [InlineData("--listen", "127.0.0.1:70000", "--listen")]
    [InlineData("--tls", "/nonexistent/tls", "--tls")]
    public async Task Bad_supernode_setting_exits_2_naming_the_setting(string flag, string value, string named)
    {
        NodeCertificate();
        var (exitCode, _, error) = await CliRunner.RunAsync(SuperArgs(flag, value));
        Assert.Equal(2, exitCode);
        Assert.StartsWith($"error: {named}", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Port_in_use_exits_2_naming_the_flag()
    {
        NodeCertificate();
        using var occupied = new TcpListener(IPAddress.Loopback, 0);
        occupied.Start();
        var port = ((IPEndPoint)occupied.LocalEndpoint).Port;
        var (exitCode, _, error) = await CliRunner.RunAsync(SuperArgs("--listen", $"127.0.0.1:{port}"));
        Assert.Equal(2, exitCode);
        Assert.Contains("--listen", error, StringComparison.Ordinal);
        Assert.Contains("already in use", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Admin_certificate_cannot_run_a_node()
    {
        CertificateAuthority.Init(temp.Sub("ca"));
        CertificateAuthority.IssueAdmin(temp.Sub("ca"), "ops", [], [], temp.Sub("node"));
        var (exitCode, _, error) = await CliRunner.RunAsync(SuperArgs());
        Assert.Equal(2, exitCode);
        Assert.Contains("admin certificate", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("sn-2", "eu-west")]
    [InlineData("sn-1", "us-east")]
    public async Task A_SuperNode_refuses_to_start_with_a_certificate_naming_another_id_or_region(string id, string region)
    {
        NodeCertificate(id, region);

        var (exitCode, _, error) = await CliRunner.RunAsync(SuperArgs());

        Assert.Equal(2, exitCode);
        Assert.StartsWith("error: --tls:", error, StringComparison.Ordinal);
        Assert.Contains($"is the certificate of SuperNode {id} of region {region} (mydvpn://super/{region}/{id})", error, StringComparison.Ordinal);
        Assert.Contains("runs as SuperNode sn-1 of region eu-west", error, StringComparison.Ordinal);
        Assert.Contains("mydvpn ca issue --role super --region eu-west --name sn-1", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_SuperNode_refuses_to_start_with_a_BaseNode_certificate()
    {
        CertificateAuthority.Init(temp.Sub("ca"));
        CertificateAuthority.IssueNode(temp.Sub("ca"), NodeIdentity.Base("sn-1"), [IPAddress.Loopback], [], temp.Sub("node"));

        var (exitCode, _, error) = await CliRunner.RunAsync(SuperArgs());

        Assert.Equal(2, exitCode);
        Assert.Contains("is the certificate of BaseNode sn-1 (mydvpn://base/sn-1), but this node runs as SuperNode sn-1", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Joining_other_nodes_on_sqlite_is_refused_with_the_fix()
    {
        NodeCertificate();
        var (exitCode, _, error) = await CliRunner.RunAsync(SuperArgs("--seed", "127.0.0.1:9"));
        Assert.Equal(2, exitCode);
        Assert.StartsWith("error: --postgres", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Flags_win_over_environment_and_config_file()
    {
        NodeCertificate();
        File.WriteAllText(temp.Sub("config.json"), """{ "Super": { "Region": "from-file", "RelayPorts": "bad" } }""");
        Environment.SetEnvironmentVariable("MYDVPN__SUPER__ID", "bad id from env");
        try
        {
            // The file's bad relay range and the environment's bad id are used when no flag overrides them…
            var args = SuperArgs().ToList();
            RemoveFlag(args, "--relay-ports");
            RemoveFlag(args, "--id");
            var (exitCode, _, error) = await CliRunner.RunAsync([.. args, "--config", temp.Sub("config.json")]);
            Assert.Equal(2, exitCode);
            Assert.StartsWith("error: --id: 'bad id from env'", error, StringComparison.Ordinal);

            // …and flags beat both.
            (exitCode, _, error) = await CliRunner.RunAsync([.. args, "--config", temp.Sub("config.json"), "--id", "sn-9", "--relay-ports", "x"]);
            Assert.Equal(2, exitCode);
            Assert.StartsWith("error: --relay-ports: 'x'", error, StringComparison.Ordinal);
        }
        finally
        {
            Environment.SetEnvironmentVariable("MYDVPN__SUPER__ID", null);
        }
    }

    [Fact]
    public async Task Session_settings_come_from_the_config_file_and_a_bad_one_is_named()
    {
        NodeCertificate();
        File.WriteAllText(temp.Sub("sessions.json"), """{ "Super": { "Sessions": { "MaxAttempts": 0 } } }""");

        var (exitCode, _, error) = await CliRunner.RunAsync([.. SuperArgs(), "--config", temp.Sub("sessions.json")]);

        Assert.Equal(2, exitCode);
        Assert.StartsWith("error: Super:Sessions:MaxAttempts: MaxAttempts must be at least 1, was 0.", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Missing_config_file_is_named()
    {
        var (exitCode, _, error) = await CliRunner.RunAsync("base", "--config", temp.Sub("nope.json"));
        Assert.Equal(2, exitCode);
        Assert.StartsWith("error: --config", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Keygen_prints_the_public_key_and_never_overwrites()
    {
        var (exitCode, output, _) = await CliRunner.RunAsync("keygen", "--out", temp.Sub("id.key"));
        Assert.Equal(0, exitCode);
        Assert.Equal(Convert.ToBase64String(IdentityKey.Load(temp.Sub("id.key")).PublicKey), output.Trim());

        (exitCode, _, var error) = await CliRunner.RunAsync("keygen", "--out", temp.Sub("id.key"));
        Assert.Equal(2, exitCode);
        Assert.NotEmpty(error);
    }

    [Fact]
    public async Task Ca_issue_makes_a_SuperNode_certificate_naming_its_region_and_id()
    {
        Assert.Equal(0, (await CliRunner.RunAsync("ca", "init", "--dir", temp.Sub("ca"))).ExitCode);
        var (exitCode, output, _) = await CliRunner.RunAsync("ca", "issue", "--dir", temp.Sub("ca"), "--role", "super", "--region", "eu-west",
            "--name", "sn-eu-1", "--ip", "127.0.0.1", "--ip", "10.1.2.3", "--dns", "sn-1.example", "--out", temp.Sub("sn-1"));
        Assert.Equal(0, exitCode);
        Assert.Contains("mydvpn://super/eu-west/sn-eu-1", output, StringComparison.Ordinal);
        using var tls = TlsMaterial.Load(temp.Sub("sn-1"));
        Assert.Equal(CertificateKind.Node, tls.Kind);
        Assert.Equal("sn-eu-1", tls.Name);
        Assert.Equal(NodeIdentity.Super("sn-eu-1", "eu-west"), tls.Identity);
    }

    [Fact]
    public async Task Ca_issue_makes_a_BaseNode_certificate_and_an_admin_one()
    {
        await CliRunner.RunAsync("ca", "init", "--dir", temp.Sub("ca"));

        Assert.Equal(0, (await CliRunner.RunAsync("ca", "issue", "--dir", temp.Sub("ca"), "--role", "base", "--name", "base-1", "--out", temp.Sub("base-1"))).ExitCode);
        Assert.Equal(0, (await CliRunner.RunAsync("ca", "issue", "--dir", temp.Sub("ca"), "--role", "admin", "--name", "alice", "--out", temp.Sub("alice"))).ExitCode);

        using var baseTls = TlsMaterial.Load(temp.Sub("base-1"));
        using var adminTls = TlsMaterial.Load(temp.Sub("alice"));
        Assert.Equal(NodeIdentity.Base("base-1"), baseTls.Identity);
        Assert.Equal(CertificateKind.Admin, adminTls.Kind);
        Assert.Null(adminTls.Identity);
    }

    [Theory]
    [InlineData("super", null, "error: --region: is required with --role super")]
    [InlineData("base", "eu-west", "error: --region: only a SuperNode's certificate names a region")]
    [InlineData("super", "EU", "region name 'EU' must start with a lowercase letter")]
    public async Task Ca_issue_refuses_a_region_that_does_not_fit_the_role(string role, string? region, string expected)
    {
        await CliRunner.RunAsync("ca", "init", "--dir", temp.Sub("ca"));
        string[] args = ["ca", "issue", "--dir", temp.Sub("ca"), "--role", role, "--name", "n-1", "--out", temp.Sub("n-1")];
        if (region is not null)
            args = [.. args, "--region", region];

        var (exitCode, _, error) = await CliRunner.RunAsync(args);

        Assert.Equal(2, exitCode);
        Assert.Contains(expected, error, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(temp.Sub("n-1"), CertificateAuthority.CertFile)));
    }

    [Fact]
    public async Task Ca_issue_without_a_ca_says_how_to_make_one()
    {
        var (exitCode, _, error) = await CliRunner.RunAsync("ca", "issue", "--dir", temp.Sub("no-ca"), "--role", "base", "--name", "x", "--out", temp.Sub("x"));
        Assert.Equal(2, exitCode);
        Assert.Contains("ca init", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Ca_issue_with_a_bad_ip_names_the_flag()
    {
        await CliRunner.RunAsync("ca", "init", "--dir", temp.Sub("ca"));
        var (exitCode, _, error) = await CliRunner.RunAsync("ca", "issue", "--dir", temp.Sub("ca"), "--role", "base", "--name", "x", "--ip", "999.1.1.1", "--out", temp.Sub("x"));
        Assert.Equal(2, exitCode);
        Assert.StartsWith("error: --ip", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Admin_refuses_a_node_certificate_before_dialing()
    {
        var (exitCode, _, error) = await CliRunner.RunAsync("admin", "--base", "127.0.0.1:1", "--tls", NodeCertificate(), "regions");
        Assert.Equal(2, exitCode);
        Assert.StartsWith("error: --tls", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Admin_against_an_unreachable_base_is_a_runtime_failure()
    {
        CertificateAuthority.Init(temp.Sub("ca"));
        CertificateAuthority.IssueAdmin(temp.Sub("ca"), "ops", [], [], temp.Sub("admin"));
        var (exitCode, _, error) = await CliRunner.RunAsync("admin", "--base", "127.0.0.1:1", "--tls", temp.Sub("admin"), "regions", "--json");
        Assert.Equal(1, exitCode);
        Assert.Contains("unreachable", error, StringComparison.Ordinal);
    }

    private static int FreePort() => Demo.NodeProcess.FreeTcpPort();

    private static void RemoveFlag(List<string> args, string flag)
    {
        var index = args.IndexOf(flag);
        args.RemoveRange(index, 2);
    }
}
