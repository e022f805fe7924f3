namespace MyDvpn.Common;

/// <summary>
/// A setting an operator must fix. The CLI prints it and exits with code 2.
/// </summary>
/// <param name="setting">The flag (or config key) at fault, e.g. <c>--tls</c>.</param>
public sealed class ConfigurationException(string setting, string problem, Exception? inner = null)
    : Exception($"{setting}: {problem}", inner)
{
    public string Setting { get; } = setting;
}
