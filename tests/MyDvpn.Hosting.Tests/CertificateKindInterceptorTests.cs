using System.Net.Security;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using MyDvpn.Protocol.Admin;
using MyDvpn.Protocol.Control;
using MyDvpn.Protocol.Directory;
using MyDvpn.Security;

namespace MyDvpn.Hosting.Tests;

/// <summary>Real Kestrel with mutual TLS on loopback, real certificates of a temporary operator CA.</summary>
public sealed class CertificateKindInterceptorTests : IDisposable
{
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(10);

    private readonly CallerCertificates certificates = new();
    private readonly FixedAdmin admin = new();

    public void Dispose() => certificates.Dispose();

    [Fact]
    public async Task An_admin_certificate_may_call_an_admin_only_service()
    {
        await using var server = await StartAsync(AdminOnly(), ClientCertificateMode.RequireCertificate);
        using var channel = GrpcChannels.MutualTls(server.Address, certificates.Admin, ExpectedServer.BaseNode);

        var state = await new Admin.AdminClient(channel).GetClusterAsync(new GetClusterRequest(), deadline: Deadline());

        Assert.Equal(FixedAdmin.State, state);
        Assert.Equal(1, admin.Calls);
    }

    [Fact]
    public async Task A_node_certificate_is_refused_by_an_admin_only_service_with_PermissionDenied()
    {
        await using var server = await StartAsync(AdminOnly(), ClientCertificateMode.RequireCertificate);
        using var channel = GrpcChannels.MutualTls(server.Address, certificates.Node, ExpectedServer.BaseNode);
        var client = new Admin.AdminClient(channel);

        var getCluster = await Assert.ThrowsAsync<RpcException>(
            () => client.GetClusterAsync(new GetClusterRequest(), deadline: Deadline()).ResponseAsync);
        var listRegions = await Assert.ThrowsAsync<RpcException>(
            () => client.ListRegionsAsync(new ListRegionsRequest(), deadline: Deadline()).ResponseAsync);

        foreach (var refused in new[] { getCluster, listRegions })
        {
            Assert.Equal(StatusCode.PermissionDenied, refused.StatusCode);
            Assert.Contains("admin certificate", refused.Status.Detail, StringComparison.Ordinal);
        }
        Assert.Contains("/mydvpn.admin.v1.Admin/GetCluster", getCluster.Status.Detail, StringComparison.Ordinal);
        Assert.Equal(0, admin.Calls);
    }

    [Fact]
    public async Task A_service_the_policy_does_not_name_accepts_any_certificate_of_the_CA()
    {
        await using var server = await StartAsync(new CertificatePolicy(), ClientCertificateMode.RequireCertificate);
        using var channel = GrpcChannels.MutualTls(server.Address, certificates.Node, ExpectedServer.BaseNode);

        var state = await new Admin.AdminClient(channel).GetClusterAsync(new GetClusterRequest(), deadline: Deadline());

        Assert.Equal(FixedAdmin.State, state);
        Assert.Equal(1, admin.Calls);
    }

    [Fact]
    public async Task A_caller_without_a_client_certificate_is_refused_when_the_server_only_allows_certificates()
    {
        await using var server = await StartAsync(AdminOnly(), ClientCertificateMode.AllowCertificate);
        using var channel = GrpcChannel.ForAddress($"https://{server.Address}", new GrpcChannelOptions
        {
            HttpHandler = new SocketsHttpHandler
            {
                SslOptions = new SslClientAuthenticationOptions { RemoteCertificateValidationCallback = certificates.Admin.ValidateServerCertificate },
            },
            DisposeHttpClient = true,
        });

        var refused = await Assert.ThrowsAsync<RpcException>(
            () => new Admin.AdminClient(channel).GetClusterAsync(new GetClusterRequest(), deadline: Deadline()).ResponseAsync);

        Assert.Equal(StatusCode.PermissionDenied, refused.StatusCode);
        Assert.Contains("admin certificate: no client certificate", refused.Status.Detail, StringComparison.Ordinal);
        Assert.Equal(0, admin.Calls);
    }

    [Fact]
    public async Task A_revoked_certificate_is_refused_with_CERTIFICATE_REVOKED_on_a_connection_opened_before_the_revocation()
    {
        await using var server = await StartAsync(new CertificatePolicy().Allow(Admin.Descriptor.FullName, Callers.SuperNodes),
            ClientCertificateMode.RequireCertificate);
        using var channel = GrpcChannels.MutualTls(server.Address, certificates.Node, ExpectedServer.BaseNode);
        var client = new Admin.AdminClient(channel);
        await client.GetClusterAsync(new GetClusterRequest(), deadline: Deadline());
        var serial = CertificateRevocationList.SerialOf(certificates.Node.Certificate);
        var list = CaRevocations.RevokeSerial(certificates.Pki.CaDir, serial, System.Security.Cryptography.X509Certificates.X509RevocationReason.KeyCompromise,
            DateTimeOffset.UtcNow).List;
        Assert.True(certificates.Server.Revocations.TryApply(list, out var problem), problem);

        var refused = await Assert.ThrowsAsync<RpcException>(
            () => client.GetClusterAsync(new GetClusterRequest(), deadline: Deadline()).ResponseAsync);

        Assert.Equal(StatusCode.PermissionDenied, refused.StatusCode);
        Assert.Equal(RefusalReason.CertificateRevoked, RefusalReasons.Of(refused));
        Assert.Contains($"(serial {serial}) was revoked", refused.Status.Detail, StringComparison.Ordinal);
        Assert.Equal(1, admin.Calls);
    }

    [Theory]
    [InlineData("super")]
    [InlineData("super-of-region")]
    public async Task A_node_to_node_client_refuses_a_server_that_is_not_the_node_it_calls_and_logs_it(string expecting)
    {
        // The server is a BaseNode (base1); a SuperNode's exit-allocation client expects a SuperNode of the region it called.
        await using var server = await StartAsync(new CertificatePolicy(), ClientCertificateMode.RequireCertificate);
        var expected = expecting == "super" ? ExpectedServer.AnySuperNode : ExpectedServer.SuperNodeOf("eu-west");
        var logger = new CountingLogger();
        using var channel = GrpcChannels.MutualTls(server.Address, certificates.Node, expected, logger: logger);

        var refused = await Assert.ThrowsAsync<RpcException>(
            () => new Admin.AdminClient(channel).GetClusterAsync(new GetClusterRequest(), deadline: Deadline()).ResponseAsync);

        // The TLS handshake fails on the client's side: the call never starts.
        Assert.Equal(StatusCode.Internal, refused.StatusCode);
        Assert.IsType<System.Security.Authentication.AuthenticationException>(refused.Status.DebugException?.InnerException);
        Assert.Equal(0, admin.Calls);
        var line = Assert.Single(logger.Lines);
        Assert.Contains($"Security event: refused the server {server.Address}: its certificate names BaseNode base1, not {expected}", line, StringComparison.Ordinal);
    }

    private sealed class CountingLogger : Microsoft.Extensions.Logging.ILogger
    {
        public System.Collections.Concurrent.ConcurrentQueue<string> Lines { get; } = new();

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(Microsoft.Extensions.Logging.LogLevel logLevel) => true;

        public void Log<TState>(Microsoft.Extensions.Logging.LogLevel logLevel, Microsoft.Extensions.Logging.EventId eventId, TState state, Exception? exception,
            Func<TState, Exception?, string> formatter) => Lines.Enqueue(formatter(state, exception));
    }

    private static CertificatePolicy AdminOnly() =>
        new CertificatePolicy().Allow(Admin.Descriptor.FullName, Callers.Admins);

    private static DateTime Deadline() => DateTime.UtcNow + CallTimeout;

    [Fact]
    public async Task A_node_certificate_is_refused_with_the_reason_trailer_naming_what_it_is()
    {
        await using var server = await StartAsync(new CertificatePolicy().Allow(Admin.Descriptor.FullName, Callers.BaseNodes),
            ClientCertificateMode.RequireCertificate);
        using var channel = GrpcChannels.MutualTls(server.Address, certificates.Node, ExpectedServer.BaseNode);

        var refused = await Assert.ThrowsAsync<RpcException>(
            () => new Admin.AdminClient(channel).GetClusterAsync(new GetClusterRequest(), deadline: Deadline()).ResponseAsync);

        Assert.Equal(StatusCode.PermissionDenied, refused.StatusCode);
        Assert.Equal(RefusalReason.CertificateMismatch, RefusalReasons.Of(refused));
        Assert.Contains("needs an operator-issued BaseNode certificate: the certificate names SuperNode super1 of region eu-west (mydvpn://super/eu-west/super1)",
            refused.Status.Detail, StringComparison.Ordinal);
        Assert.Equal(0, admin.Calls);
    }

    [Fact]
    public async Task A_node_the_policy_allows_reaches_the_service_which_sees_its_identity()
    {
        await using var server = await StartAsync(new CertificatePolicy().Allow(Admin.Descriptor.FullName, Callers.BaseNodes | Callers.SuperNodes),
            ClientCertificateMode.RequireCertificate);
        using var channel = GrpcChannels.MutualTls(server.Address, certificates.Node, ExpectedServer.BaseNode);

        await new Admin.AdminClient(channel).GetClusterAsync(new GetClusterRequest(), deadline: Deadline());

        Assert.Equal(NodeIdentity.Super("super1", "eu-west"), admin.LastCaller);
    }

    [Fact]
    public async Task A_method_may_take_other_callers_than_its_service()
    {
        var policy = new CertificatePolicy()
            .Allow(Admin.Descriptor.FullName, Callers.Admins)
            .Allow($"{Admin.Descriptor.FullName}/ListRegions", Callers.SuperNodes);
        await using var server = await StartAsync(policy, ClientCertificateMode.RequireCertificate);
        using var channel = GrpcChannels.MutualTls(server.Address, certificates.Node, ExpectedServer.BaseNode);
        var client = new Admin.AdminClient(channel);

        await client.ListRegionsAsync(new ListRegionsRequest(), deadline: Deadline());
        var refused = await Assert.ThrowsAsync<RpcException>(
            () => client.GetClusterAsync(new GetClusterRequest(), deadline: Deadline()).ResponseAsync);

        Assert.Equal(StatusCode.PermissionDenied, refused.StatusCode);
        Assert.Equal(1, admin.Calls);
    }

    [Fact]
    public async Task A_node_certificate_without_a_node_identity_is_refused()
    {
        await using var server = await StartAsync(new CertificatePolicy().Allow(Admin.Descriptor.FullName, Callers.BaseNodes | Callers.SuperNodes),
            ClientCertificateMode.RequireCertificate);
        using var forged = certificates.Pki.NodeWithUris();
        using var channel = GrpcChannel.ForAddress($"https://{server.Address}", new GrpcChannelOptions
        {
            HttpHandler = new SocketsHttpHandler
            {
                SslOptions = new SslClientAuthenticationOptions
                {
                    ClientCertificates = [forged],
                    RemoteCertificateValidationCallback = certificates.Node.ValidateServerCertificate,
                },
            },
            DisposeHttpClient = true,
        });

        var refused = await Assert.ThrowsAsync<RpcException>(
            () => new Admin.AdminClient(channel).GetClusterAsync(new GetClusterRequest(), deadline: Deadline()).ResponseAsync);

        Assert.Equal(StatusCode.PermissionDenied, refused.StatusCode);
        Assert.Equal(RefusalReason.CertificateMismatch, RefusalReasons.Of(refused));
        Assert.Contains("names no node identity", refused.Status.Detail, StringComparison.Ordinal);
        Assert.Equal(0, admin.Calls);
    }

    /// <summary>
    /// Real Kestrel serving this test's <see cref="FixedAdmin"/> (so it can see what reached it) with TLS from a node
    /// certificate and <see cref="CertificateKindInterceptor"/> in front, as <see cref="ClusterNodeHost"/> sets it up.
    /// </summary>
    private Task<TlsGrpcTestServer> StartAsync(CertificatePolicy policy, ClientCertificateMode clientCertificates) =>
        TlsGrpcTestServer.StartAsync(
            certificates.Server,
            clientCertificates,
            services => services.AddCertificateKindInterceptor(certificates.Server, policy).AddSingleton(admin),
            app => app.MapGrpcService<FixedAdmin>());

    /// <summary>An admin service that answers a fixed cluster state and counts the calls that reach it.</summary>
    private sealed class FixedAdmin : Admin.AdminBase
    {
        public static readonly ClusterState State = new() { SelfAddress = "akka.ssl.tcp://test@127.0.0.1:1" };

        private int calls;

        public int Calls => Volatile.Read(ref calls);

        /// <summary>The node identity the last caller's certificate names, if it was a node.</summary>
        public NodeIdentity? LastCaller { get; private set; }

        public override Task<ClusterState> GetCluster(GetClusterRequest request, ServerCallContext context)
        {
            Interlocked.Increment(ref calls);
            try
            {
                LastCaller = CallerIdentity.Of(context);
            }
            catch (RpcException)
            {
                LastCaller = null;
            }
            return Task.FromResult(State);
        }

        public override Task<RegionList> ListRegions(ListRegionsRequest request, ServerCallContext context)
        {
            Interlocked.Increment(ref calls);
            return Task.FromResult(new RegionList());
        }
    }
}
