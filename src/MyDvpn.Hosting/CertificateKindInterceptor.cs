using System.Collections.Concurrent;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Microsoft.Extensions.Logging;
using MyDvpn.Security;

namespace MyDvpn.Hosting;

/// <summary>
/// Which certificate kind each gRPC service demands of its callers. TLS already proved the
/// certificate chains to the operator CA; this decides what that certificate may call.
/// </summary>
public sealed class CertificatePolicy
{
    private readonly ConcurrentDictionary<string, CertificateKind> required = new();

    /// <param name="serviceName">The full proto service name, e.g. <c>mydvpn.admin.v1.Admin</c>.</param>
    public CertificatePolicy Require(string serviceName, CertificateKind kind)
    {
        required[serviceName] = kind;
        return this;
    }

    public CertificateKind? RequiredFor(string method)
    {
        // Method is "/package.Service/Method".
        var slash = method.IndexOf('/', 1);
        var service = slash > 1 ? method[1..slash] : method.Trim('/');
        return required.TryGetValue(service, out var kind) ? kind : null;
    }
}

/// <summary>Refuses a call whose client certificate is missing or of the wrong kind.</summary>
public sealed class CertificateKindInterceptor(CertificatePolicy policy, TlsMaterial tls, ILogger<CertificateKindInterceptor> logger) : Interceptor
{
    public override Task<TResponse> UnaryServerHandler<TRequest, TResponse>(
        TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        Authorize(context);
        return continuation(request, context);
    }

    public override Task<TResponse> ClientStreamingServerHandler<TRequest, TResponse>(
        IAsyncStreamReader<TRequest> requestStream, ServerCallContext context, ClientStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Authorize(context);
        return continuation(requestStream, context);
    }

    public override Task ServerStreamingServerHandler<TRequest, TResponse>(
        TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Authorize(context);
        return continuation(request, responseStream, context);
    }

    public override Task DuplexStreamingServerHandler<TRequest, TResponse>(
        IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Authorize(context);
        return continuation(requestStream, responseStream, context);
    }

    private void Authorize(ServerCallContext context)
    {
        if (policy.RequiredFor(context.Method) is not { } kind)
            return;
        var certificate = context.GetHttpContext().Connection.ClientCertificate;
        if (certificate is null)
            Refuse(context, kind, "no client certificate");
        else if (!tls.ValidatePeer(certificate, kind, out var reason))
            Refuse(context, kind, reason);
    }

    private void Refuse(ServerCallContext context, CertificateKind kind, string reason)
    {
        logger.LogWarning("Security event: refused {Method} from {Peer}: {Reason}", context.Method, context.Peer, reason);
        throw new RpcException(new Status(StatusCode.PermissionDenied,
            $"{context.Method} needs an operator-issued {kind.ToString().ToLowerInvariant()} certificate: {reason}"));
    }
}
