using System.Collections;
using Microsoft.Extensions.Logging;

namespace MyDvpn.Hosting;

/// <summary>
/// An <see cref="ILogger"/> whose every entry carries the same scope: what an actor is about (<c>region</c>, <c>peer_id</c>,
/// <c>session_id</c>…) on everything it logs, its <see cref="Snapshots"/> included, without a <c>BeginScope</c> at each call.
/// A scope the caller begins around a call (a <c>command_id</c>) comes on top.
/// </summary>
public sealed class ScopedLogger(ILogger inner, LogScope scope) : ILogger
{
    public ScopedLogger(ILogger inner, params (string Key, object Value)[] scope)
        : this(inner, new LogScope(scope))
    {
    }

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => inner.BeginScope(state);

    public bool IsEnabled(LogLevel logLevel) => inner.IsEnabled(logLevel);

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (!inner.IsEnabled(logLevel))
            return;
        using (inner.BeginScope(scope))
            inner.Log(logLevel, eventId, state, exception, formatter);
    }
}

/// <summary>
/// Key/value pairs as a logging scope: the JSON console writes each pair as a field of the scope, which reads
/// <c>region=eu-west, peer_id=laptop-1</c> (a dictionary would read as its type name).
/// </summary>
public sealed class LogScope(params (string Key, object Value)[] pairs) : IReadOnlyList<KeyValuePair<string, object?>>
{
    private readonly KeyValuePair<string, object?>[] _pairs = [.. pairs.Select(p => new KeyValuePair<string, object?>(p.Key, p.Value))];

    public int Count => _pairs.Length;

    public KeyValuePair<string, object?> this[int index] => _pairs[index];

    public IEnumerator<KeyValuePair<string, object?>> GetEnumerator() => ((IEnumerable<KeyValuePair<string, object?>>)_pairs).GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    public override string ToString() => string.Join(", ", _pairs.Select(p => $"{p.Key}={p.Value}"));
}
