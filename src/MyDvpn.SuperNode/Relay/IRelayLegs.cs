using System.Net;

namespace MyDvpn.SuperNode.Relay;

/// <summary>The relay legs this SuperNode holds for assignments whose direct path failed (ARCHITECTURE §4 Relay).</summary>
public interface IRelayLegs
{
    /// <summary>
    /// Opens the leg of <paramref name="side"/> ("client" or "exit") of the assignment here (or returns the one open):
    /// it takes packets only from <paramref name="peerAddress"/> (and its partner), and sends to the peer only after the
    /// peer sent to it, to the port it sent from; <paramref name="peerEndpoint"/> is where the peer's WireGuard is said to
    /// listen (an exit's endpoint), shown but never sent to before the peer was heard.
    /// Returns the leg's public endpoint. <paramref name="owner"/> is the client's session, which holds the chain: it
    /// hears when the leg goes away before the chain does (this SuperNode shutting down).
    /// </summary>
    /// <exception cref="RelayDrainingException">This SuperNode is shutting down: another one of its region takes the leg.</exception>
    Task<IPEndPoint> OpenAsync(string assignmentId, string side, IPAddress peerAddress, IPEndPoint? peerEndpoint, RelayLegOwner owner,
        CancellationToken cancellationToken);

    /// <summary>The address the leg of <paramref name="side"/> takes packets from; null when no such leg is open here.</summary>
    IPAddress? PeerAddressOf(string assignmentId, string side);

    /// <summary>The other end of the chain: the other leg, here or on another SuperNode.</summary>
    void SetPartner(string assignmentId, string side, IPEndPoint partner);

    /// <summary>Closes every leg of the assignment here; returns how many were open.</summary>
    Task<int> CloseAsync(string assignmentId);
}

/// <summary>The session that holds a relay chain: the client's, in <paramref name="Region"/>.</summary>
public sealed record RelayLegOwner(string Region, string ClientPeerId);

/// <summary>Thrown by <see cref="IRelayLegs.OpenAsync"/> while this SuperNode hands its legs over and shuts down.</summary>
public sealed class RelayDrainingException(string message) : Exception(message);

public static class RelaySides
{
    public const string Client = "client", Exit = "exit";
}
