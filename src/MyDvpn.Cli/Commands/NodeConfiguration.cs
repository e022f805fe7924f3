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
    private readonly List<(Option Option, string Key)> flags = [];

    public string Section { get; } = section;

    public Option<T> Flag<T>(string name, string key, string description)
    {
        var option = new Option<T>(name) { Description = description };
        flags.Add((option, key));
        return option;
    }

    public void AddTo(Command command)
    {
        command.Options.Add(configFile);
        foreach (var (option, _) in flags)
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
        IConfiguration configuration;
        try
        {
            configuration = builder.Build();
        }
        catch (InvalidDataException ex)
        {
            throw new ConfigurationException("--config", $"is not valid JSON: {ex.Message}", ex);
        }
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

    private IEnumerable<KeyValuePair<string, string?>> FlagValues(ParseResult parse)
    {
        foreach (var (option, key) in flags)
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
