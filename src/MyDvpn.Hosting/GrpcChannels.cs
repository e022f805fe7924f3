using System.Net.Security;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;
using MyDvpn.Common;
using MyDvpn.Security;

namespace MyDvpn.Hosting;

/// <summary>gRPC client channels with mutual TLS against the operator CA, to a server that is the node the caller means.</summary>
public static class GrpcChannels
{
    /// <param name="tls">The caller's own certificate (node or admin) and the CA it trusts.</param>
    /// <param name="expected">The node the server must be: its certificate must name that role (and region, when given).</param>
    /// <param name="connect">Opens the TCP connection (e.g. from a socket in another network namespace); null: the default.</param>
    /// <param name="logger">Where a refused server certificate is logged (revoked, or not a node's); nowhere when null.</param>
    public static GrpcChannel MutualTls(HostPort server, TlsMaterial tls, ExpectedServer expected, TimeSpan? connectTimeout = null,
        Func<SocketsHttpConnectionContext, CancellationToken, ValueTask<Stream>>? connect = null, ILogger? logger = null)
    {
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = connect,
            ConnectTimeout = connectTimeout ?? TimeSpan.FromSeconds(5),
            EnableMultipleHttp2Connections = true,
            PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
            KeepAlivePingDelay = TimeSpan.FromSeconds(20),
            KeepAlivePingTimeout = TimeSpan.FromSeconds(10),
            SslOptions = new SslClientAuthenticationOptions
            {
                ClientCertificates = [tls.Certificate],
                RemoteCertificateValidationCallback = (_, certificate, _, _) =>
                {
                    if (tls.ValidateServerCertificate(certificate, expected, out var reason))
                        return true;
                    logger?.LogWarning("Security event: refused the server {Server}: {Reason}", server, reason);
                    return false;
                },
            },
        };
        return GrpcChannel.ForAddress($"https://{server}", new GrpcChannelOptions
        {
            HttpHandler = handler,
            DisposeHttpClient = true,
        });
    }
}
