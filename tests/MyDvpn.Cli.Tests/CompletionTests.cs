using System.Diagnostics;
using MyDvpn.Cli.Demo;

namespace MyDvpn.Cli.Tests;

/// <summary><c>mydvpn completion</c>: the scripts, and bash completing through the real executable.</summary>
public sealed class CompletionTests : IDisposable
{
    private readonly TempDirectory temp = new();

    public void Dispose() => temp.Dispose();

    [Theory]
    [InlineData(new[] { "[suggest:10]", "mydvpn adm" }, new[] { "admin" })]
    [InlineData(new[] { "[suggest:25]", "mydvpn peer --log-format " }, new[] { "json", "text" })]
    [InlineData(new[] { "[suggest:27]", "mydvpn ca revoke --reason k" }, new[] { "key-compromise" })]
    public async Task The_suggest_directive_completes_commands_and_the_names_a_choice_takes(string[] args, string[] expected)
    {
        var (exitCode, output, error) = await CliRunner.RunAsync(args);

        Assert.Equal(0, exitCode);
        Assert.Equal("", error);
        Assert.Equal(expected, output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
    }

    [Theory]
    [InlineData("bash", "complete -o default -F _mydvpn_complete mydvpn")]
    [InlineData("zsh", "compdef _mydvpn mydvpn")]
    [InlineData("fish", "complete -c mydvpn -f -a '(__mydvpn_complete)'")]
    public async Task Each_shell_gets_a_script_that_asks_mydvpn(string shell, string registration)
    {
        var (exitCode, output, _) = await CliRunner.RunAsync("completion", shell);

        Assert.Equal(0, exitCode);
        Assert.Contains(registration, output, StringComparison.Ordinal);
        Assert.Contains("mydvpn \"[suggest:", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Bash_completes_a_subcommand_through_the_real_mydvpn()
    {
        // The script calls `mydvpn` on PATH, as an installed one is.
        var executable = MydvpnExecutable.InDirectory(AppContext.BaseDirectory);
        var bin = Directory.CreateDirectory(temp.Sub("bin")).FullName;
        var wrapper = Path.Combine(bin, "mydvpn");
        File.WriteAllText(wrapper,
            $"#!/bin/sh\nexec '{executable.FileName}' {string.Join(' ', executable.PrefixArguments.Select(a => $"'{a}'"))} \"$@\"\n");
        if (!OperatingSystem.IsWindows())
            File.SetUnixFileMode(wrapper, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var (_, script, _) = await CliRunner.RunAsync("completion", "bash");
        File.WriteAllText(temp.Sub("mydvpn.bash"), script);

        var start = new ProcessStartInfo("bash")
        {
            ArgumentList =
            {
                "-c",
                $"source '{temp.Sub("mydvpn.bash")}'; COMP_LINE='mydvpn admin dra'; COMP_POINT=${{#COMP_LINE}}; COMP_WORDS=(mydvpn admin dra); " +
                "COMP_CWORD=2; _mydvpn_complete; printf '%s\\n' \"${COMPREPLY[@]}\"",
            },
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.Environment["PATH"] = $"{bin}:{Environment.GetEnvironmentVariable("PATH")}";
        using var bash = Process.Start(start)!;
        var completed = await bash.StandardOutput.ReadToEndAsync();
        var problems = await bash.StandardError.ReadToEndAsync();
        await bash.WaitForExitAsync();

        Assert.True(bash.ExitCode == 0, problems);
        Assert.Equal(["drain"], completed.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }
}
