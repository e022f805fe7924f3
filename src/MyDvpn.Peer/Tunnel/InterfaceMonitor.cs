using Akka.Actor;
using MyDvpn.Common;
using MyDvpn.DataPlane;

namespace MyDvpn.Peer.Tunnel;

/// <summary>
/// Reads the WireGuard interface every <paramref name="interval"/> (handshakes, bytes, endpoints): the reading goes to
/// <see cref="WireGuardTunnel.Latest"/> for <c>mydvpn status</c> and to <paramref name="reportTo"/> as a
/// <see cref="InterfaceReadingChanged"/> (the control channel sends it to the SuperNode as a StatusReport). The interval
/// runs on the agent's <see cref="TimeProvider"/>.
/// </summary>
public sealed class InterfaceMonitor : ReceiveActor
{
    private sealed record Tick
    {
        public static readonly Tick Instance = new();
    }

    private readonly TimeSpan interval;
    private readonly ClockTimers timers;

    public InterfaceMonitor(WireGuardTunnel tunnel, IActorRef reportTo, TimeSpan interval, TimeProvider time)
    {
        this.interval = interval;
        var self = Self;
        timers = new ClockTimers(time, message => self.Tell(message));
        Receive<ClockTimers.Fired>(fired =>
        {
            if (timers.Accept(fired) is Tick)
                tunnel.Actor.Tell(ReadInterface.Instance);
        });
        Receive<InterfaceRead>(read =>
        {
            tunnel.Observe(read.Reading);
            reportTo.Tell(new InterfaceReadingChanged(read.Reading));
        });
    }

    protected override void PreStart() => timers.StartPeriodic(nameof(Tick), Tick.Instance, interval);

    protected override void PostStop() => timers.Dispose();

    public static Props Props(WireGuardTunnel tunnel, IActorRef reportTo, TimeSpan interval, TimeProvider time) =>
        Akka.Actor.Props.Create(() => new InterfaceMonitor(tunnel, reportTo, interval, time));
}

/// <summary>The latest reading of the peer's WireGuard interface; null while it does not exist.</summary>
public sealed record InterfaceReadingChanged(InterfaceReading? Reading);
