using System.Text.Json;
using YamlDotNet.Serialization;

namespace MyDvpn.Packaging.Tests;

/// <summary>
/// docker/prometheus (scrape configuration, alert rules and their unit tests) and docker/grafana (the dashboard and its
/// provisioning), checked by promtool and against docker/compose.yaml. Whether the series they query are ones the nodes
/// export is MyDvpn.IntegrationTests' MonitoringMetricsTests: it starts real nodes.
/// </summary>
public sealed class MonitoringFilesTests
{
    private static readonly string PrometheusDirectory = Repository.PathOf("docker/prometheus");
    private static readonly string DashboardFile = Repository.PathOf("docker/grafana/mydvpn-dashboard.json");

    /// <summary>The jobs of prometheus.yml, by the command of the nodes they scrape.</summary>
    private static readonly Dictionary<string, string> JobOf = new()
    {
        ["base"] = "mydvpn-base",
        ["super"] = "mydvpn-supernode",
        ["peer"] = "mydvpn-peer",
    };

    [Fact]
    public async Task Prometheus_configuration_and_alert_rules_pass_promtool_check()
    {
        var config = await Promtool.AssertRunsAsync(PrometheusDirectory, "check", "config", "prometheus.yml");
        Assert.Contains("alerts.yml", config, StringComparison.Ordinal);
        var rules = await Promtool.AssertRunsAsync(PrometheusDirectory, "check", "rules", "alerts.yml");
        Assert.Contains($"SUCCESS: {AlertRules().Count} rules found", rules, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Each_alert_fires_on_its_failure_and_stays_quiet_on_healthy_input()
    {
        await Promtool.AssertRunsAsync(PrometheusDirectory, "test", "rules", "alerts.test.yml");

        // promtool compares the alerts each check expects with those that fire: a check of no alerts is one where the rule
        // must stay quiet. Every rule needs both kinds, or a rule that always (or never) fires would pass.
        var checks = Yaml(Path.Combine(PrometheusDirectory, "alerts.test.yml"))["tests"].AsList()
            .SelectMany(test => test.AsMap()["alert_rule_test"].AsList())
            .Select(check => check.AsMap())
            .Select(check => (Alert: (string)check["alertname"], Fires: check.TryGetValue("exp_alerts", out var expected) && expected is List<object> { Count: > 0 }))
            .ToList();
        foreach (var rule in AlertRules())
        {
            var name = (string)rule["alert"];
            Assert.True(checks.Any(check => check.Alert == name && check.Fires), $"alerts.test.yml never expects {name} to fire");
            Assert.True(checks.Any(check => check.Alert == name && !check.Fires), $"alerts.test.yml never expects {name} to stay quiet");
        }
    }

    [Fact]
    public void Every_alert_waits_has_a_severity_and_tells_what_to_do()
    {
        var rules = AlertRules();
        Assert.Superset(new HashSet<string> { "MyDvpnSuperNodeDown", "MyDvpnAuthRefusalsSpiking", "MyDvpnExitsExhausted", "MyDvpnCommandsFailing" },
            rules.Select(rule => (string)rule["alert"]).ToHashSet());
        foreach (var rule in rules)
        {
            var name = (string)rule["alert"];
            Assert.True(rule.TryGetValue("for", out var wait) && wait is string { Length: > 0 }, $"{name} has no for:");
            Assert.Contains(rule["labels"].AsMap()["severity"] as string, new[] { "warning", "critical" });
            var annotations = rule["annotations"].AsMap();
            Assert.True(annotations.TryGetValue("summary", out var summary) && summary is string { Length: > 10 }, $"{name} has no summary");
            Assert.True(annotations.TryGetValue("description", out var description) && description is string { Length: > 80 },
                $"{name}'s description does not say what to do");
        }
    }

    [Fact]
    public void Prometheus_scrapes_every_node_of_the_compose_network_on_its_metrics_address_with_its_region()
    {
        var compose = ComposeFile.Load(Repository.PathOf("docker/compose.yaml"));
        var scraped = Yaml(Path.Combine(PrometheusDirectory, "prometheus.yml"))["scrape_configs"].AsList()
            .Select(job => job.AsMap())
            .SelectMany(job => job["static_configs"].AsList().Select(config => config.AsMap()).SelectMany(config =>
                config["targets"].AsList().Select(target => (
                    Job: (string)job["job_name"],
                    Path: job.TryGetValue("metrics_path", out var path) ? (string)path : "/metrics",
                    Target: (string)target,
                    Labels: config.TryGetValue("labels", out var labels)
                        ? labels.AsMap().ToDictionary(l => (string)l.Key, l => (string)l.Value)
                        : new Dictionary<string, string>()))))
            .ToList();
        var nodes = compose.Services.Values.Where(service => service.Image == "mydvpn" && service.Command.Count > 0 && JobOf.ContainsKey(service.Command[0])).ToList();
        Assert.Equal(JobOf.Keys.Order(), nodes.Select(node => node.Command[0]).Distinct().Order());
        foreach (var node in nodes)
        {
            var metrics = CommandTree.ValueOf(node.Command, "--metrics");
            Assert.True(metrics is not null, $"{node.Name} serves no /metrics (--metrics)");
            var target = $"{node.Address}:{metrics.Split(':')[^1]}";
            var scrape = scraped.Where(s => s.Target == target).ToList();
            Assert.True(scrape.Count == 1, $"{node.Name} serves /metrics on {target}; prometheus.yml scrapes it {scrape.Count} times");
            var (job, path, _, labels) = scrape[0];
            Assert.Equal(JobOf[node.Command[0]], job);
            Assert.Equal("/metrics", path);
            var region = CommandTree.ValueOf(node.Command, "--region");
            if (node.Command[0] == "base")
                Assert.DoesNotContain("region", labels.Keys);
            else
                Assert.Equal(region, labels.GetValueOrDefault("region"));
            if (node.Command[0] == "peer")
                Assert.Equal(CommandTree.ValueOf(node.Command, "--role"), labels.GetValueOrDefault("role"));
        }
        Assert.Equal(nodes.Count, scraped.Count);
    }

    [Fact]
    public void Monitoring_services_run_only_in_their_profile_with_the_files_of_this_repository()
    {
        var compose = ComposeFile.Load(Repository.PathOf("docker/compose.yaml"));
        var prometheus = compose.Services["prometheus"];
        var grafana = compose.Services["grafana"];
        foreach (var service in new[] { prometheus, grafana })
            Assert.Equal(["monitoring"], service.Strings("profiles"));
        Assert.Equal("./prometheus", prometheus.MountedAt("/etc/prometheus"));
        Assert.Contains("--config.file=/etc/prometheus/prometheus.yml", prometheus.Command);
        Assert.Equal("./grafana/provisioning", grafana.MountedAt("/etc/grafana/provisioning"));
        Assert.Equal("./grafana/mydvpn-dashboard.json", grafana.MountedAt("/var/lib/grafana/dashboards/mydvpn-dashboard.json"));

        var provisioning = Repository.PathOf("docker/grafana/provisioning");
        var dashboards = Yaml(Path.Combine(provisioning, "dashboards/mydvpn.yml"))["providers"].AsList().Single().AsMap();
        Assert.Equal("/var/lib/grafana/dashboards", dashboards["options"].AsMap()["path"]);
        var source = Yaml(Path.Combine(provisioning, "datasources/prometheus.yml"))["datasources"].AsList().Single().AsMap();
        Assert.Equal("prometheus", source["type"]);
        Assert.Equal($"http://{prometheus.Address}:9090", source["url"]);
    }

    [Fact]
    public void Dashboard_parses_and_every_panel_queries_the_prometheus_of_its_data_source_variable()
    {
        using var dashboard = JsonDocument.Parse(File.ReadAllText(DashboardFile));
        var root = dashboard.RootElement;
        Assert.InRange(root.GetProperty("schemaVersion").GetInt32(), 36, 41);
        var input = Assert.Single(root.GetProperty("__inputs").EnumerateArray());
        Assert.Equal("DS_PROMETHEUS", input.GetProperty("name").GetString());
        Assert.Equal("prometheus", input.GetProperty("pluginId").GetString());
        var variables = root.GetProperty("templating").GetProperty("list").EnumerateArray().ToDictionary(v => v.GetProperty("name").GetString()!);
        Assert.Equal("datasource", variables["DS_PROMETHEUS"].GetProperty("type").GetString());
        Assert.Equal("prometheus", variables["DS_PROMETHEUS"].GetProperty("query").GetString());
        Assert.Equal("query", variables["region"].GetProperty("type").GetString());

        var panels = Panels(root).ToList();
        Assert.Equal(panels.Count, panels.Select(panel => panel.GetProperty("id").GetInt32()).Distinct().Count());
        var queried = panels.Where(panel => panel.GetProperty("type").GetString() != "row").ToList();
        Assert.True(queried.Count >= 10, $"{queried.Count} panels");
        foreach (var panel in queried)
        {
            var title = panel.GetProperty("title").GetString();
            Assert.Equal("${DS_PROMETHEUS}", panel.GetProperty("datasource").GetProperty("uid").GetString());
            var targets = panel.TryGetProperty("targets", out var t) ? t.EnumerateArray().ToList() : [];
            Assert.True(targets.Count > 0, $"panel {title} has no target");
            foreach (var target in targets)
            {
                Assert.True(target.TryGetProperty("expr", out var expr) && expr.GetString() is { Length: > 0 }, $"a target of panel {title} has no expression");
                Assert.Equal("${DS_PROMETHEUS}", target.GetProperty("datasource").GetProperty("uid").GetString());
            }
            Assert.Equal(targets.Count, targets.Select(target => target.GetProperty("refId").GetString()).Distinct().Count());
        }

        // What the issue asks it to show: streams, refusals by reason, command latency, the exit pool, relay bytes, failovers.
        var expressions = string.Join("\n", Expressions(root));
        foreach (var wanted in new[]
                 {
                     "mydvpn_sessions", "mydvpn_auth_refusals_total", "mydvpn_command_seconds_bucket", "mydvpn_exits{", "mydvpn_exit_capacity",
                     "mydvpn_exit_assignments", "mydvpn_relay_bytes_total", "mydvpn_exit_rotations_total", "mydvpn_exit_rotation_seconds_bucket",
                 })
            Assert.Contains(wanted, expressions, StringComparison.Ordinal);
        Assert.Contains("histogram_quantile(0.99, sum by (le, kind) (rate(mydvpn_command_seconds_bucket", expressions, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Every_dashboard_expression_is_PromQL_promtool_accepts()
    {
        using var dashboard = JsonDocument.Parse(File.ReadAllText(DashboardFile));
        var expressions = Expressions(dashboard.RootElement).ToList();
        // Grafana's variables as Grafana fills them in; each expression a recording rule, which promtool parses.
        var rules = new
        {
            groups = new[]
            {
                new
                {
                    name = "dashboard",
                    rules = expressions.Select((expr, i) => new Dictionary<string, string>
                    {
                        ["record"] = $"dashboard:expression_{i}",
                        ["expr"] = expr.Replace("$__rate_interval", "1m", StringComparison.Ordinal)
                            .Replace("$region", "eu-west|us-east", StringComparison.Ordinal),
                    }).ToList(),
                },
            },
        };
        using var directory = new TempDirectory();
        await File.WriteAllTextAsync(Path.Combine(directory.Path, "dashboard.yml"), new SerializerBuilder().Build().Serialize(rules));
        var output = await Promtool.AssertRunsAsync(directory.Path, "check", "rules", "dashboard.yml");
        Assert.Contains($"SUCCESS: {expressions.Count} rules found", output, StringComparison.Ordinal);
    }

    private static IEnumerable<JsonElement> Panels(JsonElement root) =>
        root.GetProperty("panels").EnumerateArray().SelectMany(panel =>
            panel.TryGetProperty("panels", out var nested) ? nested.EnumerateArray().Prepend(panel) : [panel]);

    private static IEnumerable<string> Expressions(JsonElement root) =>
        Panels(root).Where(panel => panel.TryGetProperty("targets", out _))
            .SelectMany(panel => panel.GetProperty("targets").EnumerateArray())
            .Select(target => target.GetProperty("expr").GetString()!);

    private static List<Dictionary<object, object>> AlertRules() =>
        Yaml(Path.Combine(PrometheusDirectory, "alerts.yml"))["groups"].AsList()
            .SelectMany(group => group.AsMap()["rules"].AsList())
            .Select(rule => rule.AsMap())
            .ToList();

    private static Dictionary<object, object> Yaml(string path) =>
        new DeserializerBuilder().Build().Deserialize<Dictionary<object, object>>(File.ReadAllText(path));
}

internal static class YamlNodes
{
    public static List<object> AsList(this object node) => (List<object>)node;

    public static Dictionary<object, object> AsMap(this object node) => (Dictionary<object, object>)node;
}
