using System.Collections;

namespace MyDvpn.Peer;

/// <summary>
/// A logging scope of named values (<c>peer_id</c>, <c>session_id</c>, <c>command_id</c>, <c>region</c>): the JSON
/// console writes each as a property of the scope, and the scope's message as <c>name=value</c> pairs.
/// </summary>
internal sealed class LogScope(params KeyValuePair<string, object?>[] values) : IReadOnlyList<KeyValuePair<string, object?>>
{
    public int Count => values.Length;

    public KeyValuePair<string, object?> this[int index] => values[index];

    public static LogScope Of(string peerId, string region, string? sessionId = null, string? commandId = null)
    {
        var values = new List<KeyValuePair<string, object?>> { new("peer_id", peerId), new("region", region) };
        if (sessionId is not null)
            values.Add(new("session_id", sessionId));
        if (commandId is not null)
            values.Add(new("command_id", commandId));
        return new LogScope([.. values]);
    }

    public IEnumerator<KeyValuePair<string, object?>> GetEnumerator() => ((IEnumerable<KeyValuePair<string, object?>>)values).GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    public override string ToString() => string.Join(' ', values.Select(v => $"{v.Key}={v.Value}"));
}
