using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;

namespace MyDvpn.Security.Tests;

/// <summary>Real TLS over loopback: a node serving, an admin connecting, each checking the other against the CA.</summary>
public sealed class TlsHandshakeTests : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public async Task Node_server_and_admin_client_of_the_same_CA_complete_a_mutual_TLS_handshake()
    {
        var pki = new Pki(_temp);
        using var node = TlsMaterial.Load(pki.IssueBase("node1", dnsNames: []));
        using var admin = TlsMaterial.Load(pki.IssueAdmin("alice", dnsNames: []));

        var result = await HandshakeAsync(node, admin);

        Assert.Null(result.ServerError);
        Assert.Null(result.ClientError);
        Assert.Equal(admin.Certificate.Thumbprint, result.ClientCertificateSeenByServer);
        Assert.Equal(node.Certificate.Thumbprint, result.ServerCertificateSeenByClient);
        Assert.Equal(42, result.ByteReceivedByServer);
    }

    [Fact]
    public async Task Node_server_refuses_a_client_certificate_from_a_foreign_CA()
    {
        using var node = TlsMaterial.Load(new Pki(_temp, "ours").IssueBase("node1", dnsNames: []));
        using var intruder = TlsMaterial.Load(new Pki(_temp, "theirs").IssueAdmin("alice", dnsNames: []));

        var result = await HandshakeAsync(node, intruder);

        Assert.IsType<AuthenticationException>(result.ServerError);
        Assert.Contains("not issued by this network's CA", result.ServerReason);
        Assert.Null(result.ByteReceivedByServer);
    }

    [Fact]
    public async Task Admin_client_refuses_a_server_certificate_from_a_foreign_CA()
    {
        using var impostor = TlsMaterial.Load(new Pki(_temp, "theirs").IssueBase("node1", dnsNames: []));
        using var admin = TlsMaterial.Load(new Pki(_temp, "ours").IssueAdmin("alice", dnsNames: []));

        var result = await HandshakeAsync(impostor, admin);

        Assert.IsType<AuthenticationException>(result.ClientError);
        Assert.Null(result.ByteReceivedByServer);
    }

    [Fact]
    public async Task Admin_client_refuses_a_server_presenting_an_admin_certificate()
    {
        var pki = new Pki(_temp);
        using var notANode = TlsMaterial.Load(pki.IssueAdmin("bob", dnsNames: []));
        using var admin = TlsMaterial.Load(pki.IssueAdmin("alice", dnsNames: []));

        var result = await HandshakeAsync(notANode, admin);

        Assert.IsType<AuthenticationException>(result.ClientError);
        Assert.Null(result.ByteReceivedByServer);
    }

    private sealed record Outcome(
        Exception? ServerError,
        Exception? ClientError,
        string? ServerReason,
        string? ClientCertificateSeenByServer,
        string? ServerCertificateSeenByClient,
        int? ByteReceivedByServer);

    /// <summary>
    /// Serves once with <paramref name="server"/> (client certificate required, must be an Admin) and connects with
    /// <paramref name="client"/>, which then sends one byte. Errors on either side are returned, not thrown.
    /// </summary>
    private static async Task<Outcome> HandshakeAsync(TlsMaterial server, TlsMaterial client)
    {
        using var timeout = new CancellationTokenSource(Timeout);
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        try
        {
            var port = ((IPEndPoint)listener.LocalEndpoint).Port;
            string? serverReason = null;
            string? clientCertificate = null;
            int? received = null;

            var serverTask = Task.Run(async () =>
            {
                using var tcp = await listener.AcceptTcpClientAsync(timeout.Token);
                await using var tls = new SslStream(tcp.GetStream());
                await tls.AuthenticateAsServerAsync(
                    new SslServerAuthenticationOptions
                    {
                        ServerCertificateContext = SslStreamCertificateContext.Create(server.Certificate, null, offline: true),
                        ClientCertificateRequired = true,
                        RemoteCertificateValidationCallback = (_, certificate, _, _) =>
                            certificate is System.Security.Cryptography.X509Certificates.X509Certificate2 peer
                            && server.ValidatePeer(peer, CertificateKind.Admin, out serverReason),
                    },
                    timeout.Token);
                clientCertificate = tls.RemoteCertificate?.GetCertHashString();
                var buffer = new byte[1];
                if (await tls.ReadAsync(buffer, timeout.Token) == 1)
                {
                    received = buffer[0];
                }
            });

            string? serverCertificate = null;
            var clientTask = Task.Run(async () =>
            {
                using var tcp = new TcpClient();
                await tcp.ConnectAsync(IPAddress.Loopback, port, timeout.Token);
                await using var tls = new SslStream(tcp.GetStream());
                await tls.AuthenticateAsClientAsync(
                    new SslClientAuthenticationOptions
                    {
                        TargetHost = "node1",
                        ClientCertificateContext = SslStreamCertificateContext.Create(client.Certificate, null, offline: true),
                        RemoteCertificateValidationCallback = client.ValidateServerCertificate,
                    },
                    timeout.Token);
                serverCertificate = tls.RemoteCertificate?.GetCertHashString();
                await tls.WriteAsync(new byte[] { 42 }, timeout.Token);
                await tls.FlushAsync(timeout.Token);
                // Wait for the server to finish with the stream: with TLS 1.3 the client may be done before the server
                // has judged the client certificate.
                _ = await tls.ReadAsync(new byte[1], timeout.Token);
            });

            var serverError = await Record.ExceptionAsync(() => serverTask);
            var clientError = await Record.ExceptionAsync(() => clientTask);
            Assert.False(timeout.IsCancellationRequested, "the handshake did not finish in time");
            return new Outcome(serverError, clientError, serverReason, clientCertificate, serverCertificate, received);
        }
        finally
        {
            listener.Stop();
        }
    }
}
