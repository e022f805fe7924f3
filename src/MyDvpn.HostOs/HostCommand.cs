using System.Diagnostics;
using System.Text;

namespace MyDvpn.HostOs;

/// <summary>What a finished command printed and how it ended.</summary>
public sealed record CommandResult(string Program, IReadOnlyList<string> Arguments, int ExitCode, string StandardOutput, string StandardError)
{
    public bool Succeeded => ExitCode == 0;

    /// <summary>The command line for messages (arguments quoted when they hold spaces); never run through a shell.</summary>
    public string CommandLine => HostCommand.Describe(Program, Arguments);

    /// <summary>Throws <see cref="HostCommandException"/> naming the command, its exit code and stderr, unless it succeeded.</summary>
    public CommandResult EnsureSuccess() =>
        Succeeded ? this : throw new HostCommandException(this);
}

public sealed class HostCommandException(CommandResult result)
    : Exception($"`{result.CommandLine}` failed with exit code {result.ExitCode}: {Trim(result.StandardError, result.StandardOutput)}")
{
    public CommandResult Result { get; } = result;

    private static string Trim(string error, string output)
    {
        var text = (error.Length > 0 ? error : output).Trim();
        return text.Length == 0 ? "(no output)" : text.Length > 2000 ? text[..2000] + "…" : text;
    }
}

/// <summary>
/// Runs host programs (ip, nft, wg, sysctl …) the way STYLE asks: an argument list, never a shell string; stdin
/// optional; stdout and stderr captured; the exit code checked by the caller (<see cref="CommandResult.EnsureSuccess"/>).
/// With <see cref="Namespace"/> set, every command runs inside that network namespace (<c>ip netns exec NAME …</c>).
/// </summary>
public sealed class HostCommand
{
    public static readonly HostCommand Host = new(null);

    public HostCommand(string? networkNamespace) => Namespace = networkNamespace;

    /// <summary>The network namespace commands run in; null: the caller's own.</summary>
    public string? Namespace { get; }

    /// <summary>The same runner for another namespace.</summary>
    public HostCommand In(string? networkNamespace) => new(networkNamespace);

    /// <exception cref="HostCommandException">The program could not be started (not installed); the result otherwise.</exception>
    public async Task<CommandResult> RunAsync(string program, IReadOnlyList<string> arguments, string? standardInput = null,
        CancellationToken cancellationToken = default)
    {
        var start = StartInfo(program, arguments);
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        start.RedirectStandardInput = standardInput is not null;
        using var process = new Process { StartInfo = start };
        try
        {
            process.Start();
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            throw new HostCommandException(new CommandResult(program, arguments, -1, "", $"cannot start {program}: {ex.Message} (is it installed?)"));
        }

        var output = process.StandardOutput.ReadToEndAsync(cancellationToken);
        var error = process.StandardError.ReadToEndAsync(cancellationToken);
        if (standardInput is not null)
        {
            await process.StandardInput.WriteAsync(standardInput.AsMemory(), cancellationToken);
            process.StandardInput.Close();
        }
        try
        {
            await process.WaitForExitAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw;
        }
        return new CommandResult(program, arguments, process.ExitCode, await output, await error);
    }

    /// <summary>Runs and throws <see cref="HostCommandException"/> unless the command succeeded; returns its stdout.</summary>
    public async Task<string> RunCheckedAsync(string program, IReadOnlyList<string> arguments, string? standardInput = null,
        CancellationToken cancellationToken = default) =>
        (await RunAsync(program, arguments, standardInput, cancellationToken)).EnsureSuccess().StandardOutput;

    /// <summary>How a long-running program (wireguard-go, a node) is started in this runner's namespace.</summary>
    public ProcessStartInfo StartInfo(string program, IReadOnlyList<string> arguments)
    {
        var start = new ProcessStartInfo { UseShellExecute = false };
        if (Namespace is null)
        {
            start.FileName = OnPath(program);
        }
        else
        {
            start.FileName = OnPath("ip");
            start.ArgumentList.Add("netns");
            start.ArgumentList.Add("exec");
            start.ArgumentList.Add(Namespace);
            start.ArgumentList.Add(OnPath(program));
        }
        foreach (var argument in arguments)
            start.ArgumentList.Add(argument);
        return start;
    }

    /// <summary>
    /// A bare program name resolved on PATH (a name with a slash is a path and stays as it is). Process.Start would
    /// look in the executable's and the working directory too, and this runs as root: a stray ./ip or ./nft must never
    /// be what runs, so a name found in no absolute PATH directory is refused rather than passed on.
    /// </summary>
    /// <exception cref="HostCommandException">No absolute directory of PATH holds an executable file of that name.</exception>
    public static string OnPath(string program) =>
        FindOnPath(program) ?? throw new HostCommandException(new CommandResult(program, [], -1, "",
            $"cannot start {program}: it is in no directory of PATH ({Environment.GetEnvironmentVariable("PATH") ?? "unset"}); "
            + "a program is run only from PATH (is it installed?), never from the working directory or the executable's"));

    /// <summary>Where <paramref name="program"/> is on PATH (absolute directories only; an executable file); null if nowhere. A name with a slash is returned as it is.</summary>
    public static string? FindOnPath(string program)
    {
        if (program.Contains('/'))
            return program;
        if (program.Length == 0)
            return null;
        foreach (var directory in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            if (!Path.IsPathRooted(directory))
                continue;
            var candidate = Path.Combine(directory, program);
            if (File.Exists(candidate) && IsExecutable(candidate))
                return candidate;
        }
        return null;
    }

    private static bool IsExecutable(string path) =>
        OperatingSystem.IsWindows()
        || (File.GetUnixFileMode(path) & (UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute)) != 0;

    public static string Describe(string program, IEnumerable<string> arguments)
    {
        var text = new StringBuilder(program);
        foreach (var argument in arguments)
            text.Append(' ').Append(argument.Any(char.IsWhiteSpace) || argument.Length == 0 ? $"'{argument}'" : argument);
        return text.ToString();
    }
}
