using MyDvpn.Cli.Commands;
using MyDvpn.Common;

namespace MyDvpn.Cli.Tests;

/// <summary>Where <c>mydvpn admin</c> finds its BaseNode and admin certificate: flags, then the environment, then the saved file.</summary>
public sealed class AdminSettingsTests : IDisposable
{
    private readonly TempDirectory temp = new();
    private readonly Dictionary<string, string> environment = [];

    public AdminSettingsTests() => environment["HOME"] = temp.Sub("home");

    public void Dispose() => temp.Dispose();

    private string? Env(string name) => environment.GetValueOrDefault(name);

    private string SavedFile => Path.Combine(temp.Path, "home", ".config", "mydvpn", "admin.json");

    [Fact]
    public void Flags_win_over_the_environment_and_the_environment_over_the_file()
    {
        AdminSettings.Save(SavedFile, new AdminSettings.Saved("10.0.0.3:7443", "/saved/tls"));
        environment[AdminSettings.BaseVariable] = "10.0.0.2:7443";

        var fromFlags = AdminSettings.Resolve("10.0.0.1:7443", "/flag/tls", Env);
        var mixed = AdminSettings.Resolve(null, null, Env);

        Assert.Equal(("10.0.0.1:7443", "--base", "/flag/tls", "--tls"), (fromFlags.Base, fromFlags.BaseFrom, fromFlags.Tls, fromFlags.TlsFrom));
        Assert.Equal(("10.0.0.2:7443", AdminSettings.BaseVariable, "/saved/tls"), (mixed.Base, mixed.BaseFrom, mixed.Tls));
        Assert.Contains(SavedFile, mixed.TlsFrom, StringComparison.Ordinal);
    }

    [Fact]
    public void The_file_is_under_XDG_CONFIG_HOME_when_it_is_an_absolute_path()
    {
        environment["XDG_CONFIG_HOME"] = temp.Sub("xdg");
        Assert.Equal(Path.Combine(temp.Path, "xdg", "mydvpn", "admin.json"), AdminSettings.FilePath(Env));

        environment["XDG_CONFIG_HOME"] = "relative/config";
        Assert.Equal(SavedFile, AdminSettings.FilePath(Env));
    }

    [Fact]
    public void A_setting_given_nowhere_is_an_error_naming_the_flag_the_variable_and_login()
    {
        environment[AdminSettings.TlsVariable] = "/env/tls";

        var missing = Assert.Throws<ConfigurationException>(() => AdminSettings.Resolve(null, null, Env));

        Assert.Equal("--base", missing.Setting);
        Assert.Contains(AdminSettings.BaseVariable, missing.Message, StringComparison.Ordinal);
        Assert.Contains("mydvpn admin login", missing.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Several_BaseNodes_are_tried_in_the_order_given()
    {
        environment[AdminSettings.BaseVariable] = "base-1:7443, base-2:7443";
        environment[AdminSettings.TlsVariable] = "/env/tls";

        Assert.Equal([new HostPort("base-1", 7443), new HostPort("base-2", 7443)], AdminSettings.Resolve(null, null, Env).BaseNodes);
    }

    [Fact]
    public void A_value_from_the_environment_that_is_not_an_address_is_named_by_its_variable()
    {
        environment[AdminSettings.BaseVariable] = "no-port";
        environment[AdminSettings.TlsVariable] = "/env/tls";

        var bad = Assert.Throws<ConfigurationException>(() => AdminSettings.Resolve(null, null, Env).BaseNodes);

        Assert.Equal(AdminSettings.BaseVariable, bad.Setting);
    }

    [Fact]
    public void A_broken_file_is_an_error_naming_it_and_how_to_write_it_anew_but_flags_do_not_read_it()
    {
        Directory.CreateDirectory(Path.GetDirectoryName(SavedFile)!);
        File.WriteAllText(SavedFile, "{ not json");

        var broken = Assert.Throws<ConfigurationException>(() => AdminSettings.Resolve(null, null, Env));

        Assert.Equal(SavedFile, broken.Setting);
        Assert.Contains("admin login", broken.Message, StringComparison.Ordinal);
        Assert.Equal("10.0.0.1:7443", AdminSettings.Resolve("10.0.0.1:7443", "/flag/tls", Env).Base);
    }

    [Fact]
    public void The_saved_file_round_trips_and_only_its_owner_may_read_it()
    {
        AdminSettings.Save(SavedFile, new AdminSettings.Saved("10.0.0.3:7443", "/saved/tls"));

        Assert.Equal(new AdminSettings.Saved("10.0.0.3:7443", "/saved/tls"), AdminSettings.Load(SavedFile));
        if (!OperatingSystem.IsWindows())
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(SavedFile));
        Assert.False(File.Exists(SavedFile + ".tmp"));
    }
}
