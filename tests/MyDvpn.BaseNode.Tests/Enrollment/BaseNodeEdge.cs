using System.Collections.Concurrent;
using System.Net;
using System.Security.Authentication;
using Akka.Actor;
using Akka.Cluster.Sharding;
using Akka.Hosting;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using MyDvpn.Hosting;
using MyDvpn.Protocol.SuperNode;
using MyDvpn.Security;

namespace MyDvpn.BaseNode.Tests.Enrollment;

/// <summary>
/// Stands in for a shard region on one node: routes each message by the real message extractor to a child entity
/// made by the real props factory, as sharding would (without passivation or rebalancing).
/// </summary>
internal sealed class ShardStandIn : ReceiveActor
{
    public ShardStandIn(IMessageExtractor extractor, Func<string, Props> entityProps)
    {
        ReceiveAny(message =>
        {
            if (extractor.EntityId(message) is not { } id)
            {
                Unhandled(message);
                return;
            }

            var entity = Context.Child(id);
            if (entity.IsNobody())
            {
                entity = Context.ActorOf(entityProps(id), id);
            }

            entity.Forward(extractor.EntityMessage(message));
        });
    }

    public static Props Props(IMessageExtractor extractor, Func<string, Props> entityProps) =>
        Akka.Actor.Props.Create(() => new ShardStandIn(extractor, entityProps));
}

/// <summary>An Akka.Hosting registry entry for an actor the test made.</summary>
internal sealed class StandInRegistryEntry<TKey>(IActorRef actor) : IRequiredActor<TKey>
{
    public IActorRef ActorRef => actor;

    public Task<IActorRef> GetAsync(CancellationToken cancel = default) => Task.FromResult(actor);
}

/// <summary>A real operator CA in a temporary directory (deleted on dispose), issuing real certificates.</summary>
internal sealed class TestPki : IDisposable
{
    private readonly DirectoryInfo _root = System.IO.Directory.CreateTempSubdirectory("mydvpn-basenode-pki-");
    private readonly List<TlsMaterial> _issued = [];

    public TestPki() => CertificateAuthority.Init(CaDir).Dispose();

    private string CaDir => Path.Combine(_root.FullName, "ca");

    public TlsMaterial Issue(string name, CertificateKind kind)
    {
        var dir = Path.Combine(_root.FullName, name);
        CertificateAuthority.Issue(CaDir, name, kind, [IPAddress.Loopback], ["localhost"], dir).Dispose();
        var tls = TlsMaterial.Load(dir);
        _issued.Add(tls);
        return tls;
    }

    public void Dispose()
    {
        _issued.ForEach(tls => tls.Dispose());
        _root.Delete(recursive: true);
    }
}

/// <summary>
/// A real Kestrel gRPC server on a free loopback port with TLS from a node certificate, requiring client certificates
/// of the operator CA and putting <see cref="CertificateKindInterceptor"/> in front, as <c>ClusterNodeHost</c> does.
/// </summary>
internal sealed class TestGrpcServer : IAsyncDisposable
{
    private readonly WebApplication _app;

    private TestGrpcServer(WebApplication app, HostPort address)
    {
        _app = app;
        Address = address;
    }

    public HostPort Address { get; }

    public static async Task<TestGrpcServer> StartAsync(
        TlsMaterial tls,
        CertificatePolicy policy,
        Action<IServiceCollection> addServices,
        Action<WebApplication> mapServices)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            EnvironmentName = "Production",
            ContentRootPath = AppContext.BaseDirectory,
        });
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, 0, listen =>
        {
            listen.Protocols = HttpProtocols.Http2;
            listen.UseHttps(https =>
            {
                https.ServerCertificate = tls.Certificate;
                https.SslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13;
                https.ClientCertificateMode = ClientCertificateMode.RequireCertificate;
                https.ClientCertificateValidation = (certificate, _, _) => tls.ValidatePeer(certificate, null, out _);
            });
        }));
        builder.Services.AddSingleton(tls);
        builder.Services.AddSingleton(policy);
        builder.Services.AddSingleton<CertificateKindInterceptor>();
        builder.Services.AddGrpc(o => o.Interceptors.Add<CertificateKindInterceptor>());
        addServices(builder.Services);

        var app = builder.Build();
        mapServices(app);
        try
        {
            await app.StartAsync();
            var bound = new Uri(app.Urls.Single());
            return new TestGrpcServer(app, new HostPort(bound.Host, bound.Port));
        }
        catch
        {
            await app.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}

/// <summary>A SuperNode's peer service that records revocations and answers with the sessions it is given.</summary>
internal sealed class FakeSuperNode(SessionList sessions) : SuperNodePeers.SuperNodePeersBase
{
    public ConcurrentQueue<RevokeRequest> Revoked { get; } = new();

    public override Task<RevokeResponse> Revoke(RevokeRequest request, ServerCallContext context)
    {
        Revoked.Enqueue(request);
        return Task.FromResult(new RevokeResponse { StreamClosed = true });
    }

    public override Task<SessionList> ListSessions(ListLocalSessionsRequest request, ServerCallContext context) =>
        Task.FromResult(sessions);
}
