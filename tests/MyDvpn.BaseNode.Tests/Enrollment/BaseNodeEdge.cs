using System.Collections.Concurrent;
using Akka.Actor;
using Akka.Cluster.Sharding;
using Akka.Hosting;
using Grpc.Core;
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

/// <summary>
/// A real operator CA in a temporary directory (deleted on dispose), issuing real certificates as loaded TLS material
/// that it also disposes.
/// </summary>
internal sealed class TestPki : IDisposable
{
    private readonly TempDirectory _temp = new();
    private readonly Pki _pki;
    private readonly List<TlsMaterial> _issued = [];

    public TestPki() => _pki = new Pki(_temp);

    /// <summary>The CA's directory, as <c>mydvpn ca --dir</c> names it.</summary>
    public string CaDir => _pki.CaDir;

    /// <summary>A new empty directory that goes with the CA's (a node's data dir).</summary>
    public string Sub(string name) => _temp.Sub(name);

    public TlsMaterial Issue(NodeIdentity node) => Keep(TlsMaterial.Load(_pki.IssueNode(node)));

    public TlsMaterial IssueAdmin(string name) => Keep(TlsMaterial.Load(_pki.IssueAdmin(name)));

    private TlsMaterial Keep(TlsMaterial tls)
    {
        _issued.Add(tls);
        return tls;
    }

    public void Dispose()
    {
        _issued.ForEach(tls => tls.Dispose());
        _temp.Dispose();
    }
}

/// <summary>A SuperNode's peer service that records revocations and answers with the sessions it is given.</summary>
internal sealed class FakeSuperNode(SessionList sessions) : SuperNodePeers.SuperNodePeersBase
{
    public ConcurrentQueue<RevokeRequest> Revoked { get; } = new();

    public ConcurrentQueue<UnrevokeRequest> Unrevoked { get; } = new();

    public override Task<UnrevokeResponse> Unrevoke(UnrevokeRequest request, ServerCallContext context)
    {
        Unrevoked.Enqueue(request);
        return Task.FromResult(new UnrevokeResponse());
    }

    public override Task<RevokeResponse> Revoke(RevokeRequest request, ServerCallContext context)
    {
        Revoked.Enqueue(request);
        return Task.FromResult(new RevokeResponse { StreamClosed = true });
    }

    public override Task<SessionList> ListSessions(ListLocalSessionsRequest request, ServerCallContext context) =>
        Task.FromResult(sessions);
}

/// <summary>
/// A SuperNode's exit allocation service that answers <c>ListExits</c> with what <paramref name="answer"/> gives (or
/// throws) and records who asked what, by the common name of the caller's certificate.
/// </summary>
internal sealed class FakeExitAllocation(Func<ListExitsRequest, ExitPoolView> answer) : ExitAllocation.ExitAllocationBase
{
    public ConcurrentQueue<(ListExitsRequest Request, string? Caller)> Asked { get; } = new();

    public override Task<ExitPoolView> ListExits(ListExitsRequest request, ServerCallContext context)
    {
        Asked.Enqueue((request, context.AuthContext.FindPropertiesByName("x509_common_name").FirstOrDefault()?.Value));
        return Task.FromResult(answer(request));
    }
}
