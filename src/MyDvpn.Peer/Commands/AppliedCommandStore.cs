using Google.Protobuf;
using Microsoft.Data.Sqlite;
using MyDvpn.Protocol.Control;

namespace MyDvpn.Peer.Commands;

/// <summary>
/// The command ids this peer applied and the first answer it gave to each, in a SQLite file in the state directory
/// (WAL, synchronous=FULL: an answer is on disk before it is sent). Keeps the most recent <see cref="Capacity"/>.
/// Thread-safe; one connection, one operation at a time.
/// </summary>
public sealed class AppliedCommandStore : IDisposable
{
    public const string FileName = "applied-commands.db";
    public const int DefaultCapacity = 10_000;

    private readonly SqliteConnection connection;
    private readonly SemaphoreSlim gate = new(1, 1);

    private AppliedCommandStore(SqliteConnection connection, string path, int capacity)
    {
        this.connection = connection;
        Path = path;
        Capacity = capacity;
    }

    public string Path { get; }

    public int Capacity { get; }

    /// <summary>Opens (creating if missing) the store in <paramref name="stateDir"/>.</summary>
    public static AppliedCommandStore Open(string stateDir, int capacity = DefaultCapacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        var path = System.IO.Path.Combine(stateDir, FileName);
        // SQLite would create the database 0644; an empty file is an empty database, and SQLite gives its -wal and
        // -shm files the database's mode.
        OwnerOnly.Touch(path);
        OwnerOnly.NarrowIfExists(path + "-wal");
        OwnerOnly.NarrowIfExists(path + "-shm");
        var connection = new SqliteConnection(new SqliteConnectionStringBuilder
        {
            DataSource = path,
            Mode = SqliteOpenMode.ReadWriteCreate,
            Pooling = false,
        }.ToString());
        try
        {
            connection.Open();
            using var setup = connection.CreateCommand();
            setup.CommandText = """
                PRAGMA journal_mode = WAL;
                PRAGMA synchronous = FULL;
                PRAGMA busy_timeout = 5000;
                CREATE TABLE IF NOT EXISTS applied_commands (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    command_id TEXT NOT NULL UNIQUE,
                    response BLOB NOT NULL,
                    applied_at TEXT NOT NULL
                );
                """;
            setup.ExecuteNonQuery();
            return new AppliedCommandStore(connection, path, capacity);
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    /// <summary>The first answer given to <paramref name="commandId"/>; null if it was never applied (or has aged out).</summary>
    public async Task<CommandResponse?> FindAsync(string commandId, CancellationToken cancellationToken = default)
    {
        await gate.WaitAsync(cancellationToken);
        try
        {
            return await FindLockedAsync(commandId, null, cancellationToken);
        }
        finally
        {
            gate.Release();
        }
    }

    /// <summary>
    /// Records <paramref name="response"/> as the answer to <paramref name="commandId"/> and forgets the oldest ids
    /// beyond <see cref="Capacity"/>. An id recorded before keeps its first answer, which is returned.
    /// </summary>
    public async Task<CommandResponse> StoreAsync(string commandId, CommandResponse response, CancellationToken cancellationToken = default)
    {
        await gate.WaitAsync(cancellationToken);
        try
        {
            await using var transaction = (SqliteTransaction)await connection.BeginTransactionAsync(cancellationToken);
            await using (var insert = connection.CreateCommand())
            {
                insert.Transaction = transaction;
                insert.CommandText = """
                    INSERT INTO applied_commands (command_id, response, applied_at) VALUES ($id, $response, $at)
                    ON CONFLICT (command_id) DO NOTHING;
                    """;
                insert.Parameters.AddWithValue("$id", commandId);
                insert.Parameters.AddWithValue("$response", response.ToByteArray());
                insert.Parameters.AddWithValue("$at", DateTimeOffset.UtcNow.ToString("O"));
                await insert.ExecuteNonQueryAsync(cancellationToken);
            }
            await using (var trim = connection.CreateCommand())
            {
                trim.Transaction = transaction;
                // Everything older than the capacity-th newest row goes.
                trim.CommandText = """
                    DELETE FROM applied_commands WHERE seq < (
                        SELECT seq FROM applied_commands ORDER BY seq DESC LIMIT 1 OFFSET $keep - 1);
                    """;
                trim.Parameters.AddWithValue("$keep", Capacity);
                await trim.ExecuteNonQueryAsync(cancellationToken);
            }
            var stored = await FindLockedAsync(commandId, transaction, cancellationToken)
                ?? throw new InvalidOperationException($"command {commandId} vanished from {Path} while being stored");
            await transaction.CommitAsync(cancellationToken);
            return stored;
        }
        finally
        {
            gate.Release();
        }
    }

    /// <summary>How many command ids are remembered.</summary>
    public async Task<int> CountAsync(CancellationToken cancellationToken = default)
    {
        await gate.WaitAsync(cancellationToken);
        try
        {
            await using var count = connection.CreateCommand();
            count.CommandText = "SELECT COUNT(*) FROM applied_commands;";
            return Convert.ToInt32(await count.ExecuteScalarAsync(cancellationToken), System.Globalization.CultureInfo.InvariantCulture);
        }
        finally
        {
            gate.Release();
        }
    }

    public void Dispose()
    {
        connection.Dispose();
        gate.Dispose();
    }

    private async Task<CommandResponse?> FindLockedAsync(string commandId, SqliteTransaction? transaction, CancellationToken cancellationToken)
    {
        await using var find = connection.CreateCommand();
        find.Transaction = transaction;
        find.CommandText = "SELECT response FROM applied_commands WHERE command_id = $id;";
        find.Parameters.AddWithValue("$id", commandId);
        return await find.ExecuteScalarAsync(cancellationToken) is byte[] bytes ? CommandResponse.Parser.ParseFrom(bytes) : null;
    }
}
