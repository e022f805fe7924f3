using System.Net;

namespace MyDvpn.SuperNode.Exits;

/// <summary>The relay legs this SuperNode holds for assignments whose direct path failed (ARCHITECTURE §4 Relay).</summary>
public interface IRelayLegs
{
    /// <summary>
    /// Opens the leg of <paramref name="side"/> ("client" or "exit") of the assignment here (or returns the one open):
    /// it takes packets only from <paramref name="peerAddress"/> (and its partner); <paramref name="peerEndpoint"/> is
    /// where the peer's WireGuard listens when known (an exit), else it is learned from the peer's first packet.
    /// Returns the leg's public endpoint.
    /// </summary>
    Task<IPEndPoint> OpenAsync(string assignmentId, string side, IPAddress peerAddress, IPEndPoint? peerEndpoint, CancellationToken cancellationToken);

    /// <summary>The other end of the chain: the other leg, here or on another SuperNode.</summary>
    void SetPartner(string assignmentId, string side, IPEndPoint partner);

    /// <summary>Closes every leg of the assignment here; returns how many were open.</summary>
    Task<int> CloseAsync(string assignmentId);
}

public static class RelaySides
{
    public const string Client = "client", Exit = "exit";
}
