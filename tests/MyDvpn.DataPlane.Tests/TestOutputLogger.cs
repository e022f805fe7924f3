using Microsoft.Extensions.Logging;
using Xunit.Abstractions;

namespace MyDvpn.DataPlane.Tests;

/// <summary>Sends the actor's logs to the test's output, so a failing test shows what the data plane did.</summary>
internal sealed class TestOutputLogger(ITestOutputHelper output) : ILogger
{
    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Debug;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        try
        {
            output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} {logLevel,-11} {formatter(state, exception)}{(exception is null ? "" : " | " + exception.Message)}");
        }
        catch (InvalidOperationException)
        {
            // The test has finished; its output is closed.
        }
    }
}
