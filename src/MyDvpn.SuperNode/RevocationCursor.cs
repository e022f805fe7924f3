using System.Globalization;

namespace MyDvpn.SuperNode;

/// <summary>The directory revocation version this SuperNode has applied, kept in its data dir.</summary>
public sealed class RevocationCursor
{
    private readonly string path;
    private long version;

    public RevocationCursor(string dataDir)
    {
        path = Path.Combine(dataDir, "revocations.version");
        version = File.Exists(path) && long.TryParse(File.ReadAllText(path).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var stored)
            ? stored
            : 0;
    }

    public ulong Version => (ulong)Interlocked.Read(ref version);

    public async Task SaveAsync(ulong latest, CancellationToken cancellationToken)
    {
        var temporary = path + ".tmp";
        await File.WriteAllTextAsync(temporary, latest.ToString(CultureInfo.InvariantCulture), cancellationToken);
        File.Move(temporary, path, overwrite: true);
        Interlocked.Exchange(ref version, (long)latest);
    }
}
