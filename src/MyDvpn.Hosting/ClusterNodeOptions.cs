using System.Net;
using System.Net.Sockets;
using LinqToDB;
using LinqToDB.Interceptors;
using MyDvpn.Common;
using MyDvpn.Security;

namespace MyDvpn.Hosting;

/// <summary>
/// Settings every clustered node (BaseNode, SuperNode) takes, as bound from flags, <c>--config</c>
/// JSON or <c>MYDVPN__…</c> environment variables. <see cref="Validate"/> turns them into
/// <see cref="ClusterNodeSettings"/> or says which setting is wrong.
/// </summary>
public class ClusterNodeOptions
{
    public string? DataDir { get; set; }
    public string? Cluster { get; set; }
    public List<string> Seeds { get; set; } = [];
    public string? Listen { get; set; }
    public string? Tls { get; set; }
    /// <summary>A certificate revocation list of the operator CA (<c>mydvpn ca crl</c>), applied at start if newer than the one held.</summary>
    public string? Crl { get; set; }
    public string? Metrics { get; set; }
    /// <summary>The OTLP/HTTP collector spans are exported to, <c>http(s)://HOST:PORT</c>; no tracing unless given.</summary>
    public string? Otlp { get; set; }
    /// <summary>PostgreSQL connection string; required when several nodes share entities.</summary>
    public string? Postgres { get; set; }
    /// <summary>How long to try the seeds before giving up (config/environment only; default 30 s).</summary>
    public TimeSpan JoinTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Validates the settings of a BaseNode: its certificate must be a BaseNode's (<c>mydvpn://base/…</c>).</summary>
    public ClusterNodeSettings Validate() => Validate(NodeRole.Base, null);

    /// <summary>
    /// Validates the settings of a node of <paramref name="role"/>; <paramref name="expected"/>, when given, is the
    /// identity the node runs as (a SuperNode's <c>--id</c> and <c>--region</c>), which its certificate must name exactly.
    /// </summary>
    protected ClusterNodeSettings Validate(NodeRole role, NodeIdentity? expected)
    {
        var dataDir = ValidateDataDir(DataDir);
        var cluster = HostPort.Parse(Cluster, "--cluster");
        var seeds = HostPort.ParseList(Seeds, "--seed");
        var listen = HostPort.Parse(Listen, "--listen");
        var metrics = string.IsNullOrWhiteSpace(Metrics) ? null : HostPort.Parse(Metrics, "--metrics");
        var otlp = Telemetry.Tracing.ParseOtlp(Otlp);
        if (seeds.Any(seed => seed != cluster) && string.IsNullOrWhiteSpace(Postgres))
            throw new ConfigurationException("--postgres",
                "nodes joining a cluster share its entities, and SQLite is one file per node: give every node of the " +
                "cluster the same PostgreSQL database with --postgres \"Host=…;Database=…;Username=…;Password=…\"");
        EnsureDistinctPorts(cluster, listen, metrics);
        foreach (var (endpoint, setting) in new[] { (cluster, "--cluster"), (listen, "--listen"), (metrics, "--metrics") })
            if (endpoint is not null)
                EnsurePortFree(endpoint, setting);

        if (string.IsNullOrWhiteSpace(Tls))
            throw new ConfigurationException("--tls", "is required: a directory with tls.crt, tls.key and ca.crt (make one with `mydvpn ca issue`)");
        TlsMaterial tls;
        try
        {
            tls = TlsMaterial.Load(Tls);
        }
        catch (CertificateException ex)
        {
            throw new ConfigurationException("--tls", ex.Message, ex);
        }
        CheckIdentity(tls, role, expected);
        NodeCrlStore crl;
        try
        {
            crl = NodeCrlStore.Open(dataDir, Crl, tls);
        }
        catch
        {
            tls.Dispose();
            throw;
        }

        var persistence = string.IsNullOrWhiteSpace(Postgres)
            ? PersistenceSettings.Sqlite(Path.Combine(dataDir, "akka.db"))
            : PersistenceSettings.PostgreSql(Postgres);
        if (JoinTimeout <= TimeSpan.Zero)
            throw new ConfigurationException("JoinTimeout", "must be positive, e.g. 00:00:30");
        return new ClusterNodeSettings(dataDir, cluster, seeds, listen, metrics, tls, persistence, JoinTimeout, crl) { Otlp = otlp };
    }

    private void CheckIdentity(TlsMaterial tls, NodeRole role, NodeIdentity? expected)
    {
        var reissue = expected is { Role: NodeRole.Super }
            ? $"`mydvpn ca issue --role super --region {expected.Region} --name {expected.Id} --out {Tls}`"
            : "`mydvpn ca issue --role base --name NAME --out DIR`";
        if (tls.Identity is not { } identity)
        {
            tls.Dispose();
            throw new ConfigurationException("--tls", $"{Tls} holds an admin certificate; a node needs a node certificate, issued with {reissue}");
        }
        string? problem = null;
        if (expected is not null && identity != expected)
            problem = $"is the certificate of {identity} ({identity.Uri}), but this node runs as {expected} (--id/--region)";
        else if (identity.Role != role)
            problem = $"is the certificate of {identity} ({identity.Uri}), but this node runs as a {(role == NodeRole.Base ? "BaseNode" : "SuperNode")}";
        if (problem is null)
            return;
        tls.Dispose();
        throw new ConfigurationException("--tls", $"{Tls} {problem}: a node may only use a certificate naming itself; issue one with {reissue}");
    }

    private static string ValidateDataDir(string? dataDir)
    {
        if (string.IsNullOrWhiteSpace(dataDir))
            throw new ConfigurationException("--data-dir", "is required: a directory for the journal and caches (created if missing)");
        try
        {
            var full = Path.GetFullPath(dataDir);
            Directory.CreateDirectory(full);
            var probe = Path.Combine(full, $".write-test-{Environment.ProcessId}");
            File.WriteAllText(probe, "");
            File.Delete(probe);
            return full;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException)
        {
            throw new ConfigurationException("--data-dir", $"'{dataDir}' is not a writable directory ({ex.Message})", ex);
        }
    }

    private static void EnsureDistinctPorts(params HostPort?[] endpoints)
    {
        var ports = endpoints.OfType<HostPort>().Select(e => e.Port).ToList();
        if (ports.Distinct().Count() != ports.Count)
            throw new ConfigurationException("--cluster/--listen/--metrics", "each needs a port of its own");
    }

    /// <summary>Fails early with the setting's name instead of a bind error deep inside Kestrel or DotNetty.</summary>
    public static void EnsurePortFree(HostPort endpoint, string setting)
    {
        var bind = endpoint.ToBindEndPoint(setting);
        using var probe = new Socket(bind.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            probe.Bind(bind);
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.AddressAlreadyInUse)
        {
            throw new ConfigurationException(setting, $"port {endpoint.Port} on {endpoint.Host} is already in use; pick a free port", ex);
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.AddressNotAvailable)
        {
            throw new ConfigurationException(setting, $"{endpoint.Host} is not an address of this host", ex);
        }
        catch (SocketException ex)
        {
            throw new ConfigurationException(setting, $"cannot bind {endpoint}: {ex.Message}", ex);
        }
    }
}

/// <summary>Validated settings of a clustered node; <see cref="Crl"/> is the revocation list it enforces, kept in <see cref="DataDir"/>.</summary>
public sealed record ClusterNodeSettings(
    string DataDir,
    HostPort Cluster,
    IReadOnlyList<HostPort> Seeds,
    HostPort Listen,
    HostPort? Metrics,
    TlsMaterial Tls,
    PersistenceSettings Persistence,
    TimeSpan JoinTimeout,
    NodeCrlStore Crl)
{
    /// <summary>The OTLP collector the node's spans go to (<c>--otlp</c>); null: no tracing.</summary>
    public Uri? Otlp { get; init; }

    /// <summary>No seeds: this node starts its cluster alone.</summary>
    public IReadOnlyList<HostPort> SeedsOrSelf => Seeds.Count == 0 ? [Cluster] : Seeds;
}

public sealed record PersistenceSettings(string ProviderName, string ConnectionString, string Description)
{
    public static PersistenceSettings Sqlite(string path) =>
        new(LinqToDB.ProviderName.SQLiteMS, $"Data Source={path}", $"SQLite {path}");

    /// <summary>
    /// Puts a SQLite journal into write-ahead-log mode (a setting stored in the file itself): each
    /// commit is then one append and one fsync instead of a rollback journal's several, and
    /// readers (recovery, queries) do not block the writer. No-op for PostgreSQL.
    /// </summary>
    public void Prepare()
    {
        if (ProviderName != LinqToDB.ProviderName.SQLiteMS)
            return;
        using var connection = new Microsoft.Data.Sqlite.SqliteConnection(ConnectionString);
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "PRAGMA journal_mode=WAL;";
        command.ExecuteNonQuery();
    }

    public static PersistenceSettings PostgreSql(string connectionString) =>
        new(LinqToDB.ProviderName.PostgreSQL15, connectionString, "PostgreSQL");

    /// <summary>
    /// How the journal and the snapshot store connect: every SQLite connection runs with <c>synchronous=NORMAL</c>
    /// (<see cref="SqliteSynchronousNormal"/>).
    /// </summary>
    public DataOptions ToDataOptions()
    {
        var options = new DataOptions().UseConnectionString(ProviderName, ConnectionString);
        return ProviderName == LinqToDB.ProviderName.SQLiteMS ? options.UseInterceptor(SqliteSynchronousNormal.Instance) : options;
    }
}

/// <summary>
/// Sets <c>PRAGMA synchronous=NORMAL</c> on every SQLite connection the journal opens (a per-connection setting). In WAL
/// mode a commit is then an append to the WAL without an fsync; the WAL is synced at each checkpoint. A commit is still
/// durable when the process dies (kill -9, a crash: the OS holds the write), so a command persisted before it was sent
/// is delivered again by the SuperNode that comes back; only a power loss or kernel crash of the host may roll back the
/// last commits (SQLite's documented trade-off). Under FULL, the default, every commit waited for the disk, holding a
/// thread-pool thread, and the peers' commands queued behind those fsyncs.
/// </summary>
public sealed class SqliteSynchronousNormal : ConnectionInterceptor
{
    public static readonly SqliteSynchronousNormal Instance = new();

    private const string Pragma = "PRAGMA synchronous=NORMAL;";

    public override void ConnectionOpened(ConnectionEventData eventData, System.Data.Common.DbConnection connection)
    {
        using var command = connection.CreateCommand();
        command.CommandText = Pragma;
        command.ExecuteNonQuery();
    }

    public override async Task ConnectionOpenedAsync(ConnectionEventData eventData, System.Data.Common.DbConnection connection,
        CancellationToken cancellationToken)
    {
        await using var command = connection.CreateCommand();
        command.CommandText = Pragma;
        await command.ExecuteNonQueryAsync(cancellationToken);
    }
}

/// <summary>Parses an address the SuperNode advertises (its public IP).</summary>
public static class AddressParsing
{
    public static IPAddress ParseIp(string? value, string setting) =>
        IPAddress.TryParse(value, out var ip)
            ? ip
            : throw new ConfigurationException(setting, $"'{value}' is not an IP address");
}
