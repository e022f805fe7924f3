using MyDvpn.Protocol.Control;
using MyDvpn.SuperNode.Edge;
using Prometheus;

namespace MyDvpn.SuperNode.Tests.Edge;

public sealed class SessionMetricsTests
{
    [Fact]
    public async Task Sessions_are_shown_by_region_and_role_and_zero_for_a_role_without_one()
    {
        var registry = Metrics.NewCustomRegistry();
        var metrics = new SessionMetrics(Metrics.WithCustomRegistry(registry));
        var streams = new LocalStreams("sn-1", "eu-west");
        streams.Publish(new StreamInfo("client-1", PeerRole.Client, "s-1", "192.0.2.1:4000", DateTimeOffset.UnixEpoch, null));
        streams.Publish(new StreamInfo("client-2", PeerRole.Client, "s-2", "192.0.2.2:4000", DateTimeOffset.UnixEpoch, null));
        streams.Publish(new StreamInfo("exit-1", PeerRole.Exit, "s-3", "192.0.2.3:4000", DateTimeOffset.UnixEpoch, null));

        metrics.Show(streams);
        var scraped = await MetricsText.ScrapeAsync(registry);
        Assert.Equal(2, MetricsText.Value(scraped, """mydvpn_sessions{region="eu-west",role="client"}"""));
        Assert.Equal(1, MetricsText.Value(scraped, """mydvpn_sessions{region="eu-west",role="exit"}"""));
        Assert.Equal(0, MetricsText.Value(scraped, """mydvpn_sessions{region="eu-west",role="both"}"""));

        streams.Remove("s-3");
        metrics.Show(streams);
        Assert.Equal(0, MetricsText.Value(await MetricsText.ScrapeAsync(registry), """mydvpn_sessions{region="eu-west",role="exit"}"""));
    }

    [Fact]
    public void The_kinds_a_stream_limit_is_named_by_are_the_kinds_listed_for_metrics()
    {
        var limits = new StreamMessageLimits(new StreamMessageRates(), TimeProvider.System);

        var named = Enum.GetValues<ControlMessage.PayloadOneofCase>().Select(limits.LimitOf).OfType<(string Kind, MessageRate Rate)>()
            .Select(limit => limit.Kind).Append(StreamMessageLimits.StrayResponses).Distinct().Order();

        Assert.Equal(StreamMessageLimits.Kinds.Order(), named);
    }
}
