using System.Text.RegularExpressions;
using YamlDotNet.Core;
using YamlDotNet.Serialization;

namespace MyDvpn.Packaging.Tests;

/// <summary>
/// docker/compose.yaml as Compose reads it: YAML with merge keys (<c>&lt;&lt;: *mydvpn</c>), <c>${NAME:-default}</c>
/// taken as Compose takes it with NAME unset; and the <c>mydvpn</c> command lines its opening comment tells to run.
/// </summary>
internal sealed partial class ComposeFile
{
    private ComposeFile(IReadOnlyDictionary<string, ComposeService> services, IReadOnlyList<(string Line, IReadOnlyList<string> Arguments)> setup)
    {
        Services = services;
        Setup = setup;
    }

    public IReadOnlyDictionary<string, ComposeService> Services { get; }

    /// <summary>Each <c>docker compose run … mydvpn ARGS</c> or <c>docker compose exec SERVICE mydvpn ARGS</c> of the opening comment.</summary>
    public IReadOnlyList<(string Line, IReadOnlyList<string> Arguments)> Setup { get; }

    public static ComposeFile Load(string path)
    {
        var text = File.ReadAllText(path);
        var document = new DeserializerBuilder().Build()
            .Deserialize<Dictionary<object, object>>(new MergingParser(new Parser(new StringReader(text))));
        var services = ((Dictionary<object, object>)document["services"])
            .ToDictionary(pair => (string)pair.Key, pair => new ComposeService((string)pair.Key, (Dictionary<object, object>)pair.Value));
        var setup = text.Split('\n')
            .TakeWhile(line => line.StartsWith('#'))
            .SelectMany(line => SetupCommand().Matches(line).Select(match =>
                (line.Trim(), (IReadOnlyList<string>)match.Groups["arguments"].Value.Split(' ', StringSplitOptions.RemoveEmptyEntries))))
            .ToList();
        return new ComposeFile(services, setup);
    }

    /// <summary>What Compose makes of <c>${NAME}</c> and <c>${NAME:-default}</c> with NAME unset.</summary>
    public static string Interpolate(string value) => Variable().Replace(value, match => match.Groups["default"].Value);

    [GeneratedRegex(@"docker compose (?:run --rm (?:-T )?mydvpn|exec [\w-]+ mydvpn) (?<arguments>[^|)]*)")]
    private static partial Regex SetupCommand();

    [GeneratedRegex(@"\$\{\w+(?::-(?<default>[^}]*))?\}")]
    private static partial Regex Variable();
}

/// <summary>One service of a compose file, as YAML gave it.</summary>
internal sealed class ComposeService(string name, Dictionary<object, object> settings)
{
    public string Name { get; } = name;

    public string? Image => settings.TryGetValue("image", out var image) ? (string)image : null;

    /// <summary>The command (the image's entrypoint's arguments), interpolated.</summary>
    public IReadOnlyList<string> Command => Strings("command");

    /// <summary>The health check's command after <c>CMD</c>, if it has one of that form.</summary>
    public IReadOnlyList<string> HealthCheck =>
        Map("healthcheck").TryGetValue("test", out var test) && test is List<object> { Count: > 0 } list && (string)list[0] == "CMD"
            ? [.. list.Skip(1).Select(item => ComposeFile.Interpolate((string)item))]
            : [];

    public IReadOnlyList<string> Strings(string key) =>
        settings.TryGetValue(key, out var value) && value is List<object> list ? [.. list.Select(item => ComposeFile.Interpolate((string)item))] : [];

    public IReadOnlyDictionary<string, string> Pairs(string key) =>
        Map(key).ToDictionary(pair => (string)pair.Key, pair => ComposeFile.Interpolate((string)pair.Value));

    /// <summary>The fixed address the service has on its network.</summary>
    public string? Address => Map("networks").Values.OfType<Dictionary<object, object>>()
        .Select(network => network.TryGetValue("ipv4_address", out var address) ? (string)address : null)
        .FirstOrDefault(address => address is not null);

    /// <summary>The host path mounted at <paramref name="target"/> (<c>./pki/sn-1:/etc/mydvpn/tls:ro</c>), or null.</summary>
    public string? MountedAt(string target) => Strings("volumes").Select(volume => volume.Split(':'))
        .Where(parts => parts.Length >= 2 && parts[1] == target).Select(parts => parts[0]).FirstOrDefault();

    private Dictionary<object, object> Map(string key) =>
        settings.TryGetValue(key, out var value) && value is Dictionary<object, object> map ? map : [];
}
