using Spectre.Console;

namespace MyDvpn.Cli.Commands;

/// <summary>The Spectre console the inspection commands (<c>admin</c>, <c>status</c>) write their tables to.</summary>
internal static class CliConsole
{
    /// <summary>Table width when the output is not a terminal.</summary>
    public const int PipedWidth = 240;

    /// <summary>
    /// A console over <paramref name="output"/>: colours only on the real terminal, and no wrapping at 80 when the
    /// output is piped or captured.
    /// </summary>
    public static IAnsiConsole For(TextWriter output)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(output),
            Ansi = ReferenceEquals(output, Console.Out) ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = ReferenceEquals(output, Console.Out) ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
        });
        // Piped or captured output has no width to fit: keep one line per row (for grep) instead of wrapping at 80.
        if (!ReferenceEquals(output, Console.Out) || Console.IsOutputRedirected)
            console.Profile.Width = PipedWidth;
        return console;
    }
}
