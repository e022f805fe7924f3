using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using MyDvpn.Hosting;
using MyDvpn.Protocol.Control;
using MyDvpn.Protocol.SuperNode;
using MyDvpn.Security;

namespace MyDvpn.SuperNode.Tests.Edge;

/// <summary>
/// <see cref="SuperNodeHost.Policy"/> in front of stand-ins of the SuperNode's node-facing services, on real Kestrel with
/// mutual TLS and real certificates: who may call what.
/// </summary>
public sealed class ServicePolicyTests : IAsyncLifetime
{
    private readonly TempDirectory temp = new();
    private readonly List<TlsMaterial> loaded = [];
    private readonly CountingPeers peers = new();
    private readonly CountingExits exits = new();
    private TlsGrpcTestServer server = null!;
    private Pki pki = null!;

    public async Task InitializeAsync()
    {
        pki = new Pki(temp);
        var tls = Load(pki.IssueSuper("sn-eu-1", "eu-west"));
        server = await TlsGrpcTestServer.StartAsync(tls, ClientCertificateMode.AllowCertificate,
            services => services.AddCertificateKindInterceptor(tls, SuperNodeHost.Policy).AddSingleton(peers).AddSingleton(exits),
            app =>
            {
                app.MapGrpcService<CountingPeers>();
                app.MapGrpcService<CountingExits>();
            });
    }

    public async Task DisposeAsync()
    {
        await server.DisposeAsync();
        loaded.ForEach(tls => tls.Dispose());
        temp.Dispose();
    }

    [Fact]
    public async Task A_SuperNode_certificate_cannot_call_SuperNodePeers()
    {
        using var channel = GrpcChannels.MutualTls(server.Address, Load(pki.IssueSuper("sn-eu-2", "eu-west")), ExpectedServer.SuperNodeOf("eu-west"));

        var refused = await Assert.ThrowsAsync<RpcException>(() =>
            new SuperNodePeers.SuperNodePeersClient(channel).ListSessionsAsync(new ListLocalSessionsRequest()).ResponseAsync);

        Assert.Equal(StatusCode.PermissionDenied, refused.StatusCode);
        Assert.Equal(RefusalReason.CertificateMismatch, RefusalReasons.Of(refused));
        Assert.Contains("needs an operator-issued BaseNode certificate: the certificate names SuperNode sn-eu-2 of region eu-west",
            refused.Status.Detail, StringComparison.Ordinal);
        Assert.Equal(0, peers.Calls);
    }

    [Fact]
    public async Task A_BaseNode_certificate_may_call_SuperNodePeers()
    {
        using var channel = GrpcChannels.MutualTls(server.Address, Load(pki.IssueBase("base-1")), ExpectedServer.SuperNodeOf("eu-west"));

        await new SuperNodePeers.SuperNodePeersClient(channel).ListSessionsAsync(new ListLocalSessionsRequest());

        Assert.Equal(1, peers.Calls);
    }

    [Fact]
    public async Task A_BaseNode_certificate_cannot_call_ExitAllocation_but_may_list_the_exits()
    {
        using var channel = GrpcChannels.MutualTls(server.Address, Load(pki.IssueBase("base-1")), ExpectedServer.SuperNodeOf("eu-west"));
        var client = new ExitAllocation.ExitAllocationClient(channel);

        var refused = await Assert.ThrowsAsync<RpcException>(() =>
            client.AllocateExitAsync(new AllocateExitRequest { Region = "eu-west" }).ResponseAsync);
        await client.ListExitsAsync(new ListExitsRequest { Region = "eu-west" });

        Assert.Equal(StatusCode.PermissionDenied, refused.StatusCode);
        Assert.Equal(RefusalReason.CertificateMismatch, RefusalReasons.Of(refused));
        Assert.Contains("needs an operator-issued SuperNode certificate: the certificate names BaseNode base-1", refused.Status.Detail, StringComparison.Ordinal);
        Assert.Equal((0, 1), (exits.Allocations, exits.Lists));
    }

    [Fact]
    public async Task A_SuperNode_of_another_region_may_call_ExitAllocation()
    {
        using var channel = GrpcChannels.MutualTls(server.Address, Load(pki.IssueSuper("sn-us-1", "us-east")), ExpectedServer.SuperNodeOf("eu-west"));

        await new ExitAllocation.ExitAllocationClient(channel).AllocateExitAsync(new AllocateExitRequest { Region = "eu-west" });

        Assert.Equal(1, exits.Allocations);
    }

    [Fact]
    public async Task A_caller_without_a_certificate_cannot_call_either()
    {
        using var channel = Grpc.Net.Client.GrpcChannel.ForAddress($"https://{server.Address}", new Grpc.Net.Client.GrpcChannelOptions
        {
            HttpHandler = new SocketsHttpHandler
            {
                SslOptions = new System.Net.Security.SslClientAuthenticationOptions { RemoteCertificateValidationCallback = (_, _, _, _) => true },
            },
            DisposeHttpClient = true,
        });

        var peersRefused = await Assert.ThrowsAsync<RpcException>(() =>
            new SuperNodePeers.SuperNodePeersClient(channel).ListSessionsAsync(new ListLocalSessionsRequest()).ResponseAsync);
        var exitsRefused = await Assert.ThrowsAsync<RpcException>(() =>
            new ExitAllocation.ExitAllocationClient(channel).ListExitsAsync(new ListExitsRequest()).ResponseAsync);

        Assert.Equal((StatusCode.PermissionDenied, StatusCode.PermissionDenied), (peersRefused.StatusCode, exitsRefused.StatusCode));
        Assert.Equal((0, 0), (peers.Calls, exits.Lists));
    }

    private TlsMaterial Load(string dir)
    {
        var tls = TlsMaterial.Load(dir);
        loaded.Add(tls);
        return tls;
    }

    private sealed class CountingPeers : SuperNodePeers.SuperNodePeersBase
    {
        private int calls;

        public int Calls => Volatile.Read(ref calls);

        public override Task<SessionList> ListSessions(ListLocalSessionsRequest request, ServerCallContext context)
        {
            Interlocked.Increment(ref calls);
            return Task.FromResult(new SessionList());
        }
    }

    private sealed class CountingExits : ExitAllocation.ExitAllocationBase
    {
        private int allocations, lists;

        public int Allocations => Volatile.Read(ref allocations);

        public int Lists => Volatile.Read(ref lists);

        public override Task<Protocol.SuperNode.ExitAssignment> AllocateExit(AllocateExitRequest request, ServerCallContext context)
        {
            Interlocked.Increment(ref allocations);
            return Task.FromResult(new Protocol.SuperNode.ExitAssignment());
        }

        public override Task<ExitPoolView> ListExits(ListExitsRequest request, ServerCallContext context)
        {
            Interlocked.Increment(ref lists);
            return Task.FromResult(new ExitPoolView());
        }
    }
}
