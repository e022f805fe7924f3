using Grpc.Core;
using MyDvpn.BaseNode.Enrollment;
using Prometheus;

namespace MyDvpn.BaseNode.Tests.Enrollment;

/// <summary>The BaseNode's enrollment metrics as <c>/metrics</c> prints them, each test over a registry of its own.</summary>
public sealed class EnrollmentMetricsTests
{
    private readonly CollectorRegistry _registry = Metrics.NewCustomRegistry();

    [Fact]
    public async Task Tokens_and_redemptions_are_at_zero_for_every_role_and_outcome_before_the_first()
    {
        _ = new EnrollmentMetrics(Metrics.WithCustomRegistry(_registry));

        var scraped = await MetricsText.ScrapeAsync(_registry);

        foreach (var role in new[] { "client", "exit", "both" })
            Assert.Equal(0, MetricsText.Value(scraped, $$"""mydvpn_tokens_created_total{role="{{role}}"}"""));
        foreach (var outcome in new[] { "ok", "RATE_LIMITED", "REVOKED", "BAD_TOKEN", "TOKEN_EXPIRED", "TOKEN_USED_UP", "ROLE_NOT_ALLOWED", "WRONG_REGION" })
            Assert.Equal(0, MetricsText.Value(scraped, $$"""mydvpn_enrollment_redemptions_total{outcome="{{outcome}}"}"""));
        await Promtool.AssertPassesAsync(scraped, "the enrollment metrics");
    }

    [Fact]
    public async Task A_token_is_counted_by_its_role_and_a_redemption_by_its_outcome()
    {
        var metrics = new EnrollmentMetrics(Metrics.WithCustomRegistry(_registry));

        metrics.TokenCreated(EnrollmentRole.Exit);
        metrics.Redeemed(EnrollmentMetrics.Ok);
        metrics.Redeemed("TOKEN_USED_UP");

        var scraped = await MetricsText.ScrapeAsync(_registry);
        Assert.Equal(1, MetricsText.Value(scraped, """mydvpn_tokens_created_total{role="exit"}"""));
        Assert.Equal(0, MetricsText.Value(scraped, """mydvpn_tokens_created_total{role="client"}"""));
        Assert.Equal(1, MetricsText.Value(scraped, """mydvpn_enrollment_redemptions_total{outcome="ok"}"""));
        Assert.Equal(1, MetricsText.Value(scraped, """mydvpn_enrollment_redemptions_total{outcome="TOKEN_USED_UP"}"""));
    }

    [Fact]
    public async Task Every_known_region_shows_each_role_and_state_and_zero_where_no_peer_is()
    {
        var metrics = new EnrollmentMetrics(Metrics.WithCustomRegistry(_registry));

        await metrics.RefreshPeersAsync(
            _ => Task.FromResult<IEnumerable<string>>(["eu-west", "us-east"]),
            _ => Task.FromResult(new PeerCounts([new PeerCount("eu-west", EnrollmentRole.Client, Connected: true, 2)])),
            CancellationToken.None);

        var scraped = await MetricsText.ScrapeAsync(_registry);
        Assert.Equal(2, MetricsText.Value(scraped, """mydvpn_peers{region="eu-west",role="client",state="online"}"""));
        Assert.Equal(0, MetricsText.Value(scraped, """mydvpn_peers{region="eu-west",role="client",state="offline"}"""));
        Assert.Equal(0, MetricsText.Value(scraped, """mydvpn_peers{region="us-east",role="both",state="online"}"""));
        Assert.Equal(12, scraped.Split('\n').Count(line => line.StartsWith("mydvpn_peers{", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task A_registry_that_does_not_answer_leaves_the_last_figures()
    {
        var metrics = new EnrollmentMetrics(Metrics.WithCustomRegistry(_registry));
        await metrics.RefreshPeersAsync(
            _ => Task.FromResult<IEnumerable<string>>(["eu-west"]),
            _ => Task.FromResult(new PeerCounts([new PeerCount("eu-west", EnrollmentRole.Exit, Connected: false, 1)])),
            CancellationToken.None);

        await metrics.RefreshPeersAsync(
            _ => Task.FromResult<IEnumerable<string>>(["eu-west"]),
            _ => Task.FromException<PeerCounts>(new RpcException(new Status(StatusCode.Unavailable, "cluster forming"))),
            CancellationToken.None);

        var scraped = await MetricsText.ScrapeAsync(_registry);
        Assert.Equal(1, MetricsText.Value(scraped, """mydvpn_peers{region="eu-west",role="exit",state="offline"}"""));
    }
}
