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
            "default: text when the output is a terminal, json otherwise");
        Options.Add(LogFormat);
    }

    public Option<LogFormat> LogFormat { get; }

    /// <summary>The format asked for, or the one for where the output goes (<see cref="ConsoleLogging.ForThisConsole"/>).</summary>
    public LogFormat LogFormatOf(ParseResult parse) =>
        parse.GetResult(LogFormat) is { Implicit: false } ? parse.GetValue(LogFormat) : ConsoleLogging.ForThisConsole;
}
