using System.Collections.Concurrent;
using System.Net;
using Akka.Actor;
using MyDvpn.SuperNode.Relay;

namespace MyDvpn.SuperNode.Tests.Relay;

/// <summary>
/// Stands in for this SuperNode's relay legs (in production the <c>RelayService</c>, tested on real sockets in
/// <c>RelayServiceTests</c>): every call is told to <paramref name="observer"/> (a TestProbe) as a
/// <see cref="RelayLegOpened"/>, <see cref="RelayPartnerSet"/> or <see cref="RelayLegsClosed"/>, in call order. A leg
/// opens at <see cref="LegEndpoint"/>.
/// </summary>
public sealed class FakeRelayLegs(IActorRef observer) : IRelayLegs
{
    private readonly ConcurrentDictionary<(string AssignmentId, string Side), IPEndPoint> _open = new();
    private readonly ConcurrentDictionary<(string AssignmentId, string Side), IPAddress> _peers = new();

    /// <summary>Where legs opened from now on are (a restarted SuperNode may give a new leg another port).</summary>
    public IPEndPoint LegEndpoint { get; set; } = IPEndPoint.Parse("192.0.2.1:30000");

    public Task<IPEndPoint> OpenAsync(string assignmentId, string side, IPAddress peerAddress, IPEndPoint? peerEndpoint, RelayLegOwner owner,
        CancellationToken cancellationToken)
    {
        observer.Tell(new RelayLegOpened(assignmentId, side, peerAddress, peerEndpoint, owner));
        _peers[(assignmentId, side)] = peerAddress;
        return Task.FromResult(_open.GetOrAdd((assignmentId, side), LegEndpoint));
    }

    public IPAddress? PeerAddressOf(string assignmentId, string side) =>
        _open.ContainsKey((assignmentId, side)) ? _peers.GetValueOrDefault((assignmentId, side)) : null;

    /// <summary>The legs are gone as after a restart of the SuperNode (legs live in memory).</summary>
    public void Forget() => _open.Clear();

    public void SetPartner(string assignmentId, string side, IPEndPoint partner) =>
        observer.Tell(new RelayPartnerSet(assignmentId, side, partner));

    public Task<int> CloseAsync(string assignmentId)
    {
        var closed = _open.Keys.Where(k => k.AssignmentId == assignmentId).Count(k => _open.TryRemove(k, out _));
        observer.Tell(new RelayLegsClosed(assignmentId));
        return Task.FromResult(closed);
    }
}

public sealed record RelayLegOpened(string AssignmentId, string Side, IPAddress PeerAddress, IPEndPoint? PeerEndpoint, RelayLegOwner Owner);

public sealed record RelayPartnerSet(string AssignmentId, string Side, IPEndPoint Partner);

public sealed record RelayLegsClosed(string AssignmentId);
