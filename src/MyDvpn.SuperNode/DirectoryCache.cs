using Google.Protobuf;
using MyDvpn.Protocol.Directory;

namespace MyDvpn.SuperNode;

/// <summary>
/// What this SuperNode last learned from the directory, kept in its data dir so it can go on
/// answering look-ups while no BaseNode answers (and after its own restart in that state).
/// </summary>
public sealed class DirectoryCache
{
    public const string FileName = "directory-cache.json";
    private static readonly JsonFormatter Formatter = new(JsonFormatter.Settings.Default.WithFormatDefaultValues(true));

    private RegionList regions;

    public DirectoryCache(string dataDir)
    {
        Path = System.IO.Path.Combine(dataDir, FileName);
        regions = Load(Path);
    }

    public string Path { get; }

    /// <summary>The last directory seen; empty before the first successful refresh.</summary>
    public RegionList Regions => Volatile.Read(ref regions);

    private readonly object refreshLock = new();
    private Task<RegionList>? refreshing;

    /// <summary>
    /// Fetches the directory's regions and saves them. Callers that ask while a refresh runs share it (a burst of
    /// exit requests for a region the cache does not know yet makes one call, not one each).
    /// </summary>
    /// <exception cref="DirectoryUnavailableException">No BaseNode answered.</exception>
    public Task<RegionList> RefreshAsync(DirectoryClient client, CancellationToken cancellationToken)
    {
        lock (refreshLock)
        {
            if (refreshing is { IsCompleted: false } running)
                return running.WaitAsync(cancellationToken);
            refreshing = RunAsync();
            return refreshing.WaitAsync(cancellationToken);
        }

        async Task<RegionList> RunAsync()
        {
            // Not tied to one caller's token: others may share it; the client's own call deadline bounds it.
            var regions = await client.ListRegionsAsync(CancellationToken.None);
            await SaveAsync(regions, CancellationToken.None);
            return regions;
        }
    }

    /// <summary>Replaces the cache; written to a temporary file first so a crash never leaves half a file.</summary>
    public async Task SaveAsync(RegionList latest, CancellationToken cancellationToken)
    {
        var temporary = Path + ".tmp";
        await using (var file = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None, 4096, useAsync: true))
        {
            await file.WriteAsync(System.Text.Encoding.UTF8.GetBytes(Formatter.Format(latest)), cancellationToken);
            // On disk before the rename, so a power loss leaves the old cache or the new one, never an empty file.
            file.Flush(flushToDisk: true);
        }
        File.Move(temporary, Path, overwrite: true);
        Volatile.Write(ref regions, latest);
    }

    private static RegionList Load(string path)
    {
        if (!File.Exists(path))
            return new RegionList();
        try
        {
            return RegionList.Parser.ParseJson(File.ReadAllText(path));
        }
        catch (IOException)
        {
            // InvalidProtocolBufferException and InvalidJsonException are both IOExceptions.
            // A cache is a convenience: a damaged one is dropped and refilled on the next refresh.
            return new RegionList();
        }
    }
}
