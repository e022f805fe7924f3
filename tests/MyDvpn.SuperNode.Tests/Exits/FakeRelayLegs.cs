using System.Collections.Concurrent;
using System.Net;
using Akka.Actor;
using MyDvpn.SuperNode.Exits;

namespace MyDvpn.SuperNode.Tests.Exits;

/// <summary>
/// Stands in for this SuperNode's relay legs (in production the <c>RelayService</c>, tested on real sockets in
/// <c>RelayServiceTests</c>): every call is told to <paramref name="observer"/> (a TestProbe) as a
/// <see cref="RelayLegOpened"/>, <see cref="RelayPartnerSet"/> or <see cref="RelayLegsClosed"/>, in call order. A leg
/// opens at <see cref="LegEndpoint"/>.
/// </summary>
public sealed class FakeRelayLegs(IActorRef observer) : IRelayLegs
{
    private readonly ConcurrentDictionary<(string AssignmentId, string Side), IPEndPoint> _open = new();

    public IPEndPoint LegEndpoint { get; init; } = IPEndPoint.Parse("192.0.2.1:30000");

    public Task<IPEndPoint> OpenAsync(string assignmentId, string side, IPAddress peerAddress, IPEndPoint? peerEndpoint,
        CancellationToken cancellationToken)
    {
        observer.Tell(new RelayLegOpened(assignmentId, side, peerAddress, peerEndpoint));
        return Task.FromResult(_open.GetOrAdd((assignmentId, side), LegEndpoint));
    }

    public void SetPartner(string assignmentId, string side, IPEndPoint partner) =>
        observer.Tell(new RelayPartnerSet(assignmentId, side, partner));

    public Task<int> CloseAsync(string assignmentId)
    {
        var closed = _open.Keys.Where(k => k.AssignmentId == assignmentId).Count(k => _open.TryRemove(k, out _));
        observer.Tell(new RelayLegsClosed(assignmentId));
        return Task.FromResult(closed);
    }
}

public sealed record RelayLegOpened(string AssignmentId, string Side, IPAddress PeerAddress, IPEndPoint? PeerEndpoint);

public sealed record RelayPartnerSet(string AssignmentId, string Side, IPEndPoint Partner);

public sealed record RelayLegsClosed(string AssignmentId);
