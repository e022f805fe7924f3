using System.Text.Json;
using MyDvpn.HostOs;

namespace MyDvpn.Packaging.Tests;

/// <summary>The package of packaging/build-deb, built and unpacked once (<see cref="DebianPackage"/>), and what it installs.</summary>
public sealed class DebianPackageTests(DebianPackage package) : IClassFixture<DebianPackage>
{
    /// <summary>Where the package installs the executable, which the units and the image start.</summary>
    public const string Executable = "/usr/bin/mydvpn";

    private string Installed(string path) => Path.Join(package.Root, path);

    /// <summary>Runs the installed mydvpn with no environment but a PATH of the system's own directories, in <paramref name="directory"/>.</summary>
    private async Task<CommandResult> RunInstalledAsync(string directory, params string[] arguments) =>
        await HostCommand.Host.RunAsync("env", ["-i", "-C", directory, "PATH=/usr/sbin:/usr/bin:/sbin:/bin", Installed(Executable), .. arguments]);

    [Fact]
    public async Task Installed_mydvpn_runs_in_a_clean_directory_without_the_SDK()
    {
        Assert.Equal("../lib/mydvpn/mydvpn", new FileInfo(Installed(Executable)).LinkTarget);
        var clean = package.Scratch("clean");

        var help = await RunInstalledAsync(clean, "--help");
        Assert.True(help.Succeeded, $"mydvpn --help exited with {help.ExitCode}: {help.StandardError}");
        foreach (var command in new[] { "base", "super", "peer", "keygen", "status", "admin" })
            Assert.Matches($@"(?m)^\s+{command}\b", help.StandardOutput);
        Assert.Empty(Directory.EnumerateFileSystemEntries(clean));

        // Its own runtime, TLS and key code at work: a CA made from the package alone.
        var ca = await RunInstalledAsync(clean, "ca", "init", "--dir", "ca");
        Assert.True(ca.Succeeded, $"mydvpn ca init exited with {ca.ExitCode}: {ca.StandardError}");
        Assert.True(File.Exists(Path.Combine(clean, "ca", "ca.crt")), ca.StandardOutput);
    }

    [Fact]
    public async Task Package_depends_on_the_programs_the_data_plane_runs()
    {
        var fields = await HostCommand.Host.RunCheckedAsync("dpkg-deb", ["--field", package.File, "Package", "Architecture", "Depends", "Recommends"]);
        Assert.Contains("Package: mydvpn", fields, StringComparison.Ordinal);
        Assert.Contains("Architecture: amd64", fields, StringComparison.Ordinal);
        // ip, nft, sysctl and wg; wireguard-go where the kernel has no WireGuard.
        foreach (var dependency in new[] { "iproute2", "nftables", "procps", "wireguard-tools", "wireguard-go" })
            Assert.Matches($@"(?m)^(Depends|Recommends):.*\b{dependency}\b", fields);
        // This machine is Debian 12: apt finds everything the package depends on (.ci/run installs the tools).
        var simulated = await HostCommand.Host.RunAsync("apt-get", ["install", "--simulate", "--no-install-recommends", package.File]);
        Assert.True(simulated.Succeeded && simulated.StandardOutput.Contains("Inst mydvpn ", StringComparison.Ordinal),
            $"apt-get install --simulate exited with {simulated.ExitCode}: {simulated.StandardOutput}{simulated.StandardError}");
    }

    [Fact]
    public async Task Installed_units_pass_systemd_analyze_verify()
    {
        DebianPackage.Require("systemd-analyze", "the Debian package systemd");
        var units = Installed("/usr/lib/systemd/system");
        var ours = Directory.GetFiles(units, "mydvpn-*.service").Order().ToList();
        Assert.Equal(["mydvpn-base.service", "mydvpn-peer@.service", "mydvpn-super.service"], ours.Select(Path.GetFileName));
        // verify --root looks for the units' dependencies (sysinit.target …) and their ExecStart binaries in that root:
        // the host's units go beside the package's, the binary is the package's own.
        foreach (var unit in Directory.EnumerateFileSystemEntries("/usr/lib/systemd/system"))
        {
            var copy = Path.Combine(units, Path.GetFileName(unit));
            if (!Path.Exists(copy) && File.Exists(unit))
                File.Copy(unit, copy);
        }

        var verify = await HostCommand.Host.RunAsync("systemd-analyze", ["verify", $"--root={package.Root}", .. ours]);
        Assert.True(verify.Succeeded && verify.StandardError.Length == 0 && verify.StandardOutput.Length == 0,
            $"systemd-analyze verify exited with {verify.ExitCode}: {verify.StandardOutput}{verify.StandardError}");
    }

    [Fact]
    public void Image_is_Debian_12_with_the_package_and_starts_its_executable()
    {
        var dockerfile = File.ReadAllLines(Repository.PathOf("docker/Dockerfile"));
        var stages = dockerfile.Where(line => line.StartsWith("FROM ", StringComparison.Ordinal)).ToList();
        Assert.StartsWith("FROM debian:bookworm", stages[^1], StringComparison.Ordinal);
        Assert.Contains(dockerfile, line => line.Contains("packaging/build-deb", StringComparison.Ordinal));
        var entrypoint = Assert.Single(dockerfile, line => line.StartsWith("ENTRYPOINT ", StringComparison.Ordinal));
        var program = JsonSerializer.Deserialize<string[]>(entrypoint["ENTRYPOINT ".Length..])![0];
        Assert.Equal(Executable, program);
        Assert.True(File.Exists(Installed(program)), $"the image's entrypoint {program} is not in the package");
    }
}
