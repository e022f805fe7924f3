using Akka.Cluster.Sharding;

namespace MyDvpn.Hosting;

/// <summary>
/// How messages find the entities of one sharded entity type: a <typeparamref name="TMessage"/> (the type's marker
/// interface, e.g. <c>IWithPeerId</c>) goes to the entity <paramref name="entityId"/> names, in one of
/// <paramref name="shardCount"/> shards (by the hash of the id); any other message is not for this type (null).
/// A shard count is fixed for good once the type runs: changing it moves entities to other shards.
/// </summary>
public class EntityMessageExtractor<TMessage>(int shardCount, Func<TMessage, string> entityId)
    : HashCodeMessageExtractor(shardCount)
{
    public sealed override string? EntityId(object message) => message is TMessage routed ? entityId(routed) : null;
}
