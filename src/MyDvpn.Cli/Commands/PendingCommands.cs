using System.CommandLine;

namespace MyDvpn.Cli.Commands;

/// <summary>Subcommands whose behaviour arrives with a later issue: they say so and fail.</summary>
public static class PendingCommands
{
    public static Command Status() => Pending("status", "Show the local peer's state (arrives with the exit-allocation issue)", "`mydvpn status`");

    private static Command Pending(string name, string description, string what)
    {
        var command = new Command(name, description) { TreatUnmatchedTokensAsErrors = false };
        command.SetAction(parse =>
        {
            parse.InvocationConfiguration.Error.WriteLine($"error: {what} is not implemented in this version yet");
            return CliApplication.RuntimeFailure;
        });
        return command;
    }
}
