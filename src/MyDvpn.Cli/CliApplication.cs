using System.CommandLine;
using Grpc.Core;
using MyDvpn.Cli.Commands;
using MyDvpn.Common;
using MyDvpn.Security;

namespace MyDvpn.Cli;

/// <summary>The <c>mydvpn</c> command tree and its exit-code contract (ARCHITECTURE §7).</summary>
public static class CliApplication
{
    public const int Success = 0;
    public const int RuntimeFailure = 1;
    public const int BadUsage = 2;

    /// <summary>How long a command has to stop cleanly after SIGINT or SIGTERM before the process ends anyway.</summary>
    public static readonly TimeSpan StopWithin = TimeSpan.FromSeconds(30);

    public static RootCommand BuildRoot(TextWriter output) => new("myDvpn: a decentralized VPN control plane. One executable for every role.")
    {
        KeygenCommand.Build(output),
        CaCommand.Build(output),
        NodeCommands.BuildBase(),
        NodeCommands.BuildSuper(),
        PeerCommand.Build(),
        StatusCommand.Build(output),
        AdminCommand.Build(output),
        DemoCommand.Build(output),
        CompletionCommand.Build(output),
    };

    public static async Task<int> RunAsync(string[] args, TextWriter output, TextWriter error)
    {
        var root = BuildRoot(output);
        var parse = root.Parse(args);
        // A directive such as [suggest:N] (shell completion) parses a line that is being typed: its errors are not the user's.
        if (parse.Errors.Count > 0 && parse.Action is not { ClearsParseErrors: true })
        {
            foreach (var problem in ParseErrors.Describe(parse))
                await error.WriteLineAsync($"error: {problem}");
            await error.WriteLineAsync($"Run `{ParseErrors.Path(parse)} --help` for usage.");
            return BadUsage;
        }
        var configuration = new InvocationConfiguration
        {
            Output = output,
            Error = error,
            EnableDefaultExceptionHandler = false,
            // A short command gets this long to stop after SIGINT or SIGTERM. System.CommandLine 2.0.0 leaves it unset, so
            // without it the process was killed at once.
            ProcessTerminationTimeout = StopWithin,
        };
        try
        {
            if (parse.CommandResult.Command is not LongRunningCommand)
                return await parse.InvokeAsync(configuration, CancellationToken.None);
            // A long-running command stops on the first signal and is forced by a second (StopSignals), whose handlers
            // take the place of System.CommandLine's.
            configuration.ProcessTerminationTimeout = null;
            using var signals = new StopSignals(error, StopWithin);
            return await parse.InvokeAsync(configuration, signals.Token);
        }
        catch (ConfigurationException ex)
        {
            foreach (var problem in ex.Problems.DefaultIfEmpty(ex))
                await error.WriteLineAsync($"error: {problem.Message}");
            return BadUsage;
        }
        catch (CertificateException ex)
        {
            await error.WriteLineAsync($"error: {ex.Message}");
            return BadUsage;
        }
        catch (RpcException ex)
        {
            await error.WriteLineAsync($"error: {ex.StatusCode}: {ex.Status.Detail}");
            return RuntimeFailure;
        }
    }
}
