using System.CommandLine;
using System.CommandLine.Parsing;

namespace MyDvpn.Cli;

/// <summary>
/// What a command line that does not parse is told, most useful first: an unknown command or option before anything it
/// caused (System.CommandLine says "Required command was not provided" first), with the nearest names it could have
/// meant; then every other problem, all at once.
/// </summary>
internal static class ParseErrors
{
    public static IEnumerable<string> Describe(ParseResult parse)
    {
        var command = parse.CommandResult.Command;
        var unknown = parse.UnmatchedTokens;
        foreach (var token in unknown)
            yield return Unknown(parse, command, token);
        foreach (var problem in parse.Errors)
        {
            // Said above, in words that name what is known.
            if (unknown.Any(token => problem.Message.Contains($"'{token}'", StringComparison.Ordinal)))
                continue;
            if (problem.SymbolResult is CommandResult && command.Subcommands.Count > 0 && parse.CommandResult.Children.All(c => c is not CommandResult))
            {
                // "Required command was not provided": an unknown one was, or none; say which there are.
                if (unknown.Count == 0)
                    yield return $"`{Path(parse)}` needs a command: {string.Join(", ", Names(command.Subcommands))}";
                continue;
            }
            yield return problem.Message;
        }
    }

    /// <summary><c>mydvpn admin token</c>: the command the parse stopped at.</summary>
    public static string Path(ParseResult parse)
    {
        var names = new Stack<string>();
        for (SymbolResult? result = parse.CommandResult; result is CommandResult command; result = command.Parent)
            names.Push(command.Parent is null ? "mydvpn" : command.Command.Name);
        return string.Join(' ', names);
    }

    private static string Unknown(ParseResult parse, Command command, string token)
    {
        var isOption = token.StartsWith('-');
        IReadOnlyList<string> known = isOption
            ? [.. OptionsOf(parse).SelectMany(o => o.Aliases.Prepend(o.Name))]
            : [.. Names(command.Subcommands)];
        string what = isOption ? "option" : command.Subcommands.Count > 0 ? "command" : "argument";
        var text = $"unknown {what} '{token}' for `{Path(parse)}`";
        var near = Nearest(token, known);
        if (near.Count > 0)
            return $"{text}; did you mean {string.Join(" or ", near.Select(name => $"`{name}`"))}?";
        return what == "command" ? $"{text}; its commands are {string.Join(", ", known)}" : text;
    }

    private static IEnumerable<Option> OptionsOf(ParseResult parse)
    {
        for (SymbolResult? result = parse.CommandResult; result is CommandResult command; result = command.Parent)
        {
            foreach (var option in command.Command.Options)
            {
                if (!option.Hidden && (ReferenceEquals(command, parse.CommandResult) || option.Recursive))
                    yield return option;
            }
        }
    }

    private static IEnumerable<string> Names(IEnumerable<Command> commands) => commands.Where(c => !c.Hidden).Select(c => c.Name);

    /// <summary>
    /// The names that start with <paramref name="token"/>, or else the nearest ones within a few edits of it (about one in
    /// three letters).
    /// </summary>
    private static List<string> Nearest(string token, IReadOnlyList<string> names)
    {
        var distinct = names.Distinct(StringComparer.Ordinal).ToList();
        if (token.TrimStart('-').Length >= 2 && distinct.Where(name => name.StartsWith(token, StringComparison.Ordinal)).ToList() is { Count: > 0 } started)
            return started;
        var limit = Math.Max(1, token.TrimStart('-').Length / 3);
        var near = distinct.Select(name => (Name: name, Distance: Distance(token, name))).Where(c => c.Distance <= limit).ToList();
        return near.Count == 0 ? [] : [.. near.Where(c => c.Distance == near.Min(n => n.Distance)).Select(c => c.Name)];
    }

    /// <summary>Levenshtein distance: insertions, deletions and substitutions.</summary>
    private static int Distance(string a, string b)
    {
        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (var j = 0; j <= b.Length; j++)
            previous[j] = j;
        for (var i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            for (var j = 1; j <= b.Length; j++)
                current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            (previous, current) = (current, previous);
        }
        return previous[b.Length];
    }
}
