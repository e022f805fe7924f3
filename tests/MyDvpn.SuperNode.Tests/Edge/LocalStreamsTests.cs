using MyDvpn.Protocol.Control;
using MyDvpn.SuperNode.Edge;

namespace MyDvpn.SuperNode.Tests.Edge;

public sealed class LocalStreamsTests
{
    [Fact]
    public void Exits_counts_the_streams_of_exits_and_of_peers_that_are_both_and_follows_them_leaving()
    {
        var streams = new LocalStreams("sn-1", "eu-west");
        streams.Publish(Stream("client-1", PeerRole.Client, "s-1"));
        streams.Publish(Stream("exit-1", PeerRole.Exit, "s-2"));
        streams.Publish(Stream("both-1", PeerRole.Both, "s-3"));
        // An entry published again (its RTT or assignments changed) is the same stream.
        streams.Publish(Stream("exit-1", PeerRole.Exit, "s-2") with { LastRtt = TimeSpan.FromMilliseconds(3) });

        Assert.Equal((3, 2), (streams.Count, streams.Exits));

        streams.Remove("s-2");
        streams.Remove("s-2");
        streams.Remove("s-1");
        Assert.Equal((1, 1), (streams.Count, streams.Exits));
    }

    private static StreamInfo Stream(string peerId, PeerRole role, string sessionId) =>
        new(peerId, role, sessionId, "192.0.2.1:4000", DateTimeOffset.UnixEpoch, null);
}
