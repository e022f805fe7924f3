using MyDvpn.Protocol.SuperNode;
using MyDvpn.SuperNode.Exits;
using Prometheus;

namespace MyDvpn.SuperNode.Tests.Exits;

/// <summary>The exits' metrics as <c>/metrics</c> prints them, each test over a registry of its own.</summary>
public sealed class ExitMetricsTests
{
    private readonly CollectorRegistry _registry = Metrics.NewCustomRegistry();

    [Fact]
    public async Task A_rotation_is_counted_by_reason_and_outcome_every_one_from_zero_and_only_one_that_moved_the_client_is_timed()
    {
        var metrics = new ExitMetrics(Metrics.WithCustomRegistry(_registry));

        metrics.RotationEnded(RotationReason.ExitLost, moved: true, TimeSpan.FromSeconds(2));
        metrics.RotationEnded(RotationReason.ExitLost, moved: true, TimeSpan.FromMilliseconds(40));
        metrics.RotationEnded(RotationReason.Operator, moved: false, TimeSpan.FromSeconds(45));

        var scraped = await ScrapeAsync(_registry);
        Assert.Equal(2, Value(scraped, """mydvpn_exit_rotations_total{reason="exit_lost",outcome="moved"}"""));
        Assert.Equal(1, Value(scraped, """mydvpn_exit_rotations_total{reason="operator",outcome="failed"}"""));
        Assert.Equal(0, Value(scraped, """mydvpn_exit_rotations_total{reason="exit_lost",outcome="failed"}"""));
        Assert.Equal(0, Value(scraped, """mydvpn_exit_rotations_total{reason="exit_stale",outcome="moved"}"""));
        Assert.Null(Value(scraped, """mydvpn_exit_rotations_total{reason="unspecified",outcome="moved"}"""));
        Assert.Equal(2, Value(scraped, "mydvpn_exit_rotation_seconds_count"));
        Assert.Equal(2.04, Value(scraped, "mydvpn_exit_rotation_seconds_sum")!.Value, precision: 6);
        Assert.Equal(1, Value(scraped, """mydvpn_exit_rotation_seconds_bucket{le="0.05"}"""));
        Assert.Equal(1, Value(scraped, """mydvpn_exit_rotation_seconds_bucket{le="1"}"""));
        Assert.Equal(2, Value(scraped, """mydvpn_exit_rotation_seconds_bucket{le="2.5"}"""));
        Assert.Equal(2, Value(scraped, """mydvpn_exit_rotation_seconds_bucket{le="60"}"""));
    }

    [Theory]
    [InlineData(RotationReason.ExitLost, "exit_lost")]
    [InlineData(RotationReason.ExitDrained, "exit_drained")]
    [InlineData(RotationReason.Operator, "operator")]
    [InlineData(RotationReason.ExitStale, "exit_stale")]
    [InlineData(RotationReason.Unspecified, "unspecified")]
    public void Reason_label_is_the_proto_name_in_lower_case(RotationReason reason, string label) =>
        Assert.Equal(label, ExitMetrics.ReasonLabel(reason));

    [Fact]
    public async Task A_pool_shows_every_state_of_its_region_its_capacity_and_assignments_and_zero_when_it_stops_here()
    {
        var metrics = new ExitMetrics(Metrics.WithCustomRegistry(_registry));

        metrics.PoolSees("us-east", new PoolFigures(new Dictionary<string, int> { [ExitStates.Online] = 2, [ExitStates.Lost] = 1 }, 40, 3, 1));
        metrics.PoolSees("eu-west", new PoolFigures(new Dictionary<string, int> { [ExitStates.Drained] = 1 }, 0, 0, 0));

        var scraped = await ScrapeAsync(_registry);
        Assert.Equal(2, Value(scraped, """mydvpn_exits{region="us-east",state="online"}"""));
        Assert.Equal(1, Value(scraped, """mydvpn_exits{region="us-east",state="lost"}"""));
        Assert.Equal(0, Value(scraped, """mydvpn_exits{region="us-east",state="drained"}"""));
        Assert.Equal(0, Value(scraped, """mydvpn_exits{region="us-east",state="disconnected"}"""));
        Assert.Equal(40, Value(scraped, """mydvpn_exit_capacity{region="us-east"}"""));
        Assert.Equal(3, Value(scraped, """mydvpn_exit_assignments{region="us-east",state="active"}"""));
        Assert.Equal(1, Value(scraped, """mydvpn_exit_assignments{region="us-east",state="setting_up"}"""));
        Assert.Equal(1, Value(scraped, """mydvpn_exits{region="eu-west",state="drained"}"""));

        metrics.ShowAtZero("us-east");

        scraped = await ScrapeAsync(_registry);
        Assert.All(ExitStates.All, state => Assert.Equal(0, Value(scraped, $$"""mydvpn_exits{region="us-east",state="{{state}}"}""")));
        Assert.Equal(0, Value(scraped, """mydvpn_exit_capacity{region="us-east"}"""));
        Assert.Equal(0, Value(scraped, """mydvpn_exit_assignments{region="us-east",state="active"}"""));
        Assert.Equal(1, Value(scraped, """mydvpn_exits{region="eu-west",state="drained"}"""));
        await Promtool.AssertPassesAsync(scraped, "the exits' metrics");
    }

    [Fact]
    public async Task The_served_metrics_time_rotations_in_their_buckets_and_count_every_reason_from_zero()
    {
        // ExitMetrics.Default is the one /metrics serves, over the process's default registry.
        Assert.NotNull(ExitMetrics.Default);

        var scraped = await ScrapeAsync(Metrics.DefaultRegistry);
        var buckets = scraped.Split('\n')
            .Where(line => line.StartsWith("mydvpn_exit_rotation_seconds_bucket{", StringComparison.Ordinal))
            .Select(line => line[(line.IndexOf("le=\"", StringComparison.Ordinal) + 4)..line.IndexOf("\"}", StringComparison.Ordinal)])
            .ToList();
        Assert.Equal([.. ExitMetrics.RotationBuckets.Select(b => b.ToString(System.Globalization.CultureInfo.InvariantCulture)), "+Inf"], buckets);
        Assert.NotNull(Value(scraped, """mydvpn_exit_rotations_total{reason="exit_stale",outcome="failed"}"""));
    }

    private static Task<string> ScrapeAsync(CollectorRegistry registry) => MetricsText.ScrapeAsync(registry);

    private static double? Value(string scraped, string series) => MetricsText.Value(scraped, series);
}
