using System.Diagnostics;
using Google.Protobuf.Reflection;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Prometheus;
using ServiceDescriptor = Google.Protobuf.Reflection.ServiceDescriptor;

namespace MyDvpn.Hosting;

/// <summary>
/// The calls a node's gRPC services served, in the names Prometheus's Go gRPC middleware gives them (so its dashboards read
/// them): <c>grpc_server_started_total</c>, <c>grpc_server_handled_total</c> by status code, and
/// <c>grpc_server_handling_seconds</c> (a stream's whole life for a streaming call). Labelled by service and method only
/// of the services a node maps (<see cref="Serve"/>, where each method's series start at zero with code <c>OK</c>; other
/// codes appear when first returned): no caller, peer or argument is a label.
/// </summary>
public sealed class GrpcServerMetrics
{
    /// <summary>From 5 ms (a call answered from memory) to 30 s (a call that waited for a journal or another node).</summary>
    public static readonly double[] Buckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

    private static readonly string[] Labels = ["grpc_type", "grpc_service", "grpc_method"];

    /// <summary>The one a node's <c>/metrics</c> serves (declared after what its constructor reads).</summary>
    public static readonly GrpcServerMetrics Default = new(Metrics.DefaultFactory);

    private readonly Counter _started;
    private readonly Counter _handled;
    private readonly Histogram _seconds;
    private readonly Dictionary<string, string> _types = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();

    public GrpcServerMetrics(IMetricFactory factory)
    {
        _started = factory.CreateCounter("grpc_server_started_total", "gRPC calls started on the server.",
            new CounterConfiguration { LabelNames = Labels });
        _handled = factory.CreateCounter("grpc_server_handled_total", "gRPC calls completed on the server, by status code.",
            new CounterConfiguration { LabelNames = [.. Labels, "grpc_code"] });
        _seconds = factory.CreateHistogram("grpc_server_handling_seconds", "Time from a gRPC call's start to its status on the server.",
            new HistogramConfiguration { LabelNames = Labels, Buckets = Buckets });
    }

    /// <summary>The node serves <paramref name="service"/>: the series of each of its methods start at zero.</summary>
    public void Serve(ServiceDescriptor service)
    {
        foreach (var method in service.Methods)
        {
            var type = TypeOf(method);
            lock (_lock)
                _types[$"/{service.FullName}/{method.Name}"] = type;
            _started.WithLabels(type, service.FullName, method.Name);
            _handled.WithLabels(type, service.FullName, method.Name, CodeLabel(StatusCode.OK));
            _seconds.WithLabels(type, service.FullName, method.Name);
        }
    }

    /// <summary>The <c>grpc_code</c> label: the code's name as gRPC writes it (<c>OK</c>, <c>PermissionDenied</c>).</summary>
    public static string CodeLabel(StatusCode code) => code.ToString();

    internal Call Start(string fullMethod, string type)
    {
        var trimmed = fullMethod.TrimStart('/');
        var slash = trimmed.IndexOf('/');
        var (service, method) = slash > 0 ? (trimmed[..slash], trimmed[(slash + 1)..]) : ("unknown", trimmed);
        lock (_lock)
            type = _types.GetValueOrDefault(fullMethod, type);
        _started.WithLabels(type, service, method).Inc();
        return new Call(this, type, service, method, Stopwatch.GetTimestamp());
    }

    internal readonly record struct Call(GrpcServerMetrics Metrics, string Type, string Service, string Method, long Started)
    {
        public void Handled(StatusCode code)
        {
            Metrics._handled.WithLabels(Type, Service, Method, CodeLabel(code)).Inc();
            Metrics._seconds.WithLabels(Type, Service, Method).Observe(Stopwatch.GetElapsedTime(Started).TotalSeconds);
        }
    }

    private static string TypeOf(MethodDescriptor method) => (method.IsClientStreaming, method.IsServerStreaming) switch
    {
        (false, false) => GrpcTypes.Unary,
        (true, false) => GrpcTypes.ClientStream,
        (false, true) => GrpcTypes.ServerStream,
        _ => GrpcTypes.BidiStream,
    };
}

/// <summary>The <c>grpc_type</c> label.</summary>
public static class GrpcTypes
{
    public const string Unary = "unary", ClientStream = "client_stream", ServerStream = "server_stream", BidiStream = "bidi_stream";
}

/// <summary>
/// Counts every call a node's gRPC services serve in <see cref="GrpcServerMetrics"/>, refusals of the
/// <see cref="CertificateKindInterceptor"/> included (it runs first, outside it). A call's code is its status: OK when the
/// handler returned, the exception's when it threw an <see cref="RpcException"/>, <c>Cancelled</c> when the caller went away,
/// <c>Unknown</c> for anything else (what gRPC answers then).
/// </summary>
public sealed class GrpcMetricsInterceptor(GrpcServerMetrics metrics) : Interceptor
{
    public override Task<TResponse> UnaryServerHandler<TRequest, TResponse>(
        TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation) =>
        Observe(context, GrpcTypes.Unary, () => continuation(request, context));

    public override Task<TResponse> ClientStreamingServerHandler<TRequest, TResponse>(
        IAsyncStreamReader<TRequest> requestStream, ServerCallContext context, ClientStreamingServerMethod<TRequest, TResponse> continuation) =>
        Observe(context, GrpcTypes.ClientStream, () => continuation(requestStream, context));

    public override async Task ServerStreamingServerHandler<TRequest, TResponse>(
        TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation) =>
        await Observe(context, GrpcTypes.ServerStream, async () =>
        {
            await continuation(request, responseStream, context);
            return true;
        });

    public override async Task DuplexStreamingServerHandler<TRequest, TResponse>(
        IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation) =>
        await Observe(context, GrpcTypes.BidiStream, async () =>
        {
            await continuation(requestStream, responseStream, context);
            return true;
        });

    private async Task<T> Observe<T>(ServerCallContext context, string type, Func<Task<T>> handler)
    {
        var call = metrics.Start(context.Method, type);
        try
        {
            var result = await handler();
            call.Handled(context.Status.StatusCode);
            return result;
        }
        catch (RpcException ex)
        {
            call.Handled(ex.StatusCode);
            throw;
        }
        catch (OperationCanceledException) when (context.CancellationToken.IsCancellationRequested)
        {
            call.Handled(StatusCode.Cancelled);
            throw;
        }
        catch
        {
            call.Handled(StatusCode.Unknown);
            throw;
        }
    }
}
