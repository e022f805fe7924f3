using LinqToDB.Data;

namespace MyDvpn.Hosting.Tests;

public sealed class PersistenceSettingsTests : IDisposable
{
    private readonly TempDirectory temp = new();

    public void Dispose()
    {
        // Pooled SQLite connections keep the file open.
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        temp.Dispose();
    }

    [Fact]
    public void A_sqlite_journal_connection_runs_in_wal_mode_with_synchronous_normal()
    {
        var settings = PersistenceSettings.Sqlite(temp.Sub("akka.db"));
        settings.Prepare();

        using var connection = new DataConnection(settings.ToDataOptions());

        Assert.Equal("wal", connection.Execute<string>("PRAGMA journal_mode;"));
        // 1 = NORMAL (2 = FULL, SQLite's default).
        Assert.Equal(1, connection.Execute<int>("PRAGMA synchronous;"));
    }

    [Fact]
    public void Every_new_sqlite_connection_gets_synchronous_normal_again()
    {
        var settings = PersistenceSettings.Sqlite(temp.Sub("akka.db"));
        settings.Prepare();
        var options = settings.ToDataOptions();

        for (var i = 0; i < 3; i++)
        {
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            using var connection = new DataConnection(options);
            Assert.Equal(1, connection.Execute<int>("PRAGMA synchronous;"));
        }
    }

    [Fact]
    public void A_postgresql_journal_gets_no_sqlite_pragma()
    {
        var options = PersistenceSettings.PostgreSql("Host=127.0.0.1;Database=akka").ToDataOptions();

        Assert.DoesNotContain(options.DataContextOptions.Interceptors ?? [], i => i is SqliteSynchronousNormal);
    }
}
