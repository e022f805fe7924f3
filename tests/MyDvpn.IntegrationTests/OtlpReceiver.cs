using System.Collections.Concurrent;
using Google.Protobuf;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace MyDvpn.IntegrationTests;

/// <summary>A span as a collector receives it: who sent it (the resource's service.name and service.instance.id) and its links.</summary>
public sealed record ReceivedSpan(string Service, string Instance, string TraceId, string SpanId, string ParentSpanId, string Name,
    ulong StartNanos, ulong EndNanos)
{
    public double DurationMs => (EndNanos - StartNanos) / 1e6;

    public override string ToString() => $"{Service}/{Instance} {Name} ({DurationMs:0.0} ms) span {SpanId} parent {(ParentSpanId.Length == 0 ? "-" : ParentSpanId)}";
}

/// <summary>
/// An OTLP/HTTP collector for tests: real Kestrel on loopback, <c>POST /v1/traces</c> with an
/// <c>ExportTraceServiceRequest</c> in protobuf, read field by field with <see cref="CodedInputStream"/> (the OTLP field
/// numbers of the spans' resource, scope and span messages; every other field skipped).
/// </summary>
public sealed class OtlpReceiver : IAsyncDisposable
{
    private readonly WebApplication app;
    private readonly ConcurrentQueue<ReceivedSpan> spans = new();

    private OtlpReceiver(WebApplication app) => this.app = app;

    /// <summary>The URL to give <c>--otlp</c>.</summary>
    public string Endpoint { get; private set; } = "";

    public IReadOnlyList<ReceivedSpan> Spans => [.. spans];

    /// <summary>Export requests that could not be read: a test fails on any.</summary>
    public ConcurrentQueue<string> Problems { get; } = new();

    public static async Task<OtlpReceiver> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(k => k.Listen(System.Net.IPAddress.Loopback, 0));
        var app = builder.Build();
        var receiver = new OtlpReceiver(app);
        app.MapPost("/v1/traces", receiver.ReceiveAsync);
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
        receiver.Endpoint = address.Replace("[::1]", "127.0.0.1", StringComparison.Ordinal);
        return receiver;
    }

    private async Task<IResult> ReceiveAsync(HttpRequest request)
    {
        using var body = new MemoryStream();
        await request.Body.CopyToAsync(body);
        try
        {
            foreach (var span in Decode(body.ToArray()))
                spans.Enqueue(span);
        }
        catch (InvalidProtocolBufferException e)
        {
            Problems.Enqueue(e.Message);
            return Results.BadRequest();
        }
        // An empty ExportTraceServiceResponse: everything accepted.
        return Results.Bytes([], "application/x-protobuf");
    }

    /// <summary>ExportTraceServiceRequest{1 resource_spans}.</summary>
    public static List<ReceivedSpan> Decode(byte[] request)
    {
        var result = new List<ReceivedSpan>();
        foreach (var (field, resourceSpans) in Fields(request))
        {
            if (field != 1)
                continue;
            // ResourceSpans{1 resource, 2 scope_spans}
            string service = "", instance = "";
            var scopes = new List<byte[]>();
            foreach (var (f, value) in Fields(resourceSpans))
            {
                if (f == 1)
                {
                    // Resource{1 attributes: KeyValue{1 key, 2 value: AnyValue{1 string_value}}}
                    foreach (var (af, attribute) in Fields(value))
                    {
                        if (af != 1)
                            continue;
                        var (key, text) = KeyValue(attribute);
                        if (key == "service.name")
                            service = text;
                        else if (key == "service.instance.id")
                            instance = text;
                    }
                }
                else if (f == 2)
                {
                    scopes.Add(value);
                }
            }
            // ScopeSpans{1 scope, 2 spans}
            foreach (var scope in scopes)
            {
                foreach (var (sf, span) in Fields(scope))
                {
                    if (sf == 2)
                        result.Add(Span(service, instance, span));
                }
            }
        }
        return result;
    }

    /// <summary>Span{1 trace_id, 2 span_id, 4 parent_span_id, 5 name, 7 start_time_unix_nano, 8 end_time_unix_nano}.</summary>
    private static ReceivedSpan Span(string service, string instance, byte[] span)
    {
        var input = new CodedInputStream(span);
        string traceId = "", spanId = "", parent = "", name = "";
        ulong start = 0, end = 0;
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            switch (WireFormat.GetTagFieldNumber(tag))
            {
                case 1 when WireFormat.GetTagWireType(tag) == WireFormat.WireType.LengthDelimited:
                    traceId = Convert.ToHexStringLower(input.ReadBytes().Span);
                    break;
                case 2 when WireFormat.GetTagWireType(tag) == WireFormat.WireType.LengthDelimited:
                    spanId = Convert.ToHexStringLower(input.ReadBytes().Span);
                    break;
                case 4 when WireFormat.GetTagWireType(tag) == WireFormat.WireType.LengthDelimited:
                    parent = Convert.ToHexStringLower(input.ReadBytes().Span);
                    break;
                case 5 when WireFormat.GetTagWireType(tag) == WireFormat.WireType.LengthDelimited:
                    name = input.ReadString();
                    break;
                case 7 when WireFormat.GetTagWireType(tag) == WireFormat.WireType.Fixed64:
                    start = input.ReadFixed64();
                    break;
                case 8 when WireFormat.GetTagWireType(tag) == WireFormat.WireType.Fixed64:
                    end = input.ReadFixed64();
                    break;
                default:
                    input.SkipLastField();
                    break;
            }
        }
        return new ReceivedSpan(service, instance, traceId, spanId, parent, name, start, end);
    }

    private static (string Key, string Text) KeyValue(byte[] keyValue)
    {
        string key = "", text = "";
        foreach (var (f, value) in Fields(keyValue))
        {
            if (f == 1)
            {
                key = System.Text.Encoding.UTF8.GetString(value);
            }
            else if (f == 2)
            {
                foreach (var (vf, anyValue) in Fields(value))
                {
                    if (vf == 1)
                        text = System.Text.Encoding.UTF8.GetString(anyValue);
                }
            }
        }
        return (key, text);
    }

    /// <summary>The length-delimited fields of a message, in order; fields of other wire types skipped.</summary>
    private static IEnumerable<(int Field, byte[] Value)> Fields(byte[] message)
    {
        var input = new CodedInputStream(message);
        var fields = new List<(int, byte[])>();
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            if (WireFormat.GetTagWireType(tag) == WireFormat.WireType.LengthDelimited)
                fields.Add((WireFormat.GetTagFieldNumber(tag), input.ReadBytes().ToByteArray()));
            else
                input.SkipLastField();
        }
        return fields;
    }

    public async ValueTask DisposeAsync()
    {
        await app.StopAsync();
        await app.DisposeAsync();
    }
}
