using Grpc.Core;
using Grpc.Health.V1;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using MyDvpn.BaseNode.Directory;
using MyDvpn.BaseNode.Enrollment;
using MyDvpn.Security;

namespace MyDvpn.BaseNode.Tests.Enrollment;

/// <summary>The BaseNode opening its connections to SuperNodes ahead of need, against real Kestrel with mutual TLS.</summary>
public sealed class SuperNodeClientsTests : IAsyncLifetime
{
    private readonly TestPki _pki = new();
    private readonly CountingHealth _health = new();
    private TlsGrpcTestServer _server = null!;
    private SuperNodeClients _clients = null!;

    public async Task InitializeAsync()
    {
        var superNodeTls = _pki.Issue(NodeIdentity.Super("sn-1", "eu-west"));
        _server = await TlsGrpcTestServer.StartAsync(superNodeTls, ClientCertificateMode.RequireCertificate,
            services => services.AddSingleton(_health), app => app.MapGrpcService<CountingHealth>());
        // A deadline far above the production one: on a loaded CI host a check on an open connection once took over
        // 2 s, and what is tested here is when a check is made, not how fast it is answered.
        _clients = new SuperNodeClients(_pki.Issue(NodeIdentity.Base("base-1")), NullLogger<SuperNodeClients>.Instance)
        {
            CallTimeout = TimeSpan.FromSeconds(30),
        };
    }

    public async Task DisposeAsync()
    {
        _clients.Dispose();
        await _server.DisposeAsync();
        _pki.Dispose();
    }

    [Fact]
    public async Task A_SuperNode_is_connected_to_once_until_the_check_is_due_again_and_one_that_does_not_answer_holds_up_nothing()
    {
        var now = new DateTimeOffset(2030, 1, 1, 12, 0, 0, TimeSpan.Zero);
        var up = Node("sn-1", _server.Address.ToString());
        var down = Node("sn-2", $"127.0.0.1:{ClosedPort()}");

        await _clients.ConnectAsync([up, down], now, CancellationToken.None);
        await _clients.ConnectAsync([up, down], now + SuperNodeClients.ConnectedFor - TimeSpan.FromSeconds(1), CancellationToken.None);
        Assert.Equal(1, _health.Checks);

        await _clients.ConnectAsync([up, down], now + SuperNodeClients.ConnectedFor, CancellationToken.None);
        Assert.Equal(2, _health.Checks);
    }

    private static SuperNodeInfo Node(string id, string endpoint) => new(id, "eu-west", endpoint, "127.0.0.1", 40000, 40099, 100);

    /// <summary>A loopback port nothing listens on (bound, then released).</summary>
    private static int ClosedPort()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }

    private sealed class CountingHealth : Health.HealthBase
    {
        private int _checks;

        public int Checks => Volatile.Read(ref _checks);

        public override Task<HealthCheckResponse> Check(HealthCheckRequest request, ServerCallContext context)
        {
            Interlocked.Increment(ref _checks);
            return Task.FromResult(new HealthCheckResponse { Status = HealthCheckResponse.Types.ServingStatus.Serving });
        }
    }
}
