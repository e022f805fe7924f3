using System.Collections.Immutable;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace MyDvpn.Peer.Tunnel;

/// <summary>
/// The durable <see cref="TunnelState"/>: <c>tunnel.json</c> in the state directory, replaced whole on every change
/// (a temporary file, flushed to disk, renamed over the old one), read back when the agent starts. Changes are made one
/// at a time; <see cref="Current"/> is a snapshot any thread may read (the status socket does).
/// </summary>
public sealed class TunnelStateStore : IDisposable
{
    public const string FileName = "tunnel.json";
    private const int Version = 1;

    private static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
    };

    private readonly SemaphoreSlim gate = new(1, 1);
    private TunnelState current;
    private Func<TunnelState, CancellationToken, Task>? dataPlane;

    private TunnelStateStore(string path, TunnelState state)
    {
        Path = path;
        current = state;
    }

    public string Path { get; }

    public TunnelState Current => Volatile.Read(ref current);

    public static string PathIn(string stateDir) => System.IO.Path.Combine(stateDir, FileName);

    /// <summary>Reads the state in <paramref name="stateDir"/>; empty if there is none yet.</summary>
    /// <exception cref="InvalidDataException">The file exists but is not tunnel state this version can read.</exception>
    /// <exception cref="IOException">The file cannot be read.</exception>
    public static TunnelStateStore Open(string stateDir)
    {
        var path = PathIn(stateDir);
        if (!File.Exists(path))
            return new TunnelStateStore(path, TunnelState.Empty);
        StoredState? stored;
        try
        {
            stored = JsonSerializer.Deserialize<StoredState>(File.ReadAllText(path), Json);
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"{path} is not valid tunnel state ({ex.Message})", ex);
        }
        if (stored is null || stored.Version != Version)
            throw new InvalidDataException($"{path} holds tunnel state of version {stored?.Version.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "null"}; this agent reads version {Version}");
        return new TunnelStateStore(path, Normalize(stored));
    }

    /// <summary>
    /// From now on every change is first made true on the host by <paramref name="apply"/> (the data plane); a change
    /// it cannot make is not written, the host is put back as it was, and the caller gets the exception.
    /// </summary>
    public void UseDataPlane(Func<TunnelState, CancellationToken, Task> apply) => dataPlane = apply;

    /// <summary>Makes the host match the current state again (at start-up: the interface comes back after a restart).</summary>
    public async Task ApplyCurrentAsync(CancellationToken cancellationToken)
    {
        if (dataPlane is not { } apply)
            return;
        await gate.WaitAsync(cancellationToken);
        try
        {
            await apply(Current, cancellationToken);
        }
        finally
        {
            gate.Release();
        }
    }

    /// <summary>
    /// Applies <paramref name="change"/> to the current state and, if it changed anything, makes it true on the host
    /// (see <see cref="UseDataPlane"/>) and writes it before making it <see cref="Current"/>. Returns the state after the change.
    /// </summary>
    public async Task<TunnelState> UpdateAsync(Func<TunnelState, TunnelState> change, CancellationToken cancellationToken = default)
    {
        await gate.WaitAsync(cancellationToken);
        try
        {
            var before = Current;
            var after = change(before);
            if (after.Equals(before))
                return before;
            if (dataPlane is { } apply)
            {
                try
                {
                    await apply(after, cancellationToken);
                }
                catch (Exception) when (!cancellationToken.IsCancellationRequested)
                {
                    await RestoreAsync(apply, before);
                    throw;
                }
            }
            await WriteAsync(after, cancellationToken);
            Volatile.Write(ref current, after);
            return after;
        }
        finally
        {
            gate.Release();
        }
    }

    /// <summary>Puts the host back to the state before a change it could not make; the data plane's own repair loop
    /// keeps trying if this fails too.</summary>
    private static async Task RestoreAsync(Func<TunnelState, CancellationToken, Task> apply, TunnelState before)
    {
        try
        {
            await apply(before, CancellationToken.None);
        }
        catch (Exception)
        {
            // Reported by the failure of the change itself; the WireGuardActor reconciles again on its timer.
        }
    }

    public void Dispose() => gate.Dispose();

    private async Task WriteAsync(TunnelState state, CancellationToken cancellationToken)
    {
        var temporary = Path + ".tmp";
        var stored = new StoredState(Version, state.Exit, state.ExitAddresses, state.Clients, state.LastRotation);
        await using (var stream = OwnerOnly.Open(temporary, FileMode.Create, FileAccess.Write, FileShare.None, FileOptions.Asynchronous))
        {
            await JsonSerializer.SerializeAsync(stream, stored, Json, cancellationToken);
            await stream.FlushAsync(cancellationToken);
            stream.Flush(flushToDisk: true);
        }
        File.Move(temporary, Path, overwrite: true);
    }

    private static TunnelState Normalize(StoredState stored)
    {
        var exit = stored.Exit is { } e
            ? e with { AllowedIps = OrEmpty(e.AllowedIps), TunnelAddresses = OrEmpty(e.TunnelAddresses) }
            : null;
        var clients = (stored.Clients ?? []).Select(c => c with { AllowedIps = OrEmpty(c.AllowedIps) }).ToImmutableList();
        var rotation = stored.LastRotation is { } r
            ? r with { From = r.From with { TunnelAddresses = OrEmpty(r.From.TunnelAddresses) }, To = r.To with { TunnelAddresses = OrEmpty(r.To.TunnelAddresses) } }
            : null;
        return new TunnelState(exit, OrEmpty(stored.ExitAddresses), clients) { LastRotation = rotation };
    }

    private static ImmutableArray<string> OrEmpty(ImmutableArray<string> values) => values.IsDefault ? [] : values;

    private sealed record StoredState(
        [property: JsonPropertyName("version")] int Version,
        ClientExit? Exit,
        ImmutableArray<string> ExitAddresses,
        ImmutableList<ServedClient>? Clients,
        ExitRotation? LastRotation = null);
}
