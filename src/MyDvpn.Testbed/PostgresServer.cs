using System.Diagnostics;
using System.Net;
using MyDvpn.HostOs;

namespace MyDvpn.Testbed;

/// <summary>
/// A throwaway PostgreSQL server (Debian's <c>postgresql</c>) inside one of a testbed's namespaces: the journal that the
/// SuperNodes of a region with more than one SuperNode share. Trust authentication for the testbed's internet only, no
/// fsync; its data directory is deleted on dispose, and the testbed kills it if the caller never disposes it.
/// </summary>
public sealed class PostgresServer : IAsyncDisposable
{
    public const int Port = 5432;
    private const string User = "mydvpn";
    private static readonly TimeSpan StartBound = TimeSpan.FromSeconds(30);

    private readonly Process process;
    private readonly string directory;

    private PostgresServer(IPAddress address, Process process, string directory)
    {
        Address = address;
        this.process = process;
        this.directory = directory;
    }

    public IPAddress Address { get; }

    /// <summary>For <c>--postgres</c>: the server's default database, as the superuser <c>mydvpn</c>.</summary>
    public string ConnectionString => $"Host={Address};Port={Port};Database=postgres;Username={User}";

    /// <summary>
    /// Initializes a cluster in a new directory and starts the server in <paramref name="roleOrNamespace"/>, listening on
    /// <paramref name="address"/> (an address of that namespace); returns once it accepts connections.
    /// </summary>
    /// <exception cref="TestbedPrerequisiteException">PostgreSQL or its <c>postgres</c> user is not installed.</exception>
    /// <exception cref="TestbedException">It did not start.</exception>
    public static async Task<PostgresServer> StartAsync(NetnsTestbed testbed, string roleOrNamespace, IPAddress address, string logFile,
        CancellationToken cancellationToken)
    {
        var bin = Binaries();
        // The server runs as the postgres user, which cannot enter a root-only temporary directory.
        var directory = Directory.CreateTempSubdirectory("mydvpn-postgres-").FullName;
        try
        {
            var data = Path.Combine(directory, "data");
            await HostCommand.Host.RunCheckedAsync("chown", ["postgres:postgres", directory], cancellationToken: cancellationToken);
            await HostCommand.Host.RunCheckedAsync("runuser",
                ["-u", "postgres", "--", Path.Combine(bin, "initdb"), "-D", data, "-A", "trust", "-U", User, "--no-sync"],
                cancellationToken: cancellationToken);
            await File.AppendAllTextAsync(Path.Combine(data, "pg_hba.conf"),
                $"host all all {NetworkOf(address)}/{TestbedAddresses.PublicPrefixLength} trust\n", cancellationToken);
            var process = await testbed.StartAsync(roleOrNamespace, "runuser",
            [
                "-u", "postgres", "--", Path.Combine(bin, "postgres"), "-D", data, "-p", Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
                "-c", $"listen_addresses={address}", "-c", $"unix_socket_directories={directory}", "-c", "fsync=off", "-c", "max_connections=200",
            ], null, logFile, cancellationToken);
            var server = new PostgresServer(address, process, directory);
            try
            {
                await server.UntilReadyAsync(testbed.For(roleOrNamespace), Path.Combine(bin, "pg_isready"), logFile, cancellationToken);
            }
            catch
            {
                await server.DisposeAsync();
                throw;
            }
            return server;
        }
        catch
        {
            if (Directory.Exists(directory))
                Directory.Delete(directory, recursive: true);
            throw;
        }
    }

    private async Task UntilReadyAsync(HostCommand inNamespace, string pgIsReady, string logFile, CancellationToken cancellationToken)
    {
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < StartBound)
        {
            if (process.HasExited)
                throw new TestbedException($"PostgreSQL exited with code {process.ExitCode} while starting; see {logFile}");
            var probe = await inNamespace.RunAsync(pgIsReady, ["-h", Address.ToString(), "-p", Port.ToString(System.Globalization.CultureInfo.InvariantCulture)],
                cancellationToken: cancellationToken);
            if (probe.Succeeded)
                return;
            await Task.Delay(200, cancellationToken);
        }
        throw new TestbedException($"PostgreSQL did not accept connections on {Address}:{Port} within {StartBound.TotalSeconds:0} s; see {logFile}");
    }

    /// <summary>The testbed's internet (a /24) that <paramref name="address"/> is on: pg_hba wants no host bits.</summary>
    private static IPAddress NetworkOf(IPAddress address)
    {
        var bytes = address.GetAddressBytes();
        bytes[3] = 0;
        return new IPAddress(bytes);
    }

    /// <summary>The newest installed PostgreSQL's program directory.</summary>
    private static string Binaries()
    {
        var versions = Directory.Exists("/usr/lib/postgresql") ? Directory.GetDirectories("/usr/lib/postgresql") : [];
        var bin = versions.Select(v => Path.Combine(v, "bin"))
            .Where(b => File.Exists(Path.Combine(b, "postgres")) && File.Exists(Path.Combine(b, "initdb")))
            .OrderByDescending(b => int.TryParse(Path.GetFileName(Path.GetDirectoryName(b)), out var major) ? major : 0)
            .FirstOrDefault();
        if (bin is null)
            throw new TestbedPrerequisiteException("a region of two SuperNodes needs a PostgreSQL server: install the Debian package postgresql (apt-get install postgresql)");
        Prerequisites.RequireTool("runuser", "util-linux");
        return bin;
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!process.HasExited)
                process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }
        catch (InvalidOperationException)
        {
            // Exited between the check and the kill.
        }
        finally
        {
            if (Directory.Exists(directory))
                Directory.Delete(directory, recursive: true);
        }
    }
}
