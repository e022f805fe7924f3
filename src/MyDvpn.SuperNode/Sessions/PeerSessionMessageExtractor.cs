using MyDvpn.Hosting;

namespace MyDvpn.SuperNode.Sessions;

/// <summary>Names of the sharded entity types of a region's cluster.</summary>
public static class PeerSessionEntityTypes
{
    public const string Peers = "peers";
}

/// <summary>Routes <see cref="IWithPeerId"/> messages to the peer's <see cref="PeerSession"/>.</summary>
public sealed class PeerSessionMessageExtractor() : EntityMessageExtractor<IWithPeerId>(ShardCount, message => message.PeerId)
{
    public const int ShardCount = 100;
}
