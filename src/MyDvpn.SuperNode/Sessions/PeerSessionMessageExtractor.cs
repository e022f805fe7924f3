using Akka.Cluster.Sharding;

namespace MyDvpn.SuperNode.Sessions;

/// <summary>Names of the sharded entity types of a region's cluster.</summary>
public static class PeerSessionEntityTypes
{
    public const string Peers = "peers";
}

/// <summary>Routes <see cref="IWithPeerId"/> messages to the peer's <see cref="PeerSession"/>.</summary>
public sealed class PeerSessionMessageExtractor : HashCodeMessageExtractor
{
    public const int ShardCount = 100;

    public PeerSessionMessageExtractor()
        : base(ShardCount)
    {
    }

    public override string? EntityId(object message) => message switch
    {
        IWithPeerId withPeerId => withPeerId.PeerId,
        _ => null,
    };
}
