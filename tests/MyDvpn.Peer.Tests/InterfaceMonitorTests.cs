using System.Collections.Immutable;
using Akka.Actor;
using MyDvpn.DataPlane;
using MyDvpn.Peer.Commands;
using MyDvpn.Peer.Tunnel;
using MyDvpn.Security;
using Xunit.Abstractions;

namespace MyDvpn.Peer.Tests;

/// <summary>
/// The monitor reports the interface on its interval, and after an exit change at once when the first handshake with the
/// new exit completes or the wait for it ran out. The WireGuard actor is a probe that answers readings the test chooses;
/// the timers run on a manual clock.
/// </summary>
public sealed class InterfaceMonitorTests : Akka.TestKit.Xunit2.TestKit
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(5);
    private static readonly PeerTimings Timings = new();
    private static readonly byte[] ExitKey = Enumerable.Repeat((byte)0xE1, 32).ToArray();

    private readonly ManualTimeProvider clock = new();
    private readonly Akka.TestKit.TestProbe wireGuard;
    private readonly Akka.TestKit.TestProbe reports;
    private readonly IActorRef monitor;

    public InterfaceMonitorTests(ITestOutputHelper output)
        : base("akka.loglevel = INFO", nameof(InterfaceMonitorTests), output)
    {
        wireGuard = CreateTestProbe();
        reports = CreateTestProbe();
        var tunnel = new WireGuardTunnel(new DataPlaneSettings("wg-test", null, null, 1, 51820), WireGuardKey.Generate(), Patience, servesClients: false);
        tunnel.Attach(wireGuard.Ref);
        monitor = Sys.ActorOf(InterfaceMonitor.Props(tunnel, reports.Ref, Timings, clock));
    }

    [Fact]
    public void The_interface_is_read_and_reported_every_interval()
    {
        AwaitSubscribed();
        clock.Advance(Timings.StatusReportInterval);
        Answer(Reading(handshake: null));

        Assert.Null(reports.ExpectMsg<InterfaceReadingChanged>(Patience).Reading!.Peers[0].LastHandshake);
    }

    [Fact]
    public void After_a_set_up_the_first_handshake_is_reported_at_once()
    {
        var since = Assigned();
        Answer(Reading(handshake: null));
        reports.ExpectNoMsg(TimeSpan.FromMilliseconds(100));

        clock.Advance(Timings.HandshakeWatchInterval);
        Answer(Reading(handshake: since + TimeSpan.FromMilliseconds(200)));

        Assert.Equal(since + TimeSpan.FromMilliseconds(200), reports.ExpectMsg<InterfaceReadingChanged>(Patience).Reading!.Peers[0].LastHandshake);
        // The watch is over: only the interval reads again.
        clock.Advance(Timings.HandshakeWatchInterval);
        wireGuard.ExpectNoMsg(TimeSpan.FromMilliseconds(100));
    }

    [Fact]
    public void After_a_set_up_without_a_handshake_the_reading_is_reported_once_the_wait_ran_out()
    {
        var since = Assigned();
        Answer(Reading(handshake: null));
        var reads = 0;
        while (clock.GetUtcNow() + Timings.HandshakeWatchInterval < since + Timings.FirstHandshakeWithin)
        {
            clock.Advance(Timings.HandshakeWatchInterval);
            // A handshake from before the set-up (the old exit's) does not settle the wait.
            Answer(Reading(handshake: since - TimeSpan.FromMinutes(1)));
            reads++;
        }
        reports.ExpectNoMsg(TimeSpan.FromMilliseconds(100));
        Assert.True(reads >= 5, $"read {reads} times within the wait");

        clock.Advance(Timings.HandshakeWatchInterval);
        Answer(Reading(handshake: null));

        Assert.Null(reports.ExpectMsg<InterfaceReadingChanged>(Patience).Reading!.Peers[0].LastHandshake);
    }

    [Theory]
    [InlineData(null, 1999, false)]
    [InlineData(null, 2000, true)]
    [InlineData(-5000, 500, false)]
    [InlineData(-900, 500, true)]
    [InlineData(300, 500, true)]
    public void A_watch_is_settled_by_a_handshake_since_the_change_or_by_the_time_running_out(int? handshakeMs, int nowMs, bool settled)
    {
        var start = DateTimeOffset.Parse("2026-12-06T00:00:00Z", System.Globalization.CultureInfo.InvariantCulture);
        var watch = HandshakeWatch.Start(start, TimeSpan.FromSeconds(2));
        var reading = Reading(handshakeMs is { } ms ? start + TimeSpan.FromMilliseconds(ms) : null);

        Assert.Equal(settled, watch.SettledBy(reading, start + TimeSpan.FromMilliseconds(nowMs)));
    }

    private DateTimeOffset Assigned()
    {
        AwaitSubscribed();
        var since = clock.GetUtcNow();
        Sys.EventStream.Publish(new ExitChanged.Assigned("as-1", "exit-1", "us-east", "198.51.100.7:51820"));
        return since;
    }

    /// <summary>The monitor subscribes in PreStart; a probe read proves it ran.</summary>
    private void AwaitSubscribed()
    {
        monitor.Tell(new InterfaceRead(null));
        reports.ExpectMsg<InterfaceReadingChanged>(Patience);
    }

    private void Answer(InterfaceReading reading)
    {
        wireGuard.ExpectMsg<ReadInterface>(Patience);
        wireGuard.Reply(new InterfaceRead(reading));
    }

    private static InterfaceReading Reading(DateTimeOffset? handshake) =>
        new("wg-test", new byte[32], 51820,
            [new PeerReading(ExitKey, "198.51.100.7:51820", handshake, 0, 0, ["0.0.0.0/0"])], "wireguard-go");
}
