using System.Net;
using Akka.Actor;
using MyDvpn.Common;
using MyDvpn.DataPlane;
using MyDvpn.Peer.Commands;

namespace MyDvpn.Peer.Tunnel;

/// <summary>
/// Reads the WireGuard interface every <see cref="PeerTimings.PathCheckInterval"/> (handshakes, bytes, endpoints): each
/// reading goes to <see cref="WireGuardTunnel.Latest"/> for <c>mydvpn status</c>, and one every
/// <see cref="PeerTimings.StatusReportInterval"/> to <c>reportTo</c> as a <see cref="InterfaceReadingChanged"/> (the control
/// channel sends it to the SuperNode as a StatusReport). When the exit changes (<see cref="ExitChanged"/> on the event
/// stream: a set-up, a rotation, or its path moved to a relay or back to direct) it reads faster and reports the moment the first handshake with the new exit completes
/// or <see cref="PeerTimings.FirstHandshakeWithin"/> passed without one (<see cref="HandshakeWatch"/>), so that the
/// SuperNode can relay a path that cannot work within seconds. A path that worked and goes silent is tested with a ping of
/// the exit's tunnel address and, if that goes unanswered, reported at once (<see cref="PathProbe"/>). Timers run on the
/// agent's <see cref="TimeProvider"/>.
/// </summary>
public sealed class InterfaceMonitor : ReceiveActor
{
    private sealed record Tick
    {
        public static readonly Tick Instance = new();
    }

    private sealed record WatchTick
    {
        public static readonly WatchTick Instance = new();
    }

    private sealed record ProbeDone(PathProbe Probe, bool Answered);

    private readonly WireGuardTunnel tunnel;
    private readonly IActorRef reportTo;
    private readonly PeerTimings timings;
    private readonly TimeProvider time;
    private readonly Func<ClientExit?> currentExit;
    private readonly IPathProber prober;
    private readonly ClockTimers timers;
    private readonly CancellationTokenSource lifetime = new();
    private HandshakeWatch? watch;
    private PathProbe? probe;
    private DateTimeOffset? lastReported;

    /// <param name="currentExit">The exit the tunnel uses now (null: none), whose path is tested.</param>
    /// <param name="prober">How the exit's tunnel address is pinged.</param>
    public InterfaceMonitor(WireGuardTunnel tunnel, IActorRef reportTo, PeerTimings timings, TimeProvider time, Func<ClientExit?> currentExit,
        IPathProber prober)
    {
        this.tunnel = tunnel;
        this.reportTo = reportTo;
        this.timings = timings;
        this.time = time;
        this.currentExit = currentExit;
        this.prober = prober;
        var self = Self;
        timers = new ClockTimers(time, message => self.Tell(message));
        Receive<ClockTimers.Fired>(fired =>
        {
            if (timers.Accept(fired) is Tick or WatchTick)
                tunnel.Actor.Tell(ReadInterface.Instance);
        });
        Receive<ExitChanged>(changed =>
        {
            if (changed is not (ExitChanged.Assigned or ExitChanged.Rotated or ExitChanged.PathChanged))
                return;
            watch = HandshakeWatch.Start(time.GetUtcNow(), timings.FirstHandshakeWithin);
            timers.StartPeriodic(nameof(WatchTick), WatchTick.Instance, timings.HandshakeWatchInterval);
            tunnel.Actor.Tell(ReadInterface.Instance);
        });
        Receive<InterfaceRead>(read => Observe(read.Reading));
        Receive<ProbeDone>(Probed);
    }

    private void Observe(InterfaceReading? reading)
    {
        var now = time.GetUtcNow();
        tunnel.Observe(reading);
        var exit = currentExit();
        probe = PathProbe.Next(probe, exit?.PublicKey, reading, now);
        if (watch is { } watching)
        {
            // While watching, only the reading that settles the first handshake is reported.
            if (!watching.SettledBy(reading, now))
                return;
            watch = null;
            timers.Cancel(nameof(WatchTick));
            Report(reading, now);
        }
        else if (lastReported is not { } last || now - last >= timings.StatusReportInterval - timings.PathCheckInterval / 2)
        {
            Report(reading, now);
        }

        if (probe is { } due && exit?.ExitTunnelAddress is { } address
            && due.ProbeDue(reading!.Peers.First(p => Convert.ToBase64String(p.PublicKey) == due.PublicKey).TxBytes, now, timings.ProbeAfter))
        {
            var probing = probe = due with { Stage = PathProbe.Stages.Probing };
            prober.AnswersAsync(IPAddress.Parse(address), timings.ProbeTimeout, lifetime.Token)
                .ContinueWith(t => new ProbeDone(probing, t.IsCompletedSuccessfully && t.Result), TaskScheduler.Default)
                .PipeTo(Self);
        }
    }

    private void Probed(ProbeDone done)
    {
        // Something was received meanwhile (a new silence, or none), or the exit changed: the answer is moot.
        if (probe != done.Probe)
            return;
        if (done.Answered)
        {
            // The path works and the answer shows in the next reading; a silence that goes on is tested again later.
            probe = done.Probe with { Stage = PathProbe.Stages.Watching, Since = time.GetUtcNow() };
            return;
        }
        var now = time.GetUtcNow();
        probe = done.Probe with { Stage = PathProbe.Stages.Reported };
        reportTo.Tell(new InterfaceReadingChanged(tunnel.Latest)
        {
            ProbeFailed = new PathProbeFailed(Convert.FromBase64String(done.Probe.PublicKey), now - done.Probe.Since),
        });
        lastReported = now;
    }

    private void Report(InterfaceReading? reading, DateTimeOffset now)
    {
        reportTo.Tell(new InterfaceReadingChanged(reading));
        lastReported = now;
    }

    protected override void PreStart()
    {
        Context.System.EventStream.Subscribe(Self, typeof(ExitChanged));
        timers.StartPeriodic(nameof(Tick), Tick.Instance, timings.PathCheckInterval);
    }

    protected override void PostStop()
    {
        Context.System.EventStream.Unsubscribe(Self);
        timers.Dispose();
        lifetime.Cancel();
        lifetime.Dispose();
    }

    public static Props Props(WireGuardTunnel tunnel, IActorRef reportTo, PeerTimings timings, TimeProvider time, Func<ClientExit?> currentExit,
        IPathProber prober) =>
        Akka.Actor.Props.Create(() => new InterfaceMonitor(tunnel, reportTo, timings, time, currentExit, prober));
}

/// <summary>
/// The wait for the first handshake with a new exit: settled by a reading that shows a handshake since the change (a
/// client has one WireGuard peer, its exit, once a set-up or rotation is applied), or by the time running out.
/// </summary>
public sealed record HandshakeWatch(DateTimeOffset Since, DateTimeOffset Until)
{
    /// <summary>WireGuard's handshake times and the agent's clock are both the host's; this covers their rounding.</summary>
    private static readonly TimeSpan Slack = TimeSpan.FromSeconds(1);

    public static HandshakeWatch Start(DateTimeOffset now, TimeSpan within) => new(now, now + within);

    public bool SettledBy(InterfaceReading? reading, DateTimeOffset now) =>
        now >= Until || reading?.Peers.Any(p => p.LastHandshake is { } at && at >= Since - Slack) == true;
}

/// <summary>The latest reading of the peer's WireGuard interface; null while it does not exist.</summary>
public sealed record InterfaceReadingChanged(InterfaceReading? Reading)
{
    /// <summary>Set when the path to the exit failed the agent's test (<see cref="PathProbe"/>): reported at once.</summary>
    public PathProbeFailed? ProbeFailed { get; init; }
}

/// <summary>The exit with key <paramref name="PublicKey"/> sent nothing back for <paramref name="SilentFor"/>, and did not answer a ping.</summary>
public sealed record PathProbeFailed(byte[] PublicKey, TimeSpan SilentFor);
