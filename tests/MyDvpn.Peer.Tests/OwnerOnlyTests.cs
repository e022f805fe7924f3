using MyDvpn.Peer.Commands;
using MyDvpn.Peer.Tunnel;
using MyDvpn.Protocol.Control;

namespace MyDvpn.Peer.Tests;

/// <summary>The state directory and the agent's files are created 0700/0600, and ones an older agent left wider are narrowed.</summary>
public sealed class OwnerOnlyTests : IDisposable
{
    private const UnixFileMode Rwx = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
    private const UnixFileMode Rw = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    private const UnixFileMode Wide = Rw | UnixFileMode.GroupRead | UnixFileMode.OtherRead;

    private readonly TempDirectory temp = new();

    public void Dispose() => temp.Dispose();

    [Fact]
    public void A_new_state_directory_is_created_0700()
    {
        if (OperatingSystem.IsWindows())
            return;
        var stateDir = temp.Sub(Path.Combine("state", "peer-1"));

        OwnerOnly.CreateDirectory(stateDir);

        Assert.Equal(Rwx, File.GetUnixFileMode(stateDir));
    }

    [Fact]
    public void A_state_directory_left_wider_is_narrowed_to_0700()
    {
        if (OperatingSystem.IsWindows())
            return;
        var stateDir = temp.Sub("state");
        Directory.CreateDirectory(stateDir, Rwx | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);

        OwnerOnly.CreateDirectory(stateDir);

        Assert.Equal(Rwx, File.GetUnixFileMode(stateDir));
    }

    [Fact]
    public async Task Tunnel_state_is_written_0600()
    {
        if (OperatingSystem.IsWindows())
            return;
        using var store = TunnelStateStore.Open(temp.Path);
        // A temporary file an older agent left wide open is narrowed before the state goes into it.
        File.WriteAllText(store.Path + ".tmp", "");
        File.SetUnixFileMode(store.Path + ".tmp", Wide);

        await store.UpdateAsync(state => state with { ExitAddresses = ["100.96.0.1/24"] });

        Assert.Equal(Rw, File.GetUnixFileMode(store.Path));
    }

    [Fact]
    public async Task Command_log_is_created_0600_and_an_old_wider_one_is_narrowed()
    {
        if (OperatingSystem.IsWindows())
            return;
        var log = new CommandLog(temp.Path, TimeProvider.System);
        var command = new Command { CommandId = "c-1", Disconnect = new Disconnect { Reason = "test" } };

        await log.AppendAsync(command, CommandResponses.Done("c-1"), CancellationToken.None);
        var created = File.GetUnixFileMode(log.Path);
        File.SetUnixFileMode(log.Path, Wide);
        await log.AppendAsync(command, CommandResponses.Done("c-1"), CancellationToken.None);

        Assert.Equal(Rw, created);
        Assert.Equal(Rw, File.GetUnixFileMode(log.Path));
        Assert.Equal(2, File.ReadAllLines(log.Path).Length);
    }

    [Fact]
    public async Task Applied_command_database_and_its_wal_are_0600()
    {
        if (OperatingSystem.IsWindows())
            return;
        using (var store = AppliedCommandStore.Open(temp.Path))
        {
            await store.StoreAsync("c-1", CommandResponses.Done("c-1"));

            Assert.Equal(Rw, File.GetUnixFileMode(store.Path));
            Assert.Equal(Rw, File.GetUnixFileMode(store.Path + "-wal"));
        }
        var path = Path.Combine(temp.Path, AppliedCommandStore.FileName);
        File.SetUnixFileMode(path, Wide);

        using var reopened = AppliedCommandStore.Open(temp.Path);

        Assert.Equal(Rw, File.GetUnixFileMode(path));
        Assert.NotNull(await reopened.FindAsync("c-1"));
    }
}
