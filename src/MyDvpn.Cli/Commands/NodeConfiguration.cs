using System.CommandLine;
using Microsoft.Extensions.Configuration;
using MyDvpn.Common;

namespace MyDvpn.Cli.Commands;

/// <summary>
/// Binds a node's options from, in rising precedence, <c>--config FILE</c> (JSON), environment
/// variables <c>MYDVPN__SECTION__KEY</c> and flags. Each flag names the option property it sets.
/// </summary>
public sealed class NodeConfiguration(string section)
{
    private readonly Option<string> configFile = new("--config") { Description = "JSON file with settings (keys as in MYDVPN__SECTION__KEY); flags win" };
    private readonly List<(Option Option, string Key, bool Required)> flags = [];

    public string Section { get; } = section;

    /// <param name="required">
    /// The setting must have a value, from the flag, the config file or the environment: every one missing is named at
    /// once, before anything else is checked.
    /// </param>
    public Option<T> Flag<T>(string name, string key, string description, bool required = false)
    {
        var option = new Option<T>(name) { Description = description };
        if (SettingValues.Describe(typeof(T)) is not null)
            option.CustomParser = result => ParseScalar<T>(name, result);
        flags.Add((option, key, required));
        return option;
    }

    /// <summary>A typed flag's value, refused in words (<c>--max-streams 'abc' is not a whole number</c>).</summary>
    private static T? ParseScalar<T>(string name, System.CommandLine.Parsing.ArgumentResult result)
    {
        var text = result.Tokens.Count > 0 ? result.Tokens[^1].Value : "";
        if (SettingValues.TryConvert(text, typeof(T), out var value))
            return (T?)value;
        result.AddError($"{name} {SettingValues.NotA(text, typeof(T))}");
        return default;
    }

    public void AddTo(Command command)
    {
        command.Options.Add(configFile);
        foreach (var (option, _, _) in flags)
            command.Options.Add(option);
    }

    public T Bind<T>(ParseResult parse) where T : new()
    {
        var builder = new ConfigurationBuilder();
        if (parse.GetValue(configFile) is { } file)
        {
            if (!File.Exists(file))
                throw new ConfigurationException("--config", $"file '{file}' does not exist");
            builder.AddJsonFile(Path.GetFullPath(file), optional: false);
        }
        builder.AddEnvironmentVariables("MYDVPN__");
        builder.AddInMemoryCollection(FlagValues(parse));
        IConfigurationRoot configuration;
        try
        {
            configuration = builder.Build();
        }
        catch (InvalidDataException ex)
        {
            throw new ConfigurationException("--config", $"is not valid JSON: {ex.Message}", ex);
        }
        var problems = MissingRequired(configuration).Concat(ValuesOfTheWrongKind(configuration, configuration.GetSection(Section), typeof(T))).ToList();
        if (problems.Count > 0)
            throw ConfigurationException.All(problems);
        var options = new T();
        try
        {
            configuration.GetSection(Section).Bind(options);
        }
        catch (InvalidOperationException ex)
        {
            throw new ConfigurationException($"{Section} settings", ex.Message, ex);
        }
        return options;
    }

    /// <summary>Every required setting without a value, each with the three places it can come from.</summary>
    private IEnumerable<ConfigurationException> MissingRequired(IConfiguration configuration)
    {
        foreach (var (option, key, required) in flags)
        {
            var section = configuration.GetSection($"{Section}:{key}");
            if (required && string.IsNullOrWhiteSpace(section.Value) && !section.GetChildren().Any())
                yield return new ConfigurationException(option.Name, $"is required: {option.Description} (or {Section}:{key} in --config FILE, or {EnvironmentName(section.Path)})");
        }
    }

    /// <summary>
    /// Every value the binder could not convert to its property's type, named by its flag (or key), with the value and
    /// where it came from; nested settings (<c>Super:Edge:…</c>) too.
    /// </summary>
    private IEnumerable<ConfigurationException> ValuesOfTheWrongKind(IConfigurationRoot root, IConfigurationSection section, Type type)
    {
        foreach (var property in type.GetProperties(System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Instance))
        {
            if (!property.CanWrite)
                continue;
            var child = section.GetSection(property.Name);
            if (SettingValues.Describe(property.PropertyType) is not null)
            {
                if (child.Value is { } value && !SettingValues.TryConvert(value, property.PropertyType, out _))
                    yield return new ConfigurationException(SettingName(child.Path), $"{SettingValues.NotA(value, property.PropertyType)} (from {SourceOf(root, child.Path)})");
            }
            else if (property.PropertyType.IsClass && property.PropertyType != typeof(string)
                     && !typeof(System.Collections.IEnumerable).IsAssignableFrom(property.PropertyType))
            {
                foreach (var problem in ValuesOfTheWrongKind(root, child, property.PropertyType))
                    yield return problem;
            }
        }
    }

    /// <summary>The flag that sets <paramref name="path"/>, or the key itself for a setting without one.</summary>
    private string SettingName(string path) =>
        flags.FirstOrDefault(f => string.Equals($"{Section}:{f.Key}", path, StringComparison.OrdinalIgnoreCase)).Option?.Name ?? path;

    /// <summary>Which source gave the value in force at <paramref name="path"/>: the last provider that has it wins.</summary>
    private static string SourceOf(IConfigurationRoot root, string path) =>
        root.Providers.LastOrDefault(p => p.TryGet(path, out _)) switch
        {
            Microsoft.Extensions.Configuration.Memory.MemoryConfigurationProvider => "the flag",
            Microsoft.Extensions.Configuration.EnvironmentVariables.EnvironmentVariablesConfigurationProvider => EnvironmentName(path),
            Microsoft.Extensions.Configuration.Json.JsonConfigurationProvider json =>
                $"--config {json.Source.FileProvider?.GetFileInfo(json.Source.Path ?? "").PhysicalPath ?? json.Source.Path}",
            _ => "the configuration",
        };

    private static string EnvironmentName(string path) => "MYDVPN__" + path.Replace(":", "__", StringComparison.Ordinal).ToUpperInvariant();

    private IEnumerable<KeyValuePair<string, string?>> FlagValues(ParseResult parse)
    {
        foreach (var (option, key, _) in flags)
        {
            if (parse.GetResult(option) is not { Implicit: false } result)
                continue;
            var values = result.Tokens.Select(t => t.Value).ToList();
            if (option.ValueType.IsArray)
            {
                for (var i = 0; i < values.Count; i++)
                    yield return new($"{Section}:{key}:{i}", values[i]);
            }
            else if (values.Count > 0)
            {
                yield return new($"{Section}:{key}", values[^1]);
            }
        }
    }
}
