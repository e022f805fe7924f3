using Npgsql;

namespace MyDvpn.Packaging.Tests;

/// <summary>docker/compose.yaml (no container engine here): what it runs, checked against the real command tree and the nodes' rules.</summary>
public sealed class ComposeFileTests
{
    private static readonly ComposeFile Compose = ComposeFile.Load(Repository.PathOf("docker/compose.yaml"));

    private static IEnumerable<ComposeService> Running(string command) =>
        Compose.Services.Values.Where(service => service.Command.Count > 0 && service.Command[0] == command);

    [Fact]
    public void Every_service_runs_a_command_the_cli_accepts()
    {
        var ours = Compose.Services.Values.Where(service => service.Image == "mydvpn" && service.Command.Count > 0).ToList();
        Assert.Equal(["base", "peer", "peer", "super", "super"], ours.Select(service => service.Command[0]).Order());
        foreach (var service in ours)
            CommandTree.AssertAccepts(service.Command, $"service {service.Name}");
        var checks = Compose.Services.Values.Where(service => service.HealthCheck is ["mydvpn", ..]).ToList();
        Assert.NotEmpty(checks);
        foreach (var service in checks)
            CommandTree.AssertAccepts(service.HealthCheck.Skip(1).ToList(), $"health check of {service.Name}");
    }

    [Fact]
    public void Setup_commands_of_the_opening_comment_are_ones_the_cli_accepts()
    {
        foreach (var (line, arguments) in Compose.Setup)
            CommandTree.AssertAccepts(arguments, line);
        var commands = Compose.Setup.Select(setup => CommandTree.Parse(setup.Arguments).Command).ToHashSet();
        Assert.Superset(new HashSet<string> { "ca init", "ca issue", "keygen", "admin token create", "status" }, commands);
    }

    [Fact]
    public void SuperNodes_of_a_region_share_its_seed_and_one_PostgreSQL_database()
    {
        var postgres = Compose.Services["postgres"];
        var database = postgres.Pairs("environment");
        var regions = Running("super").GroupBy(service => CommandTree.ValueOf(service.Command, "--region")).ToList();
        Assert.Contains(regions, region => region.Count() >= 2);
        foreach (var region in regions)
        {
            var clusters = region.Select(service => CommandTree.ValueOf(service.Command, "--cluster")).ToList();
            var seeds = region.Select(service => CommandTree.ValueOf(service.Command, "--seed")).Distinct().ToList();
            var seed = Assert.Single(seeds);
            Assert.Contains(seed, clusters);

            var connection = Assert.Single(region.Select(service => CommandTree.ValueOf(service.Command, "--postgres")).Distinct());
            Assert.NotNull(connection);
            var settings = new NpgsqlConnectionStringBuilder(connection);
            Assert.Contains(settings.Host, new[] { postgres.Name, postgres.Address });
            Assert.Equal(database["POSTGRES_DB"], settings.Database);
            Assert.Equal(database["POSTGRES_USER"], settings.Username);
            Assert.Equal(database["POSTGRES_PASSWORD"], settings.Password);
        }
    }

    [Fact]
    public void Each_node_runs_at_the_address_and_as_the_node_its_certificate_names()
    {
        var issued = Compose.Setup.Select(setup => setup.Arguments)
            .Where(arguments => CommandTree.Parse(arguments).Command == "ca issue")
            .ToDictionary(arguments => "./pki/" + Path.GetFileName(CommandTree.ValueOf(arguments, "--out")));
        foreach (var node in Running("base").Concat(Running("super")))
        {
            var tls = CommandTree.ValueOf(node.Command, "--tls");
            var mounted = node.MountedAt(tls!);
            Assert.True(mounted is not null && issued.ContainsKey(mounted), $"{node.Name}: its --tls {tls} is no certificate the opening comment issues");
            var certificate = issued[mounted];
            Assert.Equal(node.Command[0], CommandTree.ValueOf(certificate, "--role"));
            Assert.Equal(node.Address, CommandTree.ValueOf(certificate, "--ip"));
            Assert.StartsWith(node.Address + ":", CommandTree.ValueOf(node.Command, "--cluster"), StringComparison.Ordinal);
            if (node.Command[0] != "super")
                continue;
            Assert.Equal(CommandTree.ValueOf(node.Command, "--id"), CommandTree.ValueOf(certificate, "--name"));
            Assert.Equal(CommandTree.ValueOf(node.Command, "--region"), CommandTree.ValueOf(certificate, "--region"));
            Assert.Equal(node.Address, CommandTree.ValueOf(node.Command, "--public-ip"));
        }
    }

    [Fact]
    public void Peers_get_NET_ADMIN_the_tun_device_and_the_sysctls_their_role_sets()
    {
        var peers = Running("peer").ToList();
        Assert.Equal(["client", "exit"], peers.Select(peer => CommandTree.ValueOf(peer.Command, "--role")).Order());
        foreach (var peer in peers)
        {
            Assert.Contains("NET_ADMIN", peer.Strings("cap_add"));
            Assert.Contains("/dev/net/tun", peer.Strings("devices"));
            // /proc/sys is read-only in a container: what the agent would write (InterfaceReconciler) must be set already.
            var sysctl = CommandTree.ValueOf(peer.Command, "--role") == "exit" ? "net.ipv4.ip_forward" : "net.ipv4.conf.all.src_valid_mark";
            Assert.Equal("1", peer.Pairs("sysctls").GetValueOrDefault(sysctl));
        }
    }
}
