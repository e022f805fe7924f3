using Akka.Actor;
using Akka.Configuration;
using Akka.Persistence;
using Akka.Persistence.Sql;
using Microsoft.Data.Sqlite;
using Xunit.Abstractions;

namespace MyDvpn.TestSupport;

/// <summary>
/// A TestKit whose journal and snapshot store are Akka.Persistence.Sql on a real SQLite file in a temp directory
/// of its own (deleted on dispose), so events and snapshots go through the real serializer and database.
/// </summary>
public abstract class SqliteTestKit : Akka.TestKit.Xunit2.TestKit
{
    private static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(5);

    private readonly DirectoryInfo _dataDir;

    protected SqliteTestKit(ITestOutputHelper output)
        : this(System.IO.Directory.CreateTempSubdirectory("mydvpn-test-journal-"), output)
    {
    }

    private SqliteTestKit(DirectoryInfo dataDir, ITestOutputHelper output)
        : base(PersistenceConfig(Path.Combine(dataDir.FullName, "journal.db")), output: output)
    {
        _dataDir = dataDir;
    }

    /// <summary>The SQLite file holding the journal and the snapshot store.</summary>
    protected string DatabaseFile => Path.Combine(_dataDir.FullName, "journal.db");

    protected IActorRef Journal => Persistence.Instance.Apply(Sys).JournalFor(null);

    protected IActorRef SnapshotStore => Persistence.Instance.Apply(Sys).SnapshotStoreFor(null);

    /// <summary>Every event stored for <paramref name="persistenceId"/>, read back from the journal.</summary>
    protected IReadOnlyList<object> JournalEvents(string persistenceId)
    {
        var probe = CreateTestProbe();
        Journal.Tell(new ReplayMessages(1, long.MaxValue, long.MaxValue, persistenceId, probe.Ref));
        var events = new List<object>();
        while (true)
        {
            var msg = probe.ExpectMsg<object>(AskTimeout);
            switch (msg)
            {
                case ReplayedMessage replayed:
                    events.Add(replayed.Persistent.Payload);
                    break;
                case RecoverySuccess:
                    return events;
                default:
                    throw new InvalidOperationException($"Replay of {persistenceId} failed: {msg}");
            }
        }
    }

    /// <summary>The newest snapshot stored for <paramref name="persistenceId"/>, or null.</summary>
    protected async Task<SelectedSnapshot?> LatestSnapshotAsync(string persistenceId, long maxSequenceNr = long.MaxValue)
    {
        var result = await SnapshotStore.Ask<LoadSnapshotResult>(
            new LoadSnapshot(persistenceId, new SnapshotSelectionCriteria(maxSequenceNr), long.MaxValue),
            AskTimeout);
        return result.Snapshot;
    }

    /// <summary>Stops <paramref name="actor"/> with a PoisonPill and waits until it has terminated.</summary>
    protected void Stop(IActorRef actor)
    {
        var probe = CreateTestProbe();
        probe.Watch(actor);
        actor.Tell(PoisonPill.Instance);
        probe.ExpectTerminated(actor);
    }

    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        if (disposing)
        {
            SqliteConnection.ClearAllPools();
            _dataDir.Delete(recursive: true);
        }
    }

    private static Config PersistenceConfig(string databaseFile)
    {
        var connectionString = new SqliteConnectionStringBuilder { DataSource = databaseFile }.ToString();
        return ConfigurationFactory.ParseString($$"""
            # A loaded 2-core CI machine can take longer than TestKit's 3 s default to answer.
            akka.test.single-expect-default = 10s
            akka.persistence {
              journal {
                plugin = "akka.persistence.journal.sql"
                sql {
                  connection-string = "{{connectionString}}"
                  provider-name = "SQLite.MS"
                  auto-initialize = on
                }
              }
              snapshot-store {
                plugin = "akka.persistence.snapshot-store.sql"
                sql {
                  connection-string = "{{connectionString}}"
                  provider-name = "SQLite.MS"
                  auto-initialize = on
                }
              }
            }
            akka.loglevel = INFO
            """).WithFallback(SqlPersistence.DefaultConfiguration);
    }
}
