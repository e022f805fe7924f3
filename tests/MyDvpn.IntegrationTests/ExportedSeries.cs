using System.Text.RegularExpressions;

namespace MyDvpn.IntegrationTests;

/// <summary>
/// The series real nodes export, from their <c>/metrics</c> text: each family with its type, each sample name with the label
/// names its samples carry, and the Prometheus job that scrapes the node, whose target labels the series get too.
/// </summary>
internal sealed partial class ExportedSeries
{
    /// <summary>The labels Prometheus gives every series it scrapes.</summary>
    private static readonly string[] TargetLabels = ["job", "instance"];

    private readonly Dictionary<string, string> types = new(StringComparer.Ordinal);
    private readonly Dictionary<string, HashSet<string>> labelsOf = new(StringComparer.Ordinal);
    private readonly Dictionary<string, HashSet<string>> jobsOf = new(StringComparer.Ordinal);
    private readonly Dictionary<string, HashSet<string>> targetLabelsOf = new(StringComparer.Ordinal);

    /// <summary>Adds what a node scraped by <paramref name="job"/>, whose targets carry <paramref name="targetLabels"/>, exports.</summary>
    public void Add(string job, IEnumerable<string> targetLabels, string scraped)
    {
        targetLabelsOf[job] = [.. TargetLabels, .. targetLabels];
        foreach (var line in scraped.Split('\n'))
        {
            if (line.StartsWith("# TYPE ", StringComparison.Ordinal))
            {
                var parts = line.Split(' ');
                types[parts[2]] = parts[3];
                continue;
            }
            if (line.Length == 0 || line[0] == '#')
                continue;
            var name = SampleName().Match(line).Value;
            var braces = line.IndexOf('{', StringComparison.Ordinal);
            var labels = braces == name.Length ? LabelName().Matches(line[braces..line.LastIndexOf('}')]).Select(m => m.Groups[1].Value) : [];
            labelsOf.TryAdd(name, new HashSet<string>(StringComparer.Ordinal));
            labelsOf[name].UnionWith(labels);
            jobsOf.TryAdd(name, new HashSet<string>(StringComparer.Ordinal));
            jobsOf[name].Add(job);
        }
    }

    /// <summary>
    /// Why <paramref name="selector"/> selects nothing the nodes export (a name no node exports, a histogram named without
    /// <c>_bucket</c>/<c>_sum</c>/<c>_count</c>, a matcher on a label its series do not carry); null when it selects their series.
    /// </summary>
    public string? Refusal(PromQl.Selector selector)
    {
        var name = selector.Metric;
        string[] allowed;
        if (name == "up")
        {
            // Prometheus's own series, one per target, with the target's labels.
            allowed = [.. targetLabelsOf.Values.SelectMany(labels => labels).Distinct()];
        }
        else
        {
            var family = FamilyOf(name);
            if (family is null)
                return types.TryGetValue(name, out var type)
                    ? $"{name} is a {type}: its series are {name}_bucket, {name}_sum and {name}_count, none is {name} itself"
                    : $"no node exports {name}";
            if (!labelsOf.TryGetValue(name, out var labels))
                return $"{family} ({types[family]}) has no series {name} on any node";
            allowed = [.. labels, .. jobsOf[name].SelectMany(job => targetLabelsOf[job])];
        }
        var unknown = selector.Labels.Except(allowed).ToList();
        return unknown.Count == 0 ? null : $"{name} has no label {string.Join(", ", unknown)} (it has {string.Join(", ", allowed.Distinct().Order())})";
    }

    /// <summary>The family a sample name belongs to: itself for a counter, gauge or untyped series; a histogram's or summary's for its parts.</summary>
    private string? FamilyOf(string name)
    {
        if (types.TryGetValue(name, out var type))
            return type is "histogram" or "summary" ? null : name;
        foreach (var (suffix, of) in new[] { ("_bucket", new[] { "histogram" }), ("_sum", ["histogram", "summary"]), ("_count", ["histogram", "summary"]) })
        {
            if (name.EndsWith(suffix, StringComparison.Ordinal) && types.TryGetValue(name[..^suffix.Length], out var baseType) && of.Contains(baseType))
                return name[..^suffix.Length];
        }
        return null;
    }

    [GeneratedRegex(@"^[a-zA-Z_:][a-zA-Z0-9_:]*")]
    private static partial Regex SampleName();

    [GeneratedRegex(@"([a-zA-Z_][a-zA-Z0-9_]*)=""")]
    private static partial Regex LabelName();
}
