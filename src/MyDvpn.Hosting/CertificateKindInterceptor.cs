using System.Collections.Concurrent;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using MyDvpn.Protocol.Control;
using MyDvpn.Security;

namespace MyDvpn.Hosting;

/// <summary>Who may call a gRPC service: holders of admin certificates, of BaseNode ones, of SuperNode ones.</summary>
[Flags]
public enum Callers
{
    Admins = 1,
    BaseNodes = 2,
    SuperNodes = 4,
}

/// <summary>
/// Which certificates each gRPC service (or one method of it) takes from its callers. TLS already proved the certificate
/// chains to the operator CA; this decides what that certificate may call. docs/trust-model.md lists the policy.
/// </summary>
public sealed class CertificatePolicy
{
    private readonly ConcurrentDictionary<string, Callers> allowed = new();

    /// <param name="serviceOrMethod">
    /// A full proto service name (<c>mydvpn.admin.v1.Admin</c>), or one method of it (<c>mydvpn.supernode.v1.ExitAllocation/ListExits</c>),
    /// which takes precedence over its service.
    /// </param>
    /// <param name="callers">Who may call it.</param>
    public CertificatePolicy Allow(string serviceOrMethod, Callers callers)
    {
        allowed[serviceOrMethod.Trim('/')] = callers;
        return this;
    }

    /// <summary>Who may call <paramref name="method"/> (<c>/package.Service/Method</c>); null: the policy does not name it.</summary>
    public Callers? AllowedFor(string method)
    {
        var trimmed = method.Trim('/');
        if (allowed.TryGetValue(trimmed, out var callers))
            return callers;
        var slash = trimmed.IndexOf('/');
        return slash > 0 && allowed.TryGetValue(trimmed[..slash], out callers) ? callers : null;
    }

    /// <summary>The callers in words: "admin", "BaseNode or SuperNode".</summary>
    public static string Describe(Callers callers) => string.Join(" or ", new[]
        {
            (Callers.Admins, "admin"), (Callers.BaseNodes, "BaseNode"), (Callers.SuperNodes, "SuperNode"),
        }.Where(c => callers.HasFlag(c.Item1)).Select(c => c.Item2));
}

/// <summary>
/// Refuses a call whose client certificate is missing, or is not one the <see cref="CertificatePolicy"/> allows for the
/// method: <c>PERMISSION_DENIED</c> with <see cref="RefusalReason.CertificateMismatch"/> in the reason trailer, or
/// <see cref="RefusalReason.CertificateRevoked"/> for a certificate on the node's revocation list
/// (<see cref="TlsMaterial.Revocations"/>, consulted on every call, so a connection opened before the revocation gets no
/// further call through). A node caller's <see cref="NodeIdentity"/> is then available to the service through
/// <see cref="CallerIdentity"/>.
/// </summary>
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
        if (policy.AllowedFor(context.Method) is not { } allowed)
            return;
        var http = context.GetHttpContext();
        var certificate = http.Connection.ClientCertificate;
        if (certificate is null)
            throw Refuse(context, allowed, "no client certificate");
        if (tls.Revocations.Describe(certificate) is { } revoked)
        {
            logger.LogWarning("Security event: refused {Method} from {Peer}: {Reason}", context.Method, context.Peer, revoked);
            throw RefusalReasons.ToRpcException(RefusalReason.CertificateRevoked,
                $"{context.Method}: the caller's {revoked}");
        }
        if (!tls.ValidatePeer(certificate, null, out var reason))
            throw Refuse(context, allowed, reason);
        if (CertificateAuthority.KindOf(certificate) == CertificateKind.Admin)
        {
            if (!allowed.HasFlag(Callers.Admins))
                throw Refuse(context, allowed, $"certificate '{certificate.Subject}' is an admin certificate");
            return;
        }
        if (!NodeIdentity.TryRead(certificate, out var identity, out var problem))
            throw Refuse(context, allowed, problem);
        if (!allowed.HasFlag(identity.Role == NodeRole.Base ? Callers.BaseNodes : Callers.SuperNodes))
            throw Refuse(context, allowed, $"the certificate names {identity} ({identity.Uri})");
        CallerIdentity.Remember(http, identity);
    }

    private RpcException Refuse(ServerCallContext context, Callers allowed, string reason)
    {
        var needed = CertificatePolicy.Describe(allowed);
        logger.LogWarning("Security event: refused {Method} from {Peer}: it takes {Callers} certificates and {Reason}",
            context.Method, context.Peer, needed, reason);
        return RefusalReasons.ToRpcException(RefusalReason.CertificateMismatch,
            $"{context.Method} needs an operator-issued {needed} certificate: {reason}");
    }
}

/// <summary>
/// The node identity of a gRPC caller (as <see cref="CertificateKindInterceptor"/> read it from its certificate), and the
/// check that what a caller claims in a request is what its certificate names.
/// </summary>
public static class CallerIdentity
{
    private static readonly object Key = new();

    internal static void Remember(HttpContext http, NodeIdentity identity) => http.Items[Key] = identity;

    /// <summary>The caller's node identity; a call that reached a service the policy does not limit to nodes is refused.</summary>
    public static NodeIdentity Of(ServerCallContext context) =>
        context.GetHttpContext().Items.TryGetValue(Key, out var identity) && identity is NodeIdentity node
            ? node
            : throw RefusalReasons.ToRpcException(RefusalReason.CertificateMismatch, $"{context.Method} needs a node certificate");

    /// <summary>
    /// Refuses the call unless its caller is SuperNode <paramref name="claimedId"/> (any, when null) of
    /// <paramref name="claimedRegion"/> (any, when null): <c>PERMISSION_DENIED</c>, <see cref="RefusalReason.CertificateMismatch"/>, and one
    /// log line with what the certificate names and what was claimed.
    /// </summary>
    public static NodeIdentity RequireSuperNode(ServerCallContext context, ILogger logger, string? claimedId, string? claimedRegion)
    {
        var identity = Of(context);
        Check(identity, claimedId, claimedRegion, context.Method, context.Peer, logger);
        return identity;
    }

    /// <summary>The check <see cref="RequireSuperNode"/> makes, on an identity already read; throws the refusal.</summary>
    public static void Check(NodeIdentity certificate, string? claimedId, string? claimedRegion, string method, string peer, ILogger logger)
    {
        if (Mismatch(certificate, claimedId, claimedRegion) is not { } claim)
            return;
        logger.LogWarning("Security event: refused {Method} from {Peer}: its certificate names {Certificate} ({Uri}) but it claims {Claim}",
            method, peer, certificate.ToString(), certificate.Uri, claim);
        throw RefusalReasons.ToRpcException(RefusalReason.CertificateMismatch,
            $"the caller's certificate names {certificate} ({certificate.Uri}), but the request claims {claim}");
    }

    /// <summary>What was claimed in words when <paramref name="certificate"/> does not name it; null when it does.</summary>
    public static string? Mismatch(NodeIdentity certificate, string? claimedId, string? claimedRegion)
    {
        var matches = certificate.Role == NodeRole.Super
            && (claimedRegion is null || certificate.Region == claimedRegion)
            && (claimedId is null || certificate.Id == claimedId);
        if (matches)
            return null;
        return (claimedId, claimedRegion) switch
        {
            (null, null) => "to be a SuperNode",
            (null, _) => $"a SuperNode of region {claimedRegion}",
            (_, null) => $"SuperNode {claimedId}",
            _ => $"SuperNode {claimedId} of region {claimedRegion}",
        };
    }
}
