using System.Text.Json;
using System.Text.RegularExpressions;
using MyDvpn.Common;
using MyDvpn.Security;
using Xunit.Abstractions;
using YamlDotNet.Serialization;

namespace MyDvpn.IntegrationTests;

/// <summary>
/// The series docker/prometheus/alerts.yml and docker/grafana/mydvpn-dashboard.json query are ones real nodes export: a
/// BaseNode, a SuperNode and a peer agent started as MetricsTests starts them, each scraped as prometheus.yml's job for it
/// scrapes it. (promtool's checks of the files themselves are MyDvpn.Packaging.Tests' MonitoringFilesTests.)
/// </summary>
public sealed partial class MonitoringMetricsTests(ITestOutputHelper output)
{
    private const string Region = "monitoring";
    private const string AgentId = "monitoring-agent";

    private static readonly string Root = FindRoot();

    [Fact]
    public async Task Every_series_the_alerts_and_the_dashboard_query_is_one_a_real_node_exports()
    {
        var queries = Queries();
        var selectors = queries.SelectMany(query => PromQl.Selectors(query.Expression).Select(selector => (query.Where, Selector: selector))).ToList();
        var names = selectors.Select(s => s.Selector.Metric).ToHashSet();
        Assert.True(names.Count >= 15, $"the alerts and the dashboard read only {string.Join(", ", names)}");

        await using var network = new TestNetwork(output);
        var baseNode = network.BaseNode();
        await network.StartAsync(baseNode);
        var super = network.SuperNode("sn-monitoring", Region, baseNode);
        await network.StartAsync(super);
        var agentMetrics = new HostPort("127.0.0.1", Cli.Demo.NodeProcess.FreeTcpPort());
        await network.StartAgentAsync(baseNode, super, AgentId, "client", Region, "--metrics", agentMetrics.ToString());
        await Eventually.Async(async () => (await MetricsScrape.TextOrEmptyAsync(agentMetrics)).Contains("\nmydvpn_peer_connected 1", StringComparison.Ordinal),
            "the agent is connected", TimeSpan.FromSeconds(60));

        var jobs = ScrapeJobs();
        var exported = new ExportedSeries();
        foreach (var (job, node) in new[] { ("mydvpn-base", baseNode.Metrics), ("mydvpn-supernode", super.Metrics), ("mydvpn-peer", agentMetrics) })
        {
            Assert.True(jobs.ContainsKey(job), $"prometheus.yml has no job {job}");
            exported.Add(job, jobs[job], await MetricsScrape.TextAsync(node));
        }

        var refused = selectors
            .Select(s => (s.Where, Why: exported.Refusal(s.Selector)))
            .Where(s => s.Why is not null)
            .Select(s => $"{s.Where}: {s.Why}")
            .Distinct()
            .ToList();
        output.WriteLine($"{selectors.Count} selectors in {queries.Count} expressions, of {names.Count} series: {string.Join(", ", names.Order())}");
        Assert.True(refused.Count == 0, "series the nodes do not export:\n" + string.Join("\n", refused));
    }

    [Fact]
    public void PromQL_selectors_are_the_series_an_expression_reads()
    {
        Assert.Equal(["mydvpn_command_seconds_bucket {region}"],
            Read("""histogram_quantile(0.99, sum by (le, kind) (rate(mydvpn_command_seconds_bucket{region=~"$region"}[$__rate_interval])))"""));
        Assert.Equal(["mydvpn_exit_capacity {}", "mydvpn_exit_assignments {}", "mydvpn_exits {}"],
            Read("(sum by (region) (mydvpn_exit_capacity) - sum by (region) (mydvpn_exit_assignments)) <= 0 and on (region) sum by (region) (mydvpn_exits) > 0"));
        Assert.Equal(["up {job}"], Read("""absent(up{job="mydvpn-supernode"})"""));
        Assert.Equal(["a_total {c,job}", "b {}"],
            Read("""sum without (instance) (rate(a_total{job='x', c!~"y|z", }[5m] offset 1h)) / on (region) group_left (role) b * 1e3"""));
        Assert.Equal(["x {}"], Read("topk(3, sum(x)) > bool 0.5"));
        Assert.Throws<FormatException>(() => PromQl.Selectors("""{__name__="x"}"""));

        static string[] Read(string expression) =>
            [.. PromQl.Selectors(expression).Select(s => $"{s.Metric} {{{string.Join(",", s.Labels.Order(StringComparer.Ordinal))}}}")];
    }

    [Fact]
    public void A_histogram_is_read_through_its_parts_and_a_matcher_only_on_labels_its_series_carry()
    {
        var exported = new ExportedSeries();
        exported.Add("mydvpn-supernode", ["region"], """
            # HELP h_seconds A histogram.
            # TYPE h_seconds histogram
            h_seconds_sum{kind="a"} 0
            h_seconds_count{kind="a"} 0
            h_seconds_bucket{kind="a",le="1"} 0
            h_seconds_bucket{kind="a",le="+Inf"} 0
            # HELP c_total A counter.
            # TYPE c_total counter
            c_total 0
            """.Replace("\r", "", StringComparison.Ordinal));

        Assert.Null(exported.Refusal(new("h_seconds_bucket", new HashSet<string> { "le", "kind", "region", "instance" })));
        Assert.Null(exported.Refusal(new("h_seconds_count", new HashSet<string>())));
        Assert.Null(exported.Refusal(new("c_total", new HashSet<string> { "job" })));
        Assert.Null(exported.Refusal(new("up", new HashSet<string> { "job", "region" })));
        Assert.Contains("is a histogram", exported.Refusal(new("h_seconds", new HashSet<string>())));
        Assert.Contains("no node exports", exported.Refusal(new("c_total_count", new HashSet<string>())));
        Assert.Contains("no node exports", exported.Refusal(new("c", new HashSet<string>())));
        Assert.Contains("no label role", exported.Refusal(new("c_total", new HashSet<string> { "role" })));
    }

    /// <summary>Every PromQL expression of the alert rules, the dashboard's panels and its <c>label_values</c> variables, and where it is.</summary>
    private static List<(string Where, string Expression)> Queries()
    {
        var queries = new List<(string, string)>();
        var alerts = new DeserializerBuilder().Build().Deserialize<Dictionary<string, List<Dictionary<string, object>>>>(
            File.ReadAllText(Path.Combine(Root, "docker/prometheus/alerts.yml")));
        foreach (var group in alerts["groups"])
        {
            foreach (var rule in (List<object>)group["rules"])
            {
                var fields = (Dictionary<object, object>)rule;
                queries.Add(($"alert {fields["alert"]}", (string)fields["expr"]));
            }
        }

        using var dashboard = JsonDocument.Parse(File.ReadAllText(Path.Combine(Root, "docker/grafana/mydvpn-dashboard.json")));
        var panels = dashboard.RootElement.GetProperty("panels").EnumerateArray()
            .SelectMany(panel => panel.TryGetProperty("panels", out var nested) ? nested.EnumerateArray().Prepend(panel) : [panel]);
        foreach (var panel in panels.Where(panel => panel.TryGetProperty("targets", out _)))
        {
            foreach (var target in panel.GetProperty("targets").EnumerateArray())
                queries.Add(($"panel {panel.GetProperty("title").GetString()}", target.GetProperty("expr").GetString()!));
        }
        foreach (var variable in dashboard.RootElement.GetProperty("templating").GetProperty("list").EnumerateArray())
        {
            if (variable.GetProperty("type").GetString() != "query")
                continue;
            var definition = variable.GetProperty("definition").GetString()!;
            var labelValues = LabelValues().Match(definition);
            Assert.True(labelValues.Success, $"variable {variable.GetProperty("name")}: {definition} is no label_values(series, label)");
            // label_values(SERIES, LABEL) reads LABEL of SERIES: a selector with a matcher on it says as much.
            var series = labelValues.Groups["series"].Value;
            var label = labelValues.Groups["label"].Value;
            queries.Add(($"variable {variable.GetProperty("name")}", series.Contains('{', StringComparison.Ordinal)
                ? series.Insert(series.IndexOf('{', StringComparison.Ordinal) + 1, $"{label}=~\".+\", ")
                : $"{series}{{{label}=~\".+\"}}"));
        }
        return queries;
    }

    /// <summary>prometheus.yml's jobs and the labels their targets carry.</summary>
    private static Dictionary<string, HashSet<string>> ScrapeJobs()
    {
        var config = new DeserializerBuilder().Build().Deserialize<Dictionary<string, object>>(
            File.ReadAllText(Path.Combine(Root, "docker/prometheus/prometheus.yml")));
        return ((List<object>)config["scrape_configs"]).Cast<Dictionary<object, object>>().ToDictionary(
            job => (string)job["job_name"],
            job => ((List<object>)job["static_configs"]).Cast<Dictionary<object, object>>()
                .SelectMany(c => c.TryGetValue("labels", out var labels) ? ((Dictionary<object, object>)labels).Keys.Cast<string>() : [])
                .ToHashSet(StringComparer.Ordinal));
    }

    private static string FindRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "myDvpn.sln")))
                return directory.FullName;
        }
        throw new InvalidOperationException($"no myDvpn.sln above {AppContext.BaseDirectory}: the test reads the repository's docker/ files");
    }

    [GeneratedRegex(@"^label_values\((?<series>.+),\s*(?<label>[a-zA-Z_][a-zA-Z0-9_]*)\s*\)$")]
    private static partial Regex LabelValues();
}
