using System.Globalization;
using MyDvpn.SuperNode.Sessions;

namespace MyDvpn.SuperNode.Tests.Sessions;

public sealed class MessageExtractorTests
{
    private readonly PeerSessionMessageExtractor _extractor = new();

    public static TheoryData<object> PeerMessages() =>
    [
        new GetPeerState("peer-1"),
        new RevokePeer("peer-1"),
        new CommandAnswered("peer-1", new()),
        new IssueCommand("peer-1", new()),
        new CommandOutcomeFor("peer-1", new CommandOutcome("other", "cmd", null, "x")),
    ];

    [Theory]
    [MemberData(nameof(PeerMessages))]
    public void Message_for_a_peer_goes_to_that_peers_entity_in_a_fixed_shard(object message)
    {
        var shard = _extractor.ShardId(_extractor.EntityId(message)!, message);

        Assert.Equal("peer-1", _extractor.EntityId(message));
        Assert.Same(message, _extractor.EntityMessage(message));
        Assert.Equal(_extractor.ShardId("peer-1", null), shard);
        Assert.InRange(int.Parse(shard, CultureInfo.InvariantCulture), 0, PeerSessionMessageExtractor.ShardCount - 1);
    }

    [Fact]
    public void Message_without_a_peer_id_is_not_routed()
    {
        Assert.Null(_extractor.EntityId(new PeerRevoked("peer-1")));
        Assert.Null(_extractor.EntityId(StopPeerSession.Instance));
        Assert.Null(_extractor.EntityId("hello"));
    }

    [Fact]
    public void Peers_spread_over_the_shards()
    {
        var shards = Enumerable.Range(0, 1000).Select(i => _extractor.ShardId($"peer-{i}", null)).Distinct().Count();

        Assert.True(shards > PeerSessionMessageExtractor.ShardCount / 2, $"1000 peers fell into {shards} shards");
    }
}
