using System.CommandLine;
using MyDvpn.Logging;

namespace MyDvpn.Cli.Commands;

/// <summary>
/// A command that runs until it is stopped (<c>demo</c>, <c>base</c>, <c>super</c>, <c>peer</c>): it takes
/// <c>--log-format</c>, and <see cref="CliApplication"/> stops it on SIGINT or SIGTERM (<see cref="StopSignals"/>): its
/// cancellation token is cancelled and it stops cleanly; a second Ctrl-C, or no stop within
/// <see cref="CliApplication.StopWithin"/>, ends the process.
/// </summary>
public sealed class LongRunningCommand : Command
{
    public LongRunningCommand(string name, string description)
        : base(name, description)
    {
        LogFormat = EnumOption.Create<LogFormat>("--log-format",
            "How the log is written: text (a line per entry, for a person) or json (an object per line, for a collector); " +
            $"default: ${LogFormatVariable}, else text when the output is a terminal, json otherwise");
        Options.Add(LogFormat);
    }

    /// <summary>The environment variable that gives the log format when <c>--log-format</c> does not (units, containers).</summary>
    public const string LogFormatVariable = "MYDVPN_LOG_FORMAT";

    public Option<LogFormat> LogFormat { get; }

    /// <summary>
    /// The format asked for with <c>--log-format</c>, else in <see cref="LogFormatVariable"/>, else the one for where the output
    /// goes (<see cref="ConsoleLogging.ForThisConsole"/>).
    /// </summary>
    /// <exception cref="Common.ConfigurationException">The variable names no format.</exception>
    public LogFormat LogFormatOf(ParseResult parse, Func<string, string?>? environment = null)
    {
        if (parse.GetResult(LogFormat) is { Implicit: false })
            return parse.GetValue(LogFormat);
        if ((environment ?? Environment.GetEnvironmentVariable)(LogFormatVariable) is { Length: > 0 } named)
        {
            return EnumOption.TryParse(typeof(LogFormat), named, out var value)
                ? (LogFormat)value!
                : throw new Common.ConfigurationException(LogFormatVariable,
                    $"'{named}' is not one of {string.Join(", ", EnumOption.NamesOf(typeof(LogFormat)))}: set it to one of them, or unset it");
        }
        return ConsoleLogging.ForThisConsole;
    }
}
