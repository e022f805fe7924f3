using MyDvpn.Protocol.Control;
using MyDvpn.SuperNode.Edge;

namespace MyDvpn.SuperNode.Tests.Edge;

/// <summary>What a SuperNode notes of its streams for the directory: when each peer was last seen connect or leave.</summary>
public sealed class PeerSightingsTests
{
    private static readonly DateTimeOffset T0 = new(2030, 1, 1, 12, 0, 0, TimeSpan.Zero);

    [Fact]
    public void A_stream_is_seen_when_it_is_first_published_and_when_it_is_removed_not_on_every_update()
    {
        var sightings = new PeerSightings();
        var clock = new ManualTimeProvider(T0);
        var streams = new LocalStreams("sn-1", "eu-west", sightings, clock);
        var stream = new StreamInfo("peer-1", PeerRole.Exit, "session-1", "192.0.2.1:5000", T0, null);

        streams.Publish(stream);
        streams.Publish(stream with { LastRtt = TimeSpan.FromMilliseconds(3) });
        var connected = Assert.Single(sightings.Take());
        var left = clock.Advance(TimeSpan.FromMinutes(1));
        streams.Remove("session-1");
        streams.Remove("session-1");

        Assert.Equal(("peer-1", (int)PeerRole.Exit, T0, true), (connected.PeerId, connected.Role, connected.At.ToDateTimeOffset(), connected.Connected));
        var ended = Assert.Single(sightings.Take());
        Assert.Equal((left, false), (ended.At.ToDateTimeOffset(), ended.Connected));
    }

    [Fact]
    public void A_sighting_given_back_after_a_failed_report_does_not_replace_a_later_one()
    {
        var sightings = new PeerSightings();
        sightings.Seen("peer-1", PeerRole.Client, T0, connected: true);
        var inFlight = sightings.Take();
        sightings.Seen("peer-1", PeerRole.Client, T0.AddMinutes(1), connected: false);

        sightings.PutBack(inFlight);

        var kept = Assert.Single(sightings.Take());
        Assert.False(kept.Connected);
        Assert.Empty(sightings.Take());
    }
}
