namespace MyDvpn.SuperNode.Relay;

/// <summary>Every port of <c>--relay-ports</c> is taken: by relay legs, or by other sockets on this host.</summary>
public sealed class RelayPortsExhaustedException(string message) : InvalidOperationException(message);
