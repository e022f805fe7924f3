using MyDvpn.Cli.Demo;

namespace MyDvpn.Cli.Tests;

public sealed class MydvpnExecutableTests
{
    [Fact]
    public void A_build_output_is_shown_by_its_path_not_as_a_mydvpn_PATH_may_lack()
    {
        var executable = new MydvpnExecutable("/work/repo/src/MyDvpn.Cli/bin/Debug/net10.0/mydvpn", []);
        Assert.Equal("/work/repo/src/MyDvpn.Cli/bin/Debug/net10.0/mydvpn", executable.ShellCommand);
    }

    [Fact]
    public void A_dll_run_by_dotnet_is_shown_with_its_host_and_quoted_where_a_shell_would_split_it()
    {
        var executable = new MydvpnExecutable("/usr/share/dotnet/dotnet", ["/tmp/my build/mydvpn.dll"]);
        Assert.Equal("/usr/share/dotnet/dotnet '/tmp/my build/mydvpn.dll'", executable.ShellCommand);
    }
}
