using MyDvpn.HostOs;

namespace MyDvpn.Packaging.Tests;

/// <summary>
/// The Debian package, built once for the tests that share it: packaging/build-deb (a self-contained publish, several
/// minutes) into a temporary directory, and unpacked there (<c>dpkg-deb -x</c>: the files as installed, under
/// <see cref="Root"/>, with nothing installed on this machine). Disposing removes both.
/// </summary>
public sealed class DebianPackage : IAsyncLifetime
{
    private static readonly TimeSpan BuildBound = TimeSpan.FromMinutes(20);
    private readonly TempDirectory temp = new();

    public string File { get; private set; } = "";

    /// <summary>Where the package's files are unpacked: <c>Root/usr/bin/mydvpn</c> is the installed executable.</summary>
    public string Root => temp.Sub("root");

    public string Scratch(string name) => Directory.CreateDirectory(temp.Sub(name)).FullName;

    public async Task InitializeAsync()
    {
        Require("dotnet", "the .NET SDK");
        Require("dpkg-deb", "the Debian package dpkg");
        try
        {
            using var bound = new CancellationTokenSource(BuildBound);
            var build = await HostCommand.Host.RunAsync("bash", [Repository.PathOf("packaging/build-deb"), "--out", temp.Sub("out")], cancellationToken: bound.Token);
            if (!build.Succeeded)
                throw new InvalidOperationException($"packaging/build-deb exited with {build.ExitCode}:\n{build.StandardOutput}\n{build.StandardError}");
            File = build.StandardOutput.TrimEnd().Split('\n')[^1];
            await HostCommand.Host.RunCheckedAsync("dpkg-deb", ["-x", File, Root]);
        }
        catch
        {
            await DisposeAsync();
            throw;
        }
    }

    public Task DisposeAsync()
    {
        if (Directory.Exists(temp.Path))
            temp.Dispose();
        return Task.CompletedTask;
    }

    /// <summary>A missing tool fails the test that needs it, saying what to install; it never skips it.</summary>
    public static void Require(string program, string package) =>
        Assert.True(HostCommand.FindOnPath(program) is not null, $"{program} is not on PATH: install {package} (.ci/run installs what the tests use)");
}
