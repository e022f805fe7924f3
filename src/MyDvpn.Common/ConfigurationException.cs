namespace MyDvpn.Common;

/// <summary>
/// A setting an operator must fix. The CLI prints it and exits with code 2.
/// </summary>
/// <param name="setting">The flag (or config key) at fault, e.g. <c>--tls</c>.</param>
public sealed class ConfigurationException(string setting, string problem, Exception? inner = null)
    : Exception($"{setting}: {problem}", inner)
{
    public string Setting { get; } = setting;

    /// <summary>Each setting at fault when several are: the CLI prints one line for each.</summary>
    public IReadOnlyList<ConfigurationException> Problems { get; private init; } = [];

    /// <summary>Several settings to fix, reported at once rather than one per run; one problem is itself.</summary>
    public static ConfigurationException All(IReadOnlyList<ConfigurationException> problems)
    {
        ArgumentOutOfRangeException.ThrowIfZero(problems.Count);
        if (problems.Count == 1)
            return problems[0];
        return new ConfigurationException(string.Join(", ", problems.Select(p => p.Setting)),
            string.Join("; ", problems.Select(p => p.Message)))
        {
            Problems = problems,
        };
    }
}
