using System.Collections.Immutable;
using Akka.Actor;
using MyDvpn.DataPlane;
using MyDvpn.Peer.Commands;
using MyDvpn.Peer.Tunnel;
using MyDvpn.Security;
using Xunit.Abstractions;

namespace MyDvpn.Peer.Tests;

/// <summary>
/// The monitor reads the interface every second and reports it on its interval; after an exit change at once when the
/// first handshake with the new exit completes or the wait for it ran out; and at once when a silent path fails its ping.
/// The WireGuard actor is a probe that answers readings the test chooses; the ping's answer is the test's too (the real
/// ICMP path test runs in the netns tests); the timers run on a manual clock.
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
    private readonly WireGuardTunnel tunnel;
    private readonly ChosenProber prober = new();
    private ClientExit? exit;

    public InterfaceMonitorTests(ITestOutputHelper output)
        : base("akka.loglevel = INFO", nameof(InterfaceMonitorTests), output)
    {
        wireGuard = CreateTestProbe();
        reports = CreateTestProbe();
        tunnel = new WireGuardTunnel(new DataPlaneSettings("wg-test", null, null, 1, 51820), WireGuardKey.Generate(), Patience, servesClients: false);
        tunnel.Attach(wireGuard.Ref);
        monitor = Sys.ActorOf(InterfaceMonitor.Props(tunnel, reports.Ref, Timings, clock, () => exit, prober));
    }

    [Fact]
    public void The_interface_is_read_every_second_and_reported_every_interval()
    {
        AwaitSubscribed();
        for (var read = 1; read < Timings.StatusReportInterval / Timings.PathCheckInterval; read++)
        {
            clock.Advance(Timings.PathCheckInterval);
            Answer(Reading(handshake: null));
        }
        reports.ExpectNoMsg(TimeSpan.FromMilliseconds(100));

        clock.Advance(Timings.PathCheckInterval);
        Answer(Reading(handshake: null));

        Assert.Null(reports.ExpectMsg<InterfaceReadingChanged>(Patience).Reading!.Peers[0].LastHandshake);
    }

    [Fact]
    public void A_path_that_goes_silent_while_sending_is_pinged_and_reported_at_once_when_the_ping_goes_unanswered()
    {
        exit = ExitWithTunnelAddress("100.96.0.1");
        AwaitSubscribed();
        clock.Advance(Timings.PathCheckInterval);
        Answer(Reading(handshake: null, rx: 1000, tx: 1000));
        var silentSince = clock.GetUtcNow();
        clock.Advance(Timings.PathCheckInterval);
        Answer(Reading(handshake: null, rx: 1000, tx: 3000));
        Assert.Empty(prober.Asked);

        clock.Advance(Timings.ProbeAfter - Timings.PathCheckInterval);
        prober.Answer = false;
        Answer(Reading(handshake: null, rx: 1000, tx: 5000));

        var report = reports.ExpectMsg<InterfaceReadingChanged>(Patience);
        Assert.Equal(ExitKey, report.ProbeFailed!.PublicKey);
        Assert.Equal(clock.GetUtcNow() - silentSince, report.ProbeFailed.SilentFor);
        Assert.Equal([System.Net.IPAddress.Parse("100.96.0.1")], prober.Asked);
        // Once per silence: the next readings of the same silence ping no more.
        clock.Advance(Timings.PathCheckInterval);
        Answer(Reading(handshake: null, rx: 1000, tx: 7000));
        reports.ExpectNoMsg(TimeSpan.FromMilliseconds(100));
        Assert.Single(prober.Asked);
    }

    [Theory]
    [InlineData(true, 4000)] // the exit answers: the path works (one-way traffic)
    [InlineData(false, 32)] // only a keepalive went out: an idle path is not tested
    public void A_silence_the_exit_answers_or_of_keepalives_only_is_not_reported(bool answers, int sentMore)
    {
        exit = ExitWithTunnelAddress("100.96.0.1");
        prober.Answer = answers;
        AwaitSubscribed();
        clock.Advance(Timings.PathCheckInterval);
        Answer(Reading(handshake: null, rx: 1000, tx: 1000));
        clock.Advance(Timings.ProbeAfter);
        Answer(Reading(handshake: null, rx: 1000, tx: 1000 + (ulong)sentMore));

        reports.ExpectNoMsg(TimeSpan.FromMilliseconds(200));
        Assert.Equal(answers ? 1 : 0, prober.Asked.Count);
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

    /// <summary>Answers the monitor's next read with <paramref name="reading"/>, and waits until it took it (so the clock moves only after).</summary>
    private void Answer(InterfaceReading reading)
    {
        wireGuard.ExpectMsg<ReadInterface>(Patience);
        wireGuard.Reply(new InterfaceRead(reading));
        AwaitCondition(() => ReferenceEquals(tunnel.Latest, reading), Patience);
    }

    private static InterfaceReading Reading(DateTimeOffset? handshake, ulong rx = 0, ulong tx = 0) =>
        new("wg-test", new byte[32], 51820,
            [new PeerReading(ExitKey, "198.51.100.7:51820", handshake, rx, tx, ["0.0.0.0/0"])], "wireguard-go");

    private static ClientExit ExitWithTunnelAddress(string address) =>
        new("as-1", "exit-1", "us-east", Convert.ToBase64String(ExitKey), "198.51.100.7:51820", ["0.0.0.0/0"], 25, ["100.96.0.2/32"],
            DateTimeOffset.UnixEpoch)
        {
            ExitTunnelAddress = address,
        };

    /// <summary>The ping's answer the test chose, and the addresses asked.</summary>
    private sealed class ChosenProber : IPathProber
    {
        public bool Answer { get; set; } = true;

        public List<System.Net.IPAddress> Asked { get; } = [];

        public Task<bool> AnswersAsync(System.Net.IPAddress address, TimeSpan within, CancellationToken cancellationToken)
        {
            lock (Asked)
                Asked.Add(address);
            return Task.FromResult(Answer);
        }
    }
}
