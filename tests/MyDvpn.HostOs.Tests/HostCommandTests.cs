namespace MyDvpn.HostOs.Tests;

/// <summary>Programs run only from PATH: a bare name found nowhere on it is refused, never looked for elsewhere.</summary>
public sealed class HostCommandTests : IDisposable
{
    private readonly string temp = Path.Combine(Path.GetTempPath(), "mydvpn-hostcommand-" + Guid.NewGuid().ToString("N"));

    public HostCommandTests() => Directory.CreateDirectory(temp);

    public void Dispose() => Directory.Delete(temp, recursive: true);

    [Fact]
    public async Task Program_not_on_PATH_is_refused_naming_it_and_PATH_even_when_the_working_directory_holds_one()
    {
        if (OperatingSystem.IsWindows())
            return;
        // Process.Start would find a bare name in the working directory; as root that must never be what runs.
        var program = "mydvpn-stray-" + Guid.NewGuid().ToString("N");
        var stray = Path.Combine(Environment.CurrentDirectory, program);
        var ran = Path.Combine(temp, "ran");
        File.WriteAllText(stray, $"#!/bin/sh\ntouch '{ran}'\n");
        File.SetUnixFileMode(stray, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        try
        {
            var refused = await Assert.ThrowsAsync<HostCommandException>(() => HostCommand.Host.RunAsync(program, ["x"]));

            Assert.Contains($"cannot start {program}: it is in no directory of PATH ({Environment.GetEnvironmentVariable("PATH")})", refused.Message,
                StringComparison.Ordinal);
            Assert.Equal(program, refused.Result.Program);
            Assert.False(File.Exists(ran));
        }
        finally
        {
            File.Delete(stray);
        }
    }

    [Fact]
    public async Task Program_on_PATH_runs_from_its_absolute_directory()
    {
        if (OperatingSystem.IsWindows())
            return;

        var result = await HostCommand.Host.RunAsync("sh", ["-c", "echo ok"]);

        Assert.Equal("ok\n", result.EnsureSuccess().StandardOutput);
        Assert.True(Path.IsPathRooted(HostCommand.OnPath("sh")));
    }

    [Fact]
    public void Lookup_skips_relative_PATH_entries_and_files_that_are_not_executable()
    {
        if (OperatingSystem.IsWindows())
            return;
        var plain = Directory.CreateDirectory(Path.Combine(temp, "plain")).FullName;
        var bin = Directory.CreateDirectory(Path.Combine(temp, "bin")).FullName;
        File.WriteAllText(Path.Combine(plain, "tool"), "");
        File.SetUnixFileMode(Path.Combine(plain, "tool"), UnixFileMode.UserRead | UnixFileMode.UserWrite);
        File.WriteAllText(Path.Combine(bin, "tool"), "#!/bin/sh\n");
        File.SetUnixFileMode(Path.Combine(bin, "tool"), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var path = Environment.GetEnvironmentVariable("PATH");
        try
        {
            Environment.SetEnvironmentVariable("PATH", $".:relative/bin:{plain}:{bin}");

            Assert.Equal(Path.Combine(bin, "tool"), HostCommand.OnPath("tool"));
            Assert.Null(HostCommand.FindOnPath("no-such-tool"));
            Assert.Equal("./tool", HostCommand.OnPath("./tool"));
        }
        finally
        {
            Environment.SetEnvironmentVariable("PATH", path);
        }
    }
}
