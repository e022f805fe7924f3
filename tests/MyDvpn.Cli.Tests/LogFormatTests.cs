using MyDvpn.Cli.Commands;
using MyDvpn.Common;
using MyDvpn.Logging;

namespace MyDvpn.Cli.Tests;

/// <summary>Where a long-running command's log format comes from: the flag, else MYDVPN_LOG_FORMAT, else the console.</summary>
public sealed class LogFormatTests
{
    [Theory]
    [InlineData(new[] { "--log-format", "text" }, "json", LogFormat.Text)]
    [InlineData(new string[0], "json", LogFormat.Json)]
    [InlineData(new string[0], "TEXT", LogFormat.Text)]
    public void The_flag_wins_over_the_variable_and_the_variable_over_the_console(string[] arguments, string variable, LogFormat expected)
    {
        var command = new LongRunningCommand("node", "a node");

        var format = command.LogFormatOf(command.Parse(arguments), name => name == LongRunningCommand.LogFormatVariable ? variable : null);

        Assert.Equal(expected, format);
    }

    [Fact]
    public void A_variable_that_names_no_format_is_refused_naming_it_and_the_choices()
    {
        var command = new LongRunningCommand("node", "a node");

        var problem = Assert.Throws<ConfigurationException>(() => command.LogFormatOf(command.Parse([]), _ => "xml"));

        Assert.Equal(LongRunningCommand.LogFormatVariable, problem.Setting);
        Assert.Contains("'xml' is not one of text, json", problem.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Without_flag_or_variable_the_console_decides()
    {
        var command = new LongRunningCommand("node", "a node");

        Assert.Equal(ConsoleLogging.ForThisConsole, command.LogFormatOf(command.Parse([]), _ => null));
    }
}
