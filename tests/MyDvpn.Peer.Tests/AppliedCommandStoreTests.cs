using Microsoft.Data.Sqlite;
using MyDvpn.Peer.Commands;
using MyDvpn.Protocol.Control;

namespace MyDvpn.Peer.Tests;

/// <summary>The store on a real SQLite file in a temporary directory.</summary>
public sealed class AppliedCommandStoreTests : IDisposable
{
    private readonly TempDirectory temp = new();

    public void Dispose() => temp.Dispose();

    [Fact]
    public async Task Stored_answer_is_found_by_its_command_id()
    {
        using var store = AppliedCommandStore.Open(temp.Path);
        var answer = CommandResponses.Failed("cmd-1", CommandError.Capacity, "full");

        var stored = await store.StoreAsync("cmd-1", answer);

        Assert.Equal(answer, stored);
        Assert.Equal(answer, await store.FindAsync("cmd-1"));
        Assert.Null(await store.FindAsync("cmd-2"));
    }

    [Fact]
    public async Task Stored_answers_survive_closing_and_reopening_the_file()
    {
        var answer = CommandResponses.Done("cmd-1");
        using (var store = AppliedCommandStore.Open(temp.Path))
            await store.StoreAsync("cmd-1", answer);

        using var reopened = AppliedCommandStore.Open(temp.Path);

        Assert.Equal(answer, await reopened.FindAsync("cmd-1"));
        Assert.True(File.Exists(Path.Combine(temp.Path, AppliedCommandStore.FileName)));
    }

    [Fact]
    public async Task Store_uses_write_ahead_logging()
    {
        using var store = AppliedCommandStore.Open(temp.Path);
        await store.StoreAsync("cmd-1", CommandResponses.Done("cmd-1"));

        using var connection = new SqliteConnection($"Data Source={store.Path};Pooling=False");
        connection.Open();
        using var query = connection.CreateCommand();
        query.CommandText = "PRAGMA journal_mode;";

        Assert.Equal("wal", query.ExecuteScalar());
    }

    [Fact]
    public async Task Storing_an_id_again_keeps_its_first_answer()
    {
        using var store = AppliedCommandStore.Open(temp.Path);
        var first = CommandResponses.Done("cmd-1");
        await store.StoreAsync("cmd-1", first);

        var stored = await store.StoreAsync("cmd-1", CommandResponses.Failed("cmd-1", CommandError.Dataplane, "second"));

        Assert.Equal(first, stored);
        Assert.Equal(first, await store.FindAsync("cmd-1"));
        Assert.Equal(1, await store.CountAsync());
    }

    [Fact]
    public async Task Only_the_most_recent_ids_up_to_the_capacity_are_kept()
    {
        using var store = AppliedCommandStore.Open(temp.Path, capacity: 3);

        for (var i = 1; i <= 5; i++)
            await store.StoreAsync($"cmd-{i}", CommandResponses.Done($"cmd-{i}"));

        Assert.Equal(3, await store.CountAsync());
        Assert.Null(await store.FindAsync("cmd-1"));
        Assert.Null(await store.FindAsync("cmd-2"));
        for (var i = 3; i <= 5; i++)
            Assert.NotNull(await store.FindAsync($"cmd-{i}"));
    }

    [Fact]
    public void Store_keeps_the_last_10000_ids_unless_told_otherwise()
    {
        using var store = AppliedCommandStore.Open(temp.Path);

        Assert.Equal(10_000, store.Capacity);
    }
}
