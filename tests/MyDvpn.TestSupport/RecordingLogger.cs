using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Xunit.Abstractions;

namespace MyDvpn.TestSupport;

/// <summary>
/// A <see cref="TestOutputLogger"/> that also keeps what it logged, for a test that waits for a log entry (an actor that
/// logs a failure and carries on has nothing else to show).
/// </summary>
public sealed class RecordingLogger(ITestOutputHelper output, string category = "") : ILogger
{
    private readonly TestOutputLogger _output = new(output, category);
    private readonly ConcurrentQueue<Entry> _entries = new();
    private readonly AsyncLocal<ImmutableScopes?> _scopes = new();

    /// <summary>One entry: its level, its formatted message, and the scopes around it (innermost last), as text.</summary>
    public sealed record Entry(LogLevel Level, string Message, IReadOnlyList<string> Scopes);

    public IReadOnlyCollection<Entry> Entries => _entries;

    public IDisposable BeginScope<TState>(TState state)
        where TState : notnull
    {
        var outer = _scopes.Value;
        _scopes.Value = new ImmutableScopes(outer, state.ToString() ?? "");
        var inner = _output.BeginScope(state);
        return new Restore(() =>
        {
            inner.Dispose();
            _scopes.Value = outer;
        });
    }

    public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        _entries.Enqueue(new Entry(logLevel, formatter(state, exception), _scopes.Value?.ToList() ?? []));
        _output.Log(logLevel, eventId, state, exception, formatter);
    }

    private sealed record ImmutableScopes(ImmutableScopes? Outer, string Scope)
    {
        public List<string> ToList()
        {
            var list = Outer?.ToList() ?? [];
            list.Add(Scope);
            return list;
        }
    }

    private sealed class Restore(Action restore) : IDisposable
    {
        public void Dispose() => restore();
    }
}
