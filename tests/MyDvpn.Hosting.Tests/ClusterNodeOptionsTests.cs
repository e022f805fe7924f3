using System.Net;
using System.Net.Sockets;
using MyDvpn.Common;
using MyDvpn.Security;

namespace MyDvpn.Hosting.Tests;

public sealed class ClusterNodeOptionsTests : IDisposable
{
    private readonly TempDirectory temp = new();
    private readonly Pki pki;
    private readonly string nodeTls;

    public ClusterNodeOptionsTests()
    {
        pki = new Pki(temp);
        nodeTls = pki.IssueBase("node1");
    }

    public void Dispose() => temp.Dispose();

    [Theory]
    [InlineData("--data-dir", null)]
    [InlineData("--data-dir", "")]
    [InlineData("--data-dir", "  ")]
    [InlineData("--cluster", null)]
    [InlineData("--cluster", "")]
    [InlineData("--listen", null)]
    [InlineData("--listen", " ")]
    [InlineData("--tls", null)]
    [InlineData("--tls", "")]
    public void A_missing_setting_is_refused_naming_its_flag(string flag, string? value)
    {
        var options = ValidOptions();
        Set(options, flag, value);

        var error = Assert.Throws<ConfigurationException>(options.Validate);

        Assert.Equal(flag, error.Setting);
        Assert.Contains("is required", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_data_dir_that_is_a_file_is_refused_naming_data_dir()
    {
        var file = temp.Sub("not-a-dir");
        File.WriteAllText(file, "");
        var options = ValidOptions();
        options.DataDir = file;

        var error = Assert.Throws<ConfigurationException>(options.Validate);

        Assert.Equal("--data-dir", error.Setting);
        Assert.Contains("not a writable directory", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_tls_directory_without_certificate_files_is_refused_naming_tls()
    {
        var empty = temp.Sub("empty-tls");
        Directory.CreateDirectory(empty);
        var options = ValidOptions();
        options.Tls = empty;

        var error = Assert.Throws<ConfigurationException>(options.Validate);

        Assert.Equal("--tls", error.Setting);
        Assert.Contains(CertificateAuthority.CertFile, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_certificate_not_issued_by_the_CA_beside_it_is_refused_naming_tls()
    {
        var foreignCa = temp.Sub("foreign-ca");
        CertificateAuthority.Init(foreignCa).Dispose();
        File.Copy(Path.Combine(foreignCa, CertificateAuthority.CaCertFile), Path.Combine(nodeTls, CertificateAuthority.CaCertFile), overwrite: true);
        var options = ValidOptions();

        var error = Assert.Throws<ConfigurationException>(options.Validate);

        Assert.Equal("--tls", error.Setting);
        Assert.Contains("not issued by this network's CA", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_admin_certificate_is_refused_naming_tls()
    {
        var options = ValidOptions();
        options.Tls = pki.IssueAdmin("alice");

        var error = Assert.Throws<ConfigurationException>(options.Validate);

        Assert.Equal("--tls", error.Setting);
        Assert.Contains("admin certificate", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_BaseNode_refuses_to_start_with_a_SuperNode_certificate()
    {
        var options = ValidOptions();
        options.Tls = pki.IssueSuper("sn-1", "eu-west");

        var error = Assert.Throws<ConfigurationException>(options.Validate);

        Assert.Equal("--tls", error.Setting);
        Assert.Contains("is the certificate of SuperNode sn-1 of region eu-west (mydvpn://super/eu-west/sn-1), but this node runs as a BaseNode",
            error.Message, StringComparison.Ordinal);
        Assert.Contains("mydvpn ca issue --role base", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_BaseNode_takes_its_identity_from_its_certificate()
    {
        var settings = ValidOptions().Validate();

        Assert.Equal(NodeIdentity.Base("node1"), settings.Tls.Identity);
        settings.Tls.Dispose();
    }

    [Fact]
    public void The_same_port_for_cluster_and_listen_is_refused()
    {
        var port = FreePort();
        var options = ValidOptions();
        options.Cluster = $"127.0.0.1:{port}";
        options.Listen = $"127.0.0.1:{port}";

        var error = Assert.Throws<ConfigurationException>(options.Validate);

        Assert.Contains("--cluster", error.Setting, StringComparison.Ordinal);
        Assert.Contains("--listen", error.Setting, StringComparison.Ordinal);
        Assert.Contains("a port of its own", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_same_port_for_listen_and_metrics_is_refused()
    {
        var options = ValidOptions();
        options.Metrics = options.Listen;

        var error = Assert.Throws<ConfigurationException>(options.Validate);

        Assert.Contains("--metrics", error.Setting, StringComparison.Ordinal);
        Assert.Contains("a port of its own", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--cluster")]
    [InlineData("--listen")]
    [InlineData("--metrics")]
    public void A_port_already_in_use_is_refused_naming_its_flag(string flag)
    {
        var holder = new TcpListener(IPAddress.Loopback, 0);
        holder.Start();
        try
        {
            var port = ((IPEndPoint)holder.LocalEndpoint).Port;
            var options = ValidOptions(withMetrics: true);
            Set(options, flag, $"127.0.0.1:{port}");

            var error = Assert.Throws<ConfigurationException>(options.Validate);

            Assert.Equal(flag, error.Setting);
            Assert.Contains("already in use", error.Message, StringComparison.Ordinal);
            Assert.Contains(port.ToString(), error.Message, StringComparison.Ordinal);
        }
        finally
        {
            holder.Stop();
        }
    }

    [Fact]
    public void An_address_that_is_not_of_this_host_is_refused_naming_its_flag()
    {
        var options = ValidOptions();
        options.Listen = $"192.0.2.1:{FreePort()}"; // TEST-NET-1: never assigned to a host.

        var error = Assert.Throws<ConfigurationException>(options.Validate);

        Assert.Equal("--listen", error.Setting);
        Assert.Contains("not an address of this host", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Seeds_of_other_nodes_without_postgres_are_refused_naming_postgres()
    {
        var options = ValidOptions();
        options.Seeds = [options.Cluster!, $"127.0.0.1:{FreePort()}"];

        var error = Assert.Throws<ConfigurationException>(options.Validate);

        Assert.Equal("--postgres", error.Setting);
        Assert.Contains("PostgreSQL", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_bad_seed_is_refused_naming_seed()
    {
        var options = ValidOptions();
        options.Seeds = ["127.0.0.1"];

        var error = Assert.Throws<ConfigurationException>(options.Validate);

        Assert.Equal("--seed", error.Setting);
    }

    [Fact]
    public void A_seed_equal_to_its_own_cluster_address_needs_no_postgres()
    {
        var options = ValidOptions();
        options.Seeds = [options.Cluster!];

        var settings = options.Validate();
        using var tls = settings.Tls;

        Assert.Equal([settings.Cluster], settings.Seeds);
        Assert.Equal([settings.Cluster], settings.SeedsOrSelf);
        Assert.StartsWith("SQLite", settings.Persistence.Description, StringComparison.Ordinal);
    }

    [Fact]
    public void Seeds_of_other_nodes_with_postgres_use_postgres_and_keep_the_seeds()
    {
        const string Postgres = "Host=db;Database=mydvpn;Username=mydvpn;Password=secret";
        var otherSeed = new HostPort("10.0.0.9", 7000);
        var options = ValidOptions();
        options.Seeds = [otherSeed.ToString()];
        options.Postgres = Postgres;

        var settings = options.Validate();
        using var tls = settings.Tls;

        Assert.Equal([otherSeed], settings.SeedsOrSelf);
        Assert.Equal(LinqToDB.ProviderName.PostgreSQL15, settings.Persistence.ProviderName);
        Assert.Equal(Postgres, settings.Persistence.ConnectionString);
        Assert.DoesNotContain("secret", settings.Persistence.Description, StringComparison.Ordinal);
    }

    [Fact]
    public void A_valid_set_gives_settings_with_SQLite_under_the_data_dir_and_itself_as_seed()
    {
        var options = ValidOptions(withMetrics: true);

        var settings = options.Validate();
        using var tls = settings.Tls;

        var dataDir = temp.Sub("data");
        Assert.True(Directory.Exists(dataDir));
        Assert.Equal(Path.GetFullPath(dataDir), settings.DataDir);
        Assert.Equal(HostPort.Parse(options.Cluster, "--cluster"), settings.Cluster);
        Assert.Equal(HostPort.Parse(options.Listen, "--listen"), settings.Listen);
        Assert.Equal(HostPort.Parse(options.Metrics, "--metrics"), settings.Metrics);
        Assert.Empty(settings.Seeds);
        Assert.Equal([settings.Cluster], settings.SeedsOrSelf);
        Assert.Equal(LinqToDB.ProviderName.SQLiteMS, settings.Persistence.ProviderName);
        Assert.Equal($"Data Source={Path.Combine(settings.DataDir, "akka.db")}", settings.Persistence.ConnectionString);
        Assert.Equal(CertificateKind.Node, settings.Tls.Kind);
        Assert.Equal("node1", settings.Tls.Name);
        Assert.Empty(Directory.GetFileSystemEntries(dataDir)); // The write probe is gone.
    }

    [Fact]
    public void A_crl_is_enforced_from_the_start_and_kept_in_the_data_dir_for_the_next_start()
    {
        var revoked = pki.IssueSuper("sn-1", "eu-west");
        using (var material = TlsMaterial.Load(revoked))
            CaRevocations.RevokeSerial(pki.CaDir, CertificateRevocationList.SerialOf(material.Certificate), null, DateTimeOffset.UtcNow);
        var options = ValidOptions();
        options.Crl = Path.Combine(pki.CaDir, CaRevocations.CrlFile);

        var first = options.Validate();
        first.Tls.Dispose();
        options.Crl = null;
        var second = options.Validate();
        using var tls = second.Tls;
        using var revokedTls = TlsMaterial.Load(revoked);

        Assert.Equal(1UL, first.Crl.Number);
        Assert.Equal(1UL, second.Crl.Number);
        Assert.True(File.Exists(Path.Combine(second.DataDir, NodeCrlStore.FileName)));
        Assert.False(tls.ValidatePeer(revokedTls.Certificate, null, out _));
    }

    [Fact]
    public void A_node_whose_own_certificate_the_crl_revokes_does_not_start()
    {
        using (var material = TlsMaterial.Load(nodeTls))
            CaRevocations.RevokeSerial(pki.CaDir, CertificateRevocationList.SerialOf(material.Certificate), null, DateTimeOffset.UtcNow);
        var options = ValidOptions();
        options.Crl = Path.Combine(pki.CaDir, CaRevocations.CrlFile);

        var error = Assert.Throws<ConfigurationException>(options.Validate);

        Assert.Equal("--tls", error.Setting);
        Assert.Contains("own certificate 'CN=node1, OU=mydvpn-node'", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_crl_of_another_CA_or_a_missing_one_is_refused_naming_crl()
    {
        var other = new Pki(temp, "other-ca");
        CaRevocations.Reissue(other.CaDir, DateTimeOffset.UtcNow);
        var foreign = ValidOptions();
        foreign.Crl = Path.Combine(other.CaDir, CaRevocations.CrlFile);
        var missing = ValidOptions();
        missing.Crl = temp.Sub("no-such.crl");

        var foreignError = Assert.Throws<ConfigurationException>(foreign.Validate);
        var missingError = Assert.Throws<ConfigurationException>(missing.Validate);

        Assert.Equal(("--crl", "--crl"), (foreignError.Setting, missingError.Setting));
        Assert.Contains("signature is not this network's CA's", foreignError.Message, StringComparison.Ordinal);
        Assert.Contains("does not exist", missingError.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Metrics_is_optional()
    {
        var settings = ValidOptions().Validate();
        using var tls = settings.Tls;

        Assert.Null(settings.Metrics);
    }

    /// <summary>Options that validate: distinct free ports (metrics only when asked), a node certificate.</summary>
    [Fact]
    public void An_otlp_endpoint_without_a_port_is_refused_naming_otlp()
    {
        var options = ValidOptions();
        options.Otlp = "http://collector";

        var error = Assert.Throws<ConfigurationException>(options.Validate);

        Assert.Equal("--otlp", error.Setting);
        Assert.Contains("names no port", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_node_traces_only_with_otlp()
    {
        var untraced = ValidOptions().Validate();
        Assert.Null(untraced.Otlp);
        await using (var app = ClusterNodeHost.CreateBuilder(untraced, new ClusterIdentity("mydvpn-base", ["base"]),
                         Microsoft.AspNetCore.Server.Kestrel.Https.ClientCertificateMode.RequireCertificate, (_, _) => { }).Build())
        {
            Assert.Null(app.Services.GetService(typeof(OpenTelemetry.Trace.TracerProvider)));
            Assert.False(Telemetry.Tracing.Source.HasListeners());
        }

        var options = ValidOptions();
        options.Otlp = "http://127.0.0.1:4318";
        var traced = options.Validate();
        Assert.Equal(new Uri("http://127.0.0.1:4318/"), traced.Otlp);
        await using (var app = ClusterNodeHost.CreateBuilder(traced, new ClusterIdentity("mydvpn-base", ["base"]),
                         Microsoft.AspNetCore.Server.Kestrel.Https.ClientCertificateMode.RequireCertificate, (_, _) => { }).Build())
        {
            Assert.NotNull(app.Services.GetService(typeof(OpenTelemetry.Trace.TracerProvider)));
            using var span = Telemetry.Tracing.StartDetached("test");
            Assert.NotNull(span);
        }
    }

    private ClusterNodeOptions ValidOptions(bool withMetrics = false)
    {
        var ports = FreePorts(3);
        return new ClusterNodeOptions
        {
            DataDir = temp.Sub("data"),
            Cluster = $"127.0.0.1:{ports[0]}",
            Listen = $"127.0.0.1:{ports[1]}",
            Metrics = withMetrics ? $"127.0.0.1:{ports[2]}" : null,
            Tls = nodeTls,
        };
    }

    private static void Set(ClusterNodeOptions options, string flag, string? value)
    {
        switch (flag)
        {
            case "--data-dir": options.DataDir = value; break;
            case "--cluster": options.Cluster = value; break;
            case "--listen": options.Listen = value; break;
            case "--metrics": options.Metrics = value; break;
            case "--tls": options.Tls = value; break;
            default: throw new ArgumentOutOfRangeException(nameof(flag), flag, "no such flag");
        }
    }

    private static int FreePort() => FreePorts(1)[0];

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
