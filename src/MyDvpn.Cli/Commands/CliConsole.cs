using Spectre.Console;
using Spectre.Console.Rendering;

namespace MyDvpn.Cli.Commands;

/// <summary>The Spectre console the inspection commands (<c>admin</c>, <c>status</c>) write their tables to.</summary>
internal static class CliConsole
{
    /// <summary>Table width when the output is not a terminal.</summary>
    public const int PipedWidth = 240;

    /// <summary>
    /// A console over <paramref name="output"/>: colours and box-drawn tables only on a terminal. Piped or captured, a table
    /// is plain columns (<see cref="PlainTables"/>) and nothing wraps at 80.
    /// </summary>
    public static IAnsiConsole For(TextWriter output)
    {
        var terminal = IsTerminal(output);
        var console = Create(output, terminal);
        if (terminal)
            return console;
        // Piped or captured output has no width to fit: keep one line per row (for grep) instead of wrapping at 80.
        console.Profile.Width = PipedWidth;
        return new PlainTables(console, output);
    }

    /// <summary>Whether <paramref name="output"/> is the process's standard output and that is a terminal.</summary>
    public static bool IsTerminal(TextWriter output) => ReferenceEquals(output, Console.Out) && !Console.IsOutputRedirected;

    private static IAnsiConsole Create(TextWriter output, bool terminal) => AnsiConsole.Create(new AnsiConsoleSettings
    {
        Out = new AnsiConsoleOutput(output),
        Ansi = terminal ? AnsiSupport.Detect : AnsiSupport.No,
        ColorSystem = terminal ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
    });

    /// <summary>
    /// A console for output that is not a terminal: a table is written as its title on a line, then its header and rows
    /// as columns aligned with spaces, no box, no trailing blanks (what <c>grep</c>, <c>awk</c> and <c>cut</c> read, like
    /// <c>kubectl get</c>). Anything else goes to the console as it is.
    /// </summary>
    private sealed class PlainTables(IAnsiConsole console, TextWriter output) : IAnsiConsole
    {
        /// <summary>Wide enough that no row of a table is ever wrapped.</summary>
        private const int UnboundedWidth = 100_000;

        public Profile Profile => console.Profile;

        public IAnsiConsoleCursor Cursor => console.Cursor;

        public IAnsiConsoleInput Input => console.Input;

        public IExclusivityMode ExclusivityMode => console.ExclusivityMode;

        public RenderPipeline Pipeline => console.Pipeline;

        public void Clear(bool home) => console.Clear(home);

        public void WriteAnsi(Action<AnsiWriter> action) => console.WriteAnsi(action);

        public void Write(IRenderable renderable)
        {
            if (renderable is not Table table)
            {
                console.Write(renderable);
                return;
            }
            if (table.Title is { } title)
            {
                console.Write(new Markup(title.Text));
                console.WriteLine();
                table.Title = null;
            }
            table.Border = TableBorder.None;
            table.Expand = false;
            for (var i = 0; i < table.Columns.Count; i++)
            {
                var column = table.Columns[i];
                column.NoWrap = true;
                column.Padding = new Padding(0, 0, i == table.Columns.Count - 1 ? 0 : 2, 0);
            }
            using var text = new StringWriter();
            var plain = Create(text, terminal: false);
            plain.Profile.Width = UnboundedWidth;
            plain.Write(table);
            foreach (var line in text.ToString().Split('\n'))
            {
                if (line.Trim().Length > 0)
                    output.WriteLine(line.TrimEnd());
            }
        }
    }
}
