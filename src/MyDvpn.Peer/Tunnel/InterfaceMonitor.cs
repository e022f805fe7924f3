using Akka.Actor;
using MyDvpn.DataPlane;

namespace MyDvpn.Peer.Tunnel;

/// <summary>
/// Reads the WireGuard interface every <paramref name="interval"/> (handshakes, bytes, endpoints): the reading goes to
/// <see cref="WireGuardTunnel.Latest"/> for <c>mydvpn status</c> and to <paramref name="reportTo"/> as a
/// <see cref="InterfaceReadingChanged"/> (the control channel sends it to the SuperNode as a StatusReport).
/// </summary>
public sealed class InterfaceMonitor : ReceiveActor, IWithTimers
{
    private sealed record Tick
    {
        public static readonly Tick Instance = new();
    }

    private readonly TimeSpan interval;

    public ITimerScheduler Timers { get; set; } = null!;

    public InterfaceMonitor(WireGuardTunnel tunnel, IActorRef reportTo, TimeSpan interval)
    {
        this.interval = interval;
        Receive<Tick>(_ => tunnel.Actor.Tell(ReadInterface.Instance));
        Receive<InterfaceRead>(read =>
        {
            tunnel.Observe(read.Reading);
            reportTo.Tell(new InterfaceReadingChanged(read.Reading));
        });
    }

    protected override void PreStart() => Timers.StartPeriodicTimer(nameof(Tick), Tick.Instance, interval);

    public static Props Props(WireGuardTunnel tunnel, IActorRef reportTo, TimeSpan interval) =>
        Akka.Actor.Props.Create(() => new InterfaceMonitor(tunnel, reportTo, interval));
}

/// <summary>The latest reading of the peer's WireGuard interface; null while it does not exist.</summary>
public sealed record InterfaceReadingChanged(InterfaceReading? Reading);
