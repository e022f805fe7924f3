using Microsoft.Extensions.Logging;
using Xunit.Abstractions;

namespace MyDvpn.TestSupport;

/// <summary>An <see cref="ILogger"/> that writes to the test's output (shown when the test fails), scopes included.</summary>
public sealed class TestOutputLogger(ITestOutputHelper output, string category = "") : ILogger
{
    private readonly AsyncLocal<string?> _scope = new();

    public IDisposable BeginScope<TState>(TState state)
        where TState : notnull
    {
        var outer = _scope.Value;
        _scope.Value = state is IEnumerable<KeyValuePair<string, object>> pairs
            ? string.Join(" ", pairs.Select(p => $"{p.Key}={p.Value}"))
            : state.ToString();
        return new Restore(() => _scope.Value = outer);
    }

    public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        try
        {
            output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} {logLevel,-11} {category} [{_scope.Value}] {formatter(state, exception)}{(exception is null ? "" : " " + exception)}");
        }
        catch (InvalidOperationException)
        {
            // The test has ended: nobody reads its output any more.
        }
    }

    private sealed class Restore(Action restore) : IDisposable
    {
        public void Dispose() => restore();
    }
}
