using System.Text.Json;
using System.Text.Json.Serialization;

namespace MyDvpn.Peer;

/// <summary>
/// The state directory's note that this identity has enrolled: once it exists, the agent no longer presents its
/// enrollment token, since the SuperNode knows its public key. Tied to the peer id and key, so a new key in the same
/// directory enrolls again.
/// </summary>
public sealed record EnrollmentRecord(
    [property: JsonPropertyName("peer_id")] string PeerId,
    [property: JsonPropertyName("public_key")] string PublicKey,
    [property: JsonPropertyName("supernode_id")] string SuperNodeId,
    [property: JsonPropertyName("enrolled_at")] DateTimeOffset EnrolledAt)
{
    public const string FileName = "enrollment.json";

    public static string PathIn(string stateDir) => Path.Combine(stateDir, FileName);

    /// <summary>Whether <paramref name="peerId"/> with <paramref name="publicKey"/> has enrolled; an unreadable record counts as not.</summary>
    public static bool IsEnrolled(string stateDir, string peerId, string publicKey)
    {
        var path = PathIn(stateDir);
        if (!File.Exists(path))
            return false;
        try
        {
            var record = JsonSerializer.Deserialize<EnrollmentRecord>(File.ReadAllText(path));
            return record is not null && record.PeerId == peerId && record.PublicKey == publicKey;
        }
        catch (Exception ex) when (ex is JsonException or IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>Writes the record durably: a temporary file, flushed to disk, renamed over the old one.</summary>
    public async Task SaveAsync(string stateDir, CancellationToken cancellationToken)
    {
        var path = PathIn(stateDir);
        var temporary = path + ".tmp";
        await using (var stream = OwnerOnly.Open(temporary, FileMode.Create, FileAccess.Write, FileShare.None, FileOptions.Asynchronous))
        {
            await JsonSerializer.SerializeAsync(stream, this, cancellationToken: cancellationToken);
            await stream.FlushAsync(cancellationToken);
            stream.Flush(flushToDisk: true);
        }
        File.Move(temporary, path, overwrite: true);
    }
}
