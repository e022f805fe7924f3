using MyDvpn.Protocol.Control;

namespace MyDvpn.Peer.Commands;

/// <summary>Apply <paramref name="Command"/> unless its id was applied already; the answer goes back to the sender.</summary>
/// <remarks>Protobuf messages are mutable: neither side changes one after sending it.</remarks>
public sealed record ExecuteCommand(Command Command);

/// <summary>The answer to an <see cref="ExecuteCommand"/>: the first answer given to that command id.</summary>
public sealed record CommandAnswered(CommandResponse Response);
