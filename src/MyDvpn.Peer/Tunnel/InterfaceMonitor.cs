using Akka.Actor;
using MyDvpn.Common;
using MyDvpn.DataPlane;
using MyDvpn.Peer.Commands;

namespace MyDvpn.Peer.Tunnel;

/// <summary>
/// Reads the WireGuard interface every <see cref="PeerTimings.StatusReportInterval"/> (handshakes, bytes, endpoints): the
/// reading goes to <see cref="WireGuardTunnel.Latest"/> for <c>mydvpn status</c> and to <c>reportTo</c> as a
/// <see cref="InterfaceReadingChanged"/> (the control channel sends it to the SuperNode as a StatusReport). When the exit
/// changes (<see cref="ExitChanged"/> on the event stream: a set-up or a rotation) it reads faster and reports the
/// moment the first handshake with the new exit completes or <see cref="PeerTimings.FirstHandshakeWithin"/> passed
/// without one (<see cref="HandshakeWatch"/>), so that the SuperNode can relay a path that cannot work within seconds.
/// Timers run on the agent's <see cref="TimeProvider"/>.
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

    private readonly PeerTimings timings;
    private readonly TimeProvider time;
    private readonly ClockTimers timers;
    private HandshakeWatch? watch;

    public InterfaceMonitor(WireGuardTunnel tunnel, IActorRef reportTo, PeerTimings timings, TimeProvider time)
    {
        this.timings = timings;
        this.time = time;
        var self = Self;
        timers = new ClockTimers(time, message => self.Tell(message));
        Receive<ClockTimers.Fired>(fired =>
        {
            if (timers.Accept(fired) is Tick or WatchTick)
                tunnel.Actor.Tell(ReadInterface.Instance);
        });
        Receive<ExitChanged>(changed =>
        {
            if (changed is not (ExitChanged.Assigned or ExitChanged.Rotated))
                return;
            watch = HandshakeWatch.Start(time.GetUtcNow(), timings.FirstHandshakeWithin);
            timers.StartPeriodic(nameof(WatchTick), WatchTick.Instance, timings.HandshakeWatchInterval);
            tunnel.Actor.Tell(ReadInterface.Instance);
        });
        Receive<InterfaceRead>(read =>
        {
            tunnel.Observe(read.Reading);
            if (watch is { } watching)
            {
                // While watching, only the reading that settles the first handshake is reported.
                if (!watching.SettledBy(read.Reading, time.GetUtcNow()))
                    return;
                watch = null;
                timers.Cancel(nameof(WatchTick));
            }
            reportTo.Tell(new InterfaceReadingChanged(read.Reading));
        });
    }

    protected override void PreStart()
    {
        Context.System.EventStream.Subscribe(Self, typeof(ExitChanged));
        timers.StartPeriodic(nameof(Tick), Tick.Instance, timings.StatusReportInterval);
    }

    protected override void PostStop()
    {
        Context.System.EventStream.Unsubscribe(Self);
        timers.Dispose();
    }

    public static Props Props(WireGuardTunnel tunnel, IActorRef reportTo, PeerTimings timings, TimeProvider time) =>
        Akka.Actor.Props.Create(() => new InterfaceMonitor(tunnel, reportTo, timings, time));
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
public sealed record InterfaceReadingChanged(InterfaceReading? Reading);
