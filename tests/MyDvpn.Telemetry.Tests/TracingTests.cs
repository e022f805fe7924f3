using System.Diagnostics;
using MyDvpn.Common;
using OpenTelemetry;
using OpenTelemetry.Trace;

namespace MyDvpn.Telemetry.Tests;

public sealed class TracingTests
{
    [Theory]
    [InlineData("127.0.0.1:4318", "not an http:// or https:// URL")]
    [InlineData("ftp://127.0.0.1:4318", "not an http:// or https:// URL")]
    [InlineData("collector", "not an http:// or https:// URL")]
    [InlineData("http://127.0.0.1", "names no port")]
    [InlineData("http://127.0.0.1:0", "names no port")]
    [InlineData("http://[::1]", "names no port")]
    [InlineData("http://127.0.0.1:4318/v1/traces", "HOST:PORT alone")]
    [InlineData("http://127.0.0.1:4318/?x=1", "HOST:PORT alone")]
    [InlineData("http://user@127.0.0.1:4318", "HOST:PORT alone")]
    public void An_otlp_endpoint_that_is_not_http_host_port_is_refused_naming_otlp(string value, string why)
    {
        var error = Assert.Throws<ConfigurationException>(() => Tracing.ParseOtlp(value));

        Assert.Equal("--otlp", error.Setting);
        Assert.Contains(value, error.Message, StringComparison.Ordinal);
        Assert.Contains(why, error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("http://127.0.0.1:4318", "http://127.0.0.1:4318/")]
    [InlineData(" https://collector.example:443/ ", "https://collector.example/")]
    [InlineData("http://[::1]:4318", "http://[::1]:4318/")]
    public void An_otlp_endpoint_is_the_collectors_base_url(string value, string expected) =>
        Assert.Equal(new Uri(expected), Tracing.ParseOtlp(value));

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("  ")]
    public void No_otlp_endpoint_is_no_tracing(string? value) => Assert.Null(Tracing.ParseOtlp(value));

    [Fact]
    public async Task A_detached_span_continues_the_traceparent_it_is_given_and_leaves_the_current_span_alone()
    {
        var exported = new List<Activity>();
        using var provider = Sdk.CreateTracerProviderBuilder().AddSource(Tracing.SourceName).AddInMemoryExporter(exported).Build();
        using var unrelated = new Activity("unrelated").Start();
        var issuer = ActivityContext.Parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", null);

        var span = Tracing.StartDetached("apply SetupExit", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        Assert.Same(unrelated, Activity.Current);
        var root = Tracing.StartDetached("ExitRequest");
        Assert.Same(unrelated, Activity.Current);
        Activity? currentInWork = null;
        var answer = await Tracing.RunIn(span, async () =>
        {
            await Task.Yield();
            currentInWork = Activity.Current;
            return 42;
        });
        Tracing.End(root);

        Assert.Equal(42, answer);
        Assert.Same(span, currentInWork);
        Assert.Same(unrelated, Activity.Current);
        Assert.Equal(issuer.TraceId, span!.TraceId);
        Assert.Equal(issuer.SpanId, span.ParentSpanId);
        // The root is no child of the span current where it started.
        Assert.Equal(default, root!.ParentSpanId);
        Assert.NotEqual(unrelated.TraceId, root.TraceId);
        Assert.Equal(["apply SetupExit", "ExitRequest"], exported.Select(a => a.DisplayName));
    }

    [Theory]
    [InlineData(ActivityKind.Client, SamplingDecision.Drop)]
    [InlineData(ActivityKind.Server, SamplingDecision.RecordAndSample)]
    [InlineData(ActivityKind.Internal, SamplingDecision.RecordAndSample)]
    [InlineData(ActivityKind.Consumer, SamplingDecision.RecordAndSample)]
    public void A_call_made_outside_any_flow_starts_no_trace(ActivityKind kind, SamplingDecision expected)
    {
        var root = new SamplingParameters(default, ActivityTraceId.CreateRandom(), "call", kind);

        Assert.Equal(expected, new NoCallRoots().ShouldSample(root).Decision);
    }

    [Fact]
    public void Without_a_tracer_provider_no_span_is_started()
    {
        // No provider listens to the source in this test (the others dispose theirs): nothing is recorded or carried.
        Assert.False(Tracing.Source.HasListeners());
        Assert.Null(Tracing.StartDetached("ExitRequest"));
        Assert.Null(Tracing.TraceParentOf(null));
    }
}
