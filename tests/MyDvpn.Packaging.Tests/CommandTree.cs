using System.CommandLine;
using MyDvpn.Cli;

namespace MyDvpn.Packaging.Tests;

/// <summary>Command lines checked against the real <c>mydvpn</c> command tree, as <see cref="CliApplication"/> builds it.</summary>
internal static class CommandTree
{
    /// <summary>The subcommand path the arguments name (<c>admin token create</c>) and what the parser refused of them.</summary>
    public static (string Command, IReadOnlyList<string> Problems) Parse(IReadOnlyList<string> arguments)
    {
        var parse = CliApplication.BuildRoot(TextWriter.Null).Parse([.. arguments]);
        var path = new List<string>();
        for (var result = parse.CommandResult; result.Parent is System.CommandLine.Parsing.CommandResult parent; result = parent)
            path.Insert(0, result.Command.Name);
        return (string.Join(' ', path), [.. parse.Errors.Select(error => error.Message)]);
    }

    /// <summary>Fails, naming the line and every problem, unless the tree takes the arguments whole.</summary>
    public static void AssertAccepts(IReadOnlyList<string> arguments, string where)
    {
        var (_, problems) = Parse(arguments);
        Assert.True(problems.Count == 0,
            $"{where}: `mydvpn {string.Join(' ', arguments)}` does not parse: {string.Join("; ", problems)}");
    }

    /// <summary>The value of <paramref name="flag"/> in <paramref name="arguments"/> (the last one given), or null.</summary>
    public static string? ValueOf(IReadOnlyList<string> arguments, string flag)
    {
        var at = arguments.ToList().FindLastIndex(argument => argument == flag);
        return at >= 0 && at + 1 < arguments.Count ? arguments[at + 1] : null;
    }
}
