using System.Text.Json;
using System.Text.Json.Serialization;
using MyDvpn.Common;

namespace MyDvpn.Cli.Commands;

/// <summary>
/// The BaseNode an admin command talks to and the admin certificate it shows, with where each came from: a flag
/// (<c>--base</c>, <c>--tls</c>), the environment (<see cref="AdminSettings.BaseVariable"/>, <see cref="AdminSettings.TlsVariable"/>)
/// or the file <c>mydvpn admin login</c> writes (<see cref="AdminSettings.FilePath"/>), in that order of precedence.
/// </summary>
/// <param name="BaseFrom">The setting <see cref="Base"/> came from, as an error should name it.</param>
/// <param name="TlsFrom">The setting <see cref="Tls"/> came from.</param>
public sealed record AdminTarget(string Base, string BaseFrom, string Tls, string TlsFrom)
{
    /// <summary>The BaseNodes <see cref="Base"/> names, HOST:PORT[,HOST:PORT...], in the order they are tried.</summary>
    public IReadOnlyList<HostPort> BaseNodes => HostPort.ParseList([Base], BaseFrom) is { Count: > 0 } list
        ? list
        : throw new ConfigurationException(BaseFrom, "names no BaseNode: give HOST:PORT[,HOST:PORT...]");
}

/// <summary>Where <c>mydvpn admin</c> finds its BaseNode and admin certificate when no flag names them.</summary>
public static class AdminSettings
{
    public const string BaseVariable = "MYDVPN_ADMIN_BASE";
    public const string TlsVariable = "MYDVPN_ADMIN_TLS";

    private static readonly JsonSerializerOptions FileFormat = new() { WriteIndented = true };

    /// <summary>What <c>admin login</c> writes: the BaseNode's address and the admin certificate's directory (absolute).</summary>
    public sealed record Saved(
        [property: JsonPropertyName("base")] string? Base,
        [property: JsonPropertyName("tls")] string? Tls);

    /// <summary>
    /// <c>$XDG_CONFIG_HOME/mydvpn/admin.json</c>, or <c>~/.config/mydvpn/admin.json</c> when XDG_CONFIG_HOME is unset or
    /// not absolute (the XDG base directory rule); null when neither it nor HOME is set.
    /// </summary>
    public static string? FilePath(Func<string, string?> environment)
    {
        var xdg = environment("XDG_CONFIG_HOME");
        if (!string.IsNullOrEmpty(xdg) && Path.IsPathRooted(xdg))
            return Path.Combine(xdg, "mydvpn", "admin.json");
        var home = environment("HOME");
        return string.IsNullOrEmpty(home) ? null : Path.Combine(home, ".config", "mydvpn", "admin.json");
    }

    /// <summary>
    /// Flags win over the environment, the environment over the file. Throws <see cref="ConfigurationException"/> naming the
    /// flag, the environment variable and <c>admin login</c> when a setting is given nowhere, and the file when it is unreadable.
    /// </summary>
    public static AdminTarget Resolve(string? baseFlag, string? tlsFlag, Func<string, string?> environment)
    {
        var path = FilePath(environment);
        // The file is read only when a flag and the environment leave something open, so a broken file never stands in
        // the way of an explicit setting.
        Saved? saved = null;
        string FileSetting(string key) => $"{path} (\"{key}\", written by `mydvpn admin login`)";
        (string Value, string From) Pick(string? flag, string flagName, string variable, Func<Saved, string?> fromFile, string key, string example)
        {
            if (!string.IsNullOrEmpty(flag))
                return (flag, flagName);
            if (environment(variable) is { Length: > 0 } fromEnvironment)
                return (fromEnvironment, variable);
            saved ??= Load(path) ?? new Saved(null, null);
            if (fromFile(saved) is { Length: > 0 } value)
                return (value, FileSetting(key));
            throw new ConfigurationException(flagName,
                $"not given: pass {flagName} {example}, set {variable}, or run `mydvpn admin login --base HOST:PORT --tls DIR` once "
                + $"(it writes {path ?? "~/.config/mydvpn/admin.json"})");
        }

        var (baseNode, baseFrom) = Pick(baseFlag, "--base", BaseVariable, s => s.Base, "base", "HOST:PORT");
        var (tls, tlsFrom) = Pick(tlsFlag, "--tls", TlsVariable, s => s.Tls, "tls", "DIR");
        return new AdminTarget(baseNode, baseFrom, tls, tlsFrom);
    }

    /// <summary>The saved settings; null when there is no file. A file that is not what <c>admin login</c> writes is an error naming it.</summary>
    public static Saved? Load(string? path)
    {
        if (path is null || !File.Exists(path))
            return null;
        try
        {
            return JsonSerializer.Deserialize<Saved>(File.ReadAllText(path), FileFormat)
                   ?? throw new JsonException("the file holds null");
        }
        catch (JsonException ex)
        {
            throw new ConfigurationException(path,
                $"is not an admin settings file ({ex.Message}); run `mydvpn admin login --base HOST:PORT --tls DIR` to write it anew", ex);
        }
    }

    /// <summary>Writes the file (its directory made if need be) whole or not at all: a temporary file moved over it.</summary>
    public static void Save(string path, Saved settings)
    {
        var directory = Path.GetDirectoryName(path)!;
        System.IO.Directory.CreateDirectory(directory);
        var temporary = path + ".tmp";
        File.WriteAllText(temporary, JsonSerializer.Serialize(settings, FileFormat) + "\n");
        if (!OperatingSystem.IsWindows())
            File.SetUnixFileMode(temporary, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        File.Move(temporary, path, overwrite: true);
    }
}
