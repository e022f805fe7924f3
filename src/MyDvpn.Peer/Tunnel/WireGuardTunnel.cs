using Akka.Actor;
using MyDvpn.DataPlane;
using MyDvpn.Peer.Tunnel;
using MyDvpn.Security;

namespace MyDvpn.Peer.Tunnel;

/// <summary>The WireGuard interface could not be made to match the tunnel state.</summary>
public sealed class DataPlaneException(string message) : Exception(message);

/// <summary>
/// Applies tunnel states to the host through the agent's <see cref="WireGuardActor"/> (attached once the actor system
/// runs) and keeps its latest reading of the interface (handshakes, bytes, endpoints) for <c>mydvpn status</c> and the
/// StatusReports.
/// </summary>
/// <param name="servesClients">An exit (role exit or both): its interface is up while it serves nobody (see <see cref="TunnelSpec"/>).</param>
public sealed class WireGuardTunnel(DataPlaneSettings settings, WireGuardKey key, TimeSpan timeout, bool servesClients)
{
    private InterfaceReading? latest;
    private IActorRef? wireGuard;

    /// <summary>What the interface looked like last time it was read; null while it does not exist.</summary>
    public InterfaceReading? Latest => Volatile.Read(ref latest);

    public IActorRef Actor => Volatile.Read(ref wireGuard) ?? throw new InvalidOperationException("the WireGuard actor is not running yet");

    public void Attach(IActorRef actor) => Volatile.Write(ref wireGuard, actor);

    /// <summary>Makes the host match <paramref name="state"/> and returns once it does.</summary>
    /// <exception cref="DataPlaneException">It could not: the reason says what failed.</exception>
    public async Task ApplyAsync(TunnelState state, CancellationToken cancellationToken)
    {
        var spec = TunnelSpec.For(state, settings, key, servesClients);
        object answer;
        try
        {
            answer = await Actor.Ask<object>(new Reconcile(spec), timeout, cancellationToken);
        }
        catch (AskTimeoutException)
        {
            throw new DataPlaneException($"the WireGuard interface {settings.WireGuardInterface} was not reconciled within {timeout.TotalSeconds:0} s");
        }
        switch (answer)
        {
            case Reconciled reconciled:
                Observe(reconciled.Reading);
                break;
            case ReconcileFailed failed:
                throw new DataPlaneException($"WireGuard interface {settings.WireGuardInterface}: {failed.Reason}");
            default:
                throw new DataPlaneException($"unexpected answer from the WireGuard actor: {answer.GetType().Name}");
        }
    }

    public void Observe(InterfaceReading? reading) => Volatile.Write(ref latest, reading);
}
