using System.Diagnostics;
using System.Globalization;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using MyDvpn.Common;
using OpenTelemetry.Exporter;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace MyDvpn.Telemetry;

/// <summary>
/// The OpenTelemetry traces of every <c>mydvpn</c> process (ARCHITECTURE §6): one <see cref="ActivitySource"/>,
/// <see cref="SourceName"/>, for the spans of our own flows; ASP.NET Core's server spans for the gRPC calls a node serves and
/// HttpClient's client spans for the ones it makes, which carry the W3C <c>traceparent</c> in the call's metadata. Where a
/// flow crosses an actor or a peer's control stream, the context travels as a <c>traceparent</c> string (a message's
/// field, <c>Command.trace_parent</c>). Off unless <c>--otlp</c> is given: without a listener every span here is null.
/// </summary>
public static class Tracing
{
    public const string SourceName = "MyDvpn";

    public static readonly ActivitySource Source = new(SourceName);

    /// <summary>
    /// The collector <c>--otlp</c> names, <c>http(s)://HOST:PORT</c> (OTLP over HTTP with protobuf; spans go to its
    /// <c>/v1/traces</c>); null when not given. Anything else is a <see cref="ConfigurationException"/> naming <paramref name="setting"/>.
    /// </summary>
    public static Uri? ParseOtlp(string? value, string setting = "--otlp")
    {
        if (string.IsNullOrWhiteSpace(value))
            return null;
        var text = value.Trim();
        if (!Uri.TryCreate(text, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
            throw new ConfigurationException(setting, $"'{value}' is not an http:// or https:// URL of an OTLP collector (e.g. http://127.0.0.1:4318)");
        if (uri.UserInfo.Length > 0 || uri.Query.Length > 0 || uri.Fragment.Length > 0 || uri.AbsolutePath != "/")
            throw new ConfigurationException(setting, $"'{value}' must be http(s)://HOST:PORT alone (spans go to its /v1/traces)");
        var authority = text[(uri.Scheme.Length + 3)..].TrimEnd('/');
        var colon = authority.LastIndexOf(':');
        if (colon < 0 || authority.EndsWith(']') || !int.TryParse(authority[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var port)
            || port is < 1 or > 65535)
            throw new ConfigurationException(setting, $"'{value}' names no port: give http(s)://HOST:PORT (the OTLP/HTTP port is usually 4318)");
        return new Uri($"{uri.Scheme}://{uri.Authority}/");
    }

    /// <summary>
    /// Exports this process's spans to <paramref name="otlp"/> as <paramref name="serviceName"/> (<c>mydvpn-base</c>,
    /// <c>mydvpn-super</c>, <c>mydvpn-peer</c>) with <c>service.instance.id</c> <paramref name="instanceId"/>. The batch
    /// goes every <c>OTEL_BSP_SCHEDULE_DELAY</c> milliseconds (the environment variable; 5000 by default).
    /// </summary>
    public static IServiceCollection AddTracing(this IServiceCollection services, string serviceName, string instanceId, Uri otlp)
    {
        services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService(serviceName, serviceInstanceId: instanceId, autoGenerateServiceInstanceId: false))
            .WithTracing(tracing => tracing
                .SetSampler(new ParentBasedSampler(new NoCallRoots()))
                .AddSource(SourceName)
                // grpc-dotnet's client span of each call, between ours and HttpClient's (which carries the traceparent).
                .AddSource("Grpc.Net.Client")
                .AddAspNetCoreInstrumentation(o => o.Filter = IsTracedCall)
                .AddHttpClientInstrumentation()
                .AddOtlpExporter(o =>
                {
                    o.Protocol = OtlpExportProtocol.HttpProtobuf;
                    o.Endpoint = new Uri(otlp, "v1/traces");
                    if (ScheduleDelayFromEnvironment() is { } delay)
                        o.BatchExportProcessorOptions.ScheduledDelayMilliseconds = delay;
                }));
        return services;
    }

    /// <summary>
    /// The server calls that get a span: unary gRPC calls. Not a peer's control stream (it lasts as long as the peer stays;
    /// its messages' work has spans of its own), not <c>/metrics</c> and the probes.
    /// </summary>
    public static bool IsTracedCall(HttpContext context) =>
        context.Request.ContentType?.StartsWith("application/grpc", StringComparison.Ordinal) == true
        && !context.Request.Path.StartsWithSegments("/mydvpn.control.v1.ControlStream", StringComparison.Ordinal);

    private static int? ScheduleDelayFromEnvironment() =>
        int.TryParse(Environment.GetEnvironmentVariable("OTEL_BSP_SCHEDULE_DELAY"), NumberStyles.None, CultureInfo.InvariantCulture, out var ms) && ms > 0
            ? ms
            : null;

    /// <summary>The context a <c>traceparent</c> string names; default (none) for an empty or malformed one.</summary>
    public static ActivityContext ContextOf(string? traceParent) =>
        !string.IsNullOrEmpty(traceParent) && ActivityContext.TryParse(traceParent, null, out var context) ? context : default;

    /// <summary>
    /// Starts a span of <paramref name="name"/>, child of <paramref name="traceParent"/> or, without one, the root of a new
    /// trace — never a child of whatever is current on this thread (an actor's thread carries no flow of its own).
    /// <see cref="Activity.Current"/> is left as it was: the span is carried explicitly (<see cref="RunIn{T}"/>,
    /// <see cref="TraceParentOf"/>). Null when tracing is off.
    /// </summary>
    public static Activity? StartDetached(string name, string? traceParent = null, ActivityKind kind = ActivityKind.Internal)
    {
        var previous = Activity.Current;
        Activity.Current = null;
        try
        {
            return Source.StartActivity(name, kind, ContextOf(traceParent));
        }
        finally
        {
            Activity.Current = previous;
        }
    }

    /// <summary>
    /// Ends a span started with <see cref="StartDetached"/> where it was started (an actor's thread): stopping an
    /// <see cref="Activity"/> makes its parent current, which <see cref="Activity.Current"/> is put back from.
    /// </summary>
    public static void End(Activity? span)
    {
        if (span is null)
            return;
        var previous = Activity.Current;
        span.Dispose();
        Activity.Current = previous == span ? null : previous;
    }

    /// <summary>The <c>traceparent</c> of <paramref name="span"/>, or null when there is none.</summary>
    public static string? TraceParentOf(Activity? span) => span?.Id;

    /// <summary>Runs <paramref name="work"/> with <paramref name="span"/> current (its gRPC calls carry it) and ends the span after it.</summary>
    public static async Task<T> RunIn<T>(Activity? span, Func<Task<T>> work)
    {
        ArgumentNullException.ThrowIfNull(work);
        if (span is null)
            return await work().ConfigureAwait(false);
        Activity.Current = span;
        try
        {
            return await work().ConfigureAwait(false);
        }
        catch (Exception e)
        {
            span.SetStatus(ActivityStatusCode.Error, e.Message);
            throw;
        }
        finally
        {
            span.Dispose();
        }
    }
}

/// <summary>
/// The sampler of a trace's root: every root but a call made outside any traced flow (a client span without a parent: a
/// SuperNode's directory report every few seconds, a BaseNode's calls to the SuperNodes), which would fill the collector
/// with a trace per timer tick. Calls inside a flow follow their parent (<see cref="ParentBasedSampler"/>).
/// </summary>
public sealed class NoCallRoots : Sampler
{
    public override SamplingResult ShouldSample(in SamplingParameters samplingParameters) =>
        new(samplingParameters.Kind == ActivityKind.Client ? SamplingDecision.Drop : SamplingDecision.RecordAndSample);
}
