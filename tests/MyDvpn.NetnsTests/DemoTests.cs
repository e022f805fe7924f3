using System.Text.RegularExpressions;
using MyDvpn.Cli.Demo;
using Xunit.Abstractions;

namespace MyDvpn.NetnsTests;

/// <summary>The README's main command, <c>mydvpn demo</c>, run as a real process.</summary>
[Collection(DataPlaneCollection.Name)]
public sealed partial class DemoTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Demo_once_shows_the_client_leaving_through_the_exit_and_leaves_nothing_behind()
    {
        var work = Directory.CreateTempSubdirectory("mydvpn-demo-test-").FullName;
        try
        {
            var log = Path.Combine(work, "demo.log");
            using var demo = NodeProcess.Start(MydvpnExecutable.InDirectory(AppContext.BaseDirectory), "demo", log,
                ["demo", "--once", "--dir", Path.Combine(work, "demo")]);
            var finished = await demo.WaitForExitAsync(TimeSpan.FromMinutes(4));
            var text = demo.ReadLog();
            output.WriteLine(text);

            Assert.True(finished, "the demo finished within 4 minutes");
            Assert.Equal(0, demo.ExitCode);
            Assert.Contains("the internet server sees the client as 198.51.100.20", text, StringComparison.Ordinal);
            Assert.Contains("Before any tunnel, the internet server sees the client as 198.51.100.21", text, StringComparison.Ordinal);
            Assert.Matches(@"Ping from the client to 198\.51\.100\.1 through the tunnel: 5/5 answered", text);
            Assert.Contains("Torn down", text, StringComparison.Ordinal);
            var testbedId = TestbedId().Match(text).Groups[1].Value;
            Assert.NotEmpty(testbedId);
            Assert.DoesNotContain(await NetnsTestHelpers.ListNamespacesAsync(), ns => ns.StartsWith(testbedId, StringComparison.Ordinal));
            Assert.False(File.Exists($"/var/run/wireguard/wgc{testbedId[^6..]}.sock"), "the client's UAPI socket is gone");
            Assert.False(File.Exists($"/var/run/wireguard/wge{testbedId[^6..]}.sock"), "the exit's UAPI socket is gone");
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }

    [Theory]
    [InlineData("INT")] // Ctrl-C
    [InlineData("TERM")]
    public async Task A_running_demo_that_gets_a_signal_tears_everything_down_and_exits_0(string signal)
    {
        var work = Directory.CreateTempSubdirectory("mydvpn-demo-test-").FullName;
        try
        {
            using var demo = NodeProcess.Start(MydvpnExecutable.InDirectory(AppContext.BaseDirectory), "demo", Path.Combine(work, "demo.log"),
                ["demo", "--dir", Path.Combine(work, "demo")]);
            var running = DateTime.UtcNow + TimeSpan.FromMinutes(4);
            while (!demo.ReadLog().Contains("Press Ctrl-C", StringComparison.Ordinal))
            {
                Assert.False(demo.HasExited, $"the demo exited before it ran: {demo.ReadLog()}");
                Assert.True(DateTime.UtcNow < running, $"the demo did not come up within 4 minutes: {demo.ReadLog()}");
                await Task.Delay(500);
            }

            var signalled = System.Diagnostics.Stopwatch.StartNew();
            await MyDvpn.HostOs.HostCommand.Host.RunCheckedAsync("kill", ["-s", signal, demo.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
            var stopped = await demo.WaitForExitAsync(TimeSpan.FromSeconds(45));
            var text = demo.ReadLog();
            output.WriteLine(text);
            output.WriteLine($"SIG{signal}: exited with {(stopped ? demo.ExitCode : "nothing yet")} after {signalled.Elapsed.TotalSeconds:0.0} s");

            Assert.True(stopped, $"the demo stopped within 45 s of SIG{signal}");
            Assert.Equal(0, demo.ExitCode);
            Assert.Contains("Torn down", text, StringComparison.Ordinal);
            var testbedId = TestbedId().Match(text).Groups[1].Value;
            Assert.NotEmpty(testbedId);
            Assert.DoesNotContain(await NetnsTestHelpers.ListNamespacesAsync(), ns => ns.StartsWith(testbedId, StringComparison.Ordinal));
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }

    [Fact]
    public async Task Demo_without_root_exits_2_saying_it_needs_root()
    {
        var executable = MydvpnExecutable.InDirectory(AppContext.BaseDirectory);
        var work = Directory.CreateTempSubdirectory("mydvpn-demo-nobody-").FullName;
        if (OperatingSystem.IsLinux())
            File.SetUnixFileMode(work, (UnixFileMode)0x1FF);
        try
        {
            // setpriv (util-linux) drops to nobody: the demo must refuse before touching anything.
            using var demo = NodeProcess.Start(new MydvpnExecutable("setpriv",
                    ["--reuid=65534", "--regid=65534", "--clear-groups", "env", $"HOME={work}", $"DOTNET_CLI_HOME={work}", executable.FileName, .. executable.PrefixArguments]),
                "demo-nobody", Path.Combine(work, "demo.log"), ["demo", "--once"]);
            Assert.True(await demo.WaitForExitAsync(TimeSpan.FromSeconds(60)), "the demo answered within 60 s");
            var text = demo.ReadLog();
            Assert.True(demo.ExitCode == 2, $"exit code {demo.ExitCode}: {text}");
            Assert.Contains("needs root", text, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }

    [GeneratedRegex(@"Network namespaces (tb[0-9a-f]+)-\*")]
    private static partial Regex TestbedId();
}
