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
    };

    public static async Task<int> RunAsync(string[] args, TextWriter output, TextWriter error)
    {
        var root = BuildRoot(output);
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var problem in parse.Errors)
                await error.WriteLineAsync($"error: {problem.Message}");
            await error.WriteLineAsync($"Run `mydvpn {string.Join(' ', parse.CommandResult.Command.Name == root.Name ? [] : CommandPath(parse))} --help` for usage.");
            return BadUsage;
        }
        try
        {
            return await parse.InvokeAsync(new InvocationConfiguration
            {
                Output = output,
                Error = error,
                EnableDefaultExceptionHandler = false,
                // SIGINT and SIGTERM cancel the command's token, and the command gets this long to stop cleanly (the demo tears
                // its namespaces down). System.CommandLine 2.0.0 leaves it unset, so without it the process was killed at once
                // and left everything behind. The nodes and the agent run a .NET host, which handles both signals itself
                // (a node hands its relay legs over and leaves its cluster): System.CommandLine stays out of their way.
                ProcessTerminationTimeout = RunsAHost(parse) ? null : StopWithin,
            });
        }
        catch (ConfigurationException ex)
        {
            await error.WriteLineAsync($"error: {ex.Message}");
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

    /// <summary>Whether the command runs a .NET host (<c>base</c>, <c>super</c>, <c>peer</c>), whose lifetime handles SIGINT and SIGTERM.</summary>
    private static bool RunsAHost(ParseResult parse) => parse.CommandResult.Command.Name is "base" or "super" or "peer";

    private static IEnumerable<string> CommandPath(ParseResult parse)
    {
        var names = new Stack<string>();
        for (var result = parse.CommandResult; result.Parent is System.CommandLine.Parsing.CommandResult parent; result = parent)
            names.Push(result.Command.Name);
        return names;
    }
}
