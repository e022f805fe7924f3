using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;

namespace MyDvpn.Logging;

/// <summary>How a process writes its log to the console (<c>--log-format</c>).</summary>
public enum LogFormat
{
    /// <summary>One line per entry for a person: local time, level, category, message, scopes.</summary>
    Text,

    /// <summary>One JSON object per line for a log collector, with the state and scopes as fields.</summary>
    Json,
}

/// <summary>
/// The console logging of every <c>mydvpn</c> process, with Microsoft.Extensions.Logging's own formatters: the simple one
/// on a single line for <see cref="LogFormat.Text"/>, the JSON one for <see cref="LogFormat.Json"/>. Both carry the scopes
/// (<c>peer_id</c>, <c>region</c>…); Akka.NET's events come through <see cref="AkkaLogBridge"/> into the same logging.
/// </summary>
public static class ConsoleLogging
{
    /// <summary>
    /// The format when none is asked for: text when the log goes to a terminal (a person reads it), JSON when it goes to a
    /// file, a pipe or a journal (a program reads it).
    /// </summary>
    public static LogFormat ForThisConsole => Console.IsOutputRedirected ? LogFormat.Json : LogFormat.Text;

    /// <summary>Replaces the providers of <paramref name="logging"/> with the console in <paramref name="format"/>, Information and above.</summary>
    public static ILoggingBuilder Use(ILoggingBuilder logging, LogFormat format)
    {
        ArgumentNullException.ThrowIfNull(logging);
        logging.ClearProviders();
        if (format == LogFormat.Json)
        {
            logging.AddJsonConsole(o =>
            {
                o.IncludeScopes = true;
                o.UseUtcTimestamp = true;
                o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ";
            });
        }
        else
        {
            logging.AddSimpleConsole(o =>
            {
                o.SingleLine = true;
                o.IncludeScopes = true;
                o.TimestampFormat = "HH:mm:ss ";
                o.ColorBehavior = LoggerColorBehavior.Default;
            });
        }
        // A line written while a span is current (--otlp) carries its trace and span ids among its scopes.
        logging.Configure(o => o.ActivityTrackingOptions = ActivityTrackingOptions.TraceId | ActivityTrackingOptions.SpanId);
        logging.SetMinimumLevel(LogLevel.Information);
        return logging;
    }
}
