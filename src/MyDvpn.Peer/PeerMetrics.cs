using MyDvpn.DataPlane;
using MyDvpn.Peer.Tunnel;
using MyDvpn.Protocol.Control;
using Prometheus;

namespace MyDvpn.Peer;

/// <summary>
/// The agent's metrics (<c>--metrics</c>): its control stream (connected, streams opened, reconnects), its tunnel (through
/// its exit directly, relayed or none; the clients it serves as an exit), the age of the last handshake with its exit, the
/// bytes its WireGuard peers moved, and the commands it answered by kind and outcome. The commands are counted when first
/// answered (an answer given again from the applied-command store is not); the rest is read from the agent's status, its
/// tunnel state and the latest reading of its interface when <c>/metrics</c> is scraped. Every label value is there from the
/// start; no peer, key or address is a label.
/// </summary>
public sealed class PeerMetrics
{
    public const string Applied = "applied", NoTunnel = "none", Direct = "direct", Relayed = "relayed";

    /// <summary>Every outcome of a command: applied, or its error (<c>invalid</c>, <c>dataplane</c>, <c>expired</c>…).</summary>
    public static readonly IReadOnlyList<string> Outcomes =
        [Applied, .. Enum.GetValues<CommandError>().Select(OutcomeOf)];

    public static readonly IReadOnlyList<string> TunnelStates = [NoTunnel, Direct, Relayed];

    private readonly Counter _commands;
    private readonly Gauge _connected;
    private readonly Counter _attempts;
    private readonly Counter _reconnects;
    private readonly Gauge _tunnel;
    private readonly Gauge _clients;
    private readonly Gauge _handshakeAge;
    private readonly Counter _received;
    private readonly Counter _sent;
    private readonly Dictionary<string, (ulong Rx, ulong Tx)> _lastBytes = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();

    public PeerMetrics(CollectorRegistry registry)
    {
        Registry = registry;
        var factory = Metrics.WithCustomRegistry(registry);
        _commands = factory.CreateCounter("mydvpn_peer_commands_total",
            "Commands this agent answered for the first time, by kind and outcome (applied, or the error it answered).",
            new CounterConfiguration { LabelNames = ["kind", "outcome"] });
        _connected = factory.CreateGauge("mydvpn_peer_connected", "1 while the control stream to a SuperNode is authenticated, else 0.");
        _attempts = factory.CreateCounter("mydvpn_peer_stream_attempts_total", "Control streams the agent opened to SuperNodes.");
        _reconnects = factory.CreateCounter("mydvpn_peer_reconnects_total", "Control streams authenticated after the agent's first.");
        _tunnel = factory.CreateGauge("mydvpn_peer_tunnel", "1 for the state of the tunnel through this client's exit (none, direct, relayed), 0 for the others.",
            new GaugeConfiguration { LabelNames = ["state"] });
        _clients = factory.CreateGauge("mydvpn_peer_clients", "Clients this agent serves as an exit.");
        _handshakeAge = factory.CreateGauge("mydvpn_peer_handshake_age_seconds",
            "Seconds since the last WireGuard handshake with this client's exit (since the exit was set up while there was none); 0 without an exit.");
        _received = factory.CreateCounter("mydvpn_peer_received_bytes_total", "Bytes the agent's WireGuard interface received from its peers.");
        _sent = factory.CreateCounter("mydvpn_peer_sent_bytes_total", "Bytes the agent's WireGuard interface sent to its peers.");
        foreach (var kind in CommandKinds.All)
        {
            foreach (var outcome in Outcomes)
                _commands.WithLabels(kind, outcome);
        }
        foreach (var state in TunnelStates)
            _tunnel.WithLabels(state).Set(state == NoTunnel ? 1 : 0);
    }

    /// <summary>The registry these metrics are in: what the agent's <c>/metrics</c> serves.</summary>
    public CollectorRegistry Registry { get; }

    /// <summary>The <c>outcome</c> of a failed command: its error's proto name without its prefix, in lower case.</summary>
    public static string OutcomeOf(CommandError error) =>
        Commands.CommandResponses.NameOf(error).Replace("COMMAND_ERROR_", "", StringComparison.Ordinal).ToLowerInvariant();

    /// <summary>A command of <paramref name="kind"/> was answered for the first time with <paramref name="response"/>.</summary>
    public void CommandAnswered(Command.BodyOneofCase kind, CommandResponse response) =>
        _commands.WithLabels(CommandKinds.Label(kind),
            response.OutcomeCase == CommandResponse.OutcomeOneofCase.Failure ? OutcomeOf(response.Failure.Code) : Applied).Inc();

    /// <summary>Shows the agent as it is now (called before each collection).</summary>
    public void Show(PeerStatusSnapshot status, TunnelState tunnel, InterfaceReading? reading, DateTimeOffset now)
    {
        lock (_lock)
        {
            _connected.Set(status.Connected ? 1 : 0);
            _attempts.IncTo(status.Attempts);
            _reconnects.IncTo(Math.Max(0, status.Authentications - 1));
            var state = tunnel.Exit is null ? NoTunnel : tunnel.Exit.RelayEndpoint is null ? Direct : Relayed;
            foreach (var each in TunnelStates)
                _tunnel.WithLabels(each).Set(each == state ? 1 : 0);
            _clients.Set(tunnel.Clients.Count);
            _handshakeAge.Set(HandshakeAge(tunnel.Exit, reading, now).TotalSeconds);
            CountBytes(reading);
        }
    }

    private static TimeSpan HandshakeAge(ClientExit? exit, InterfaceReading? reading, DateTimeOffset now)
    {
        if (exit is null)
            return TimeSpan.Zero;
        var handshake = reading?.Peers.FirstOrDefault(p => Convert.ToBase64String(p.PublicKey) == exit.PublicKey)?.LastHandshake;
        var since = handshake ?? exit.Since;
        return since < now ? now - since : TimeSpan.Zero;
    }

    /// <summary>
    /// What each WireGuard peer moved since the last reading: a peer's counters restart when it is made anew, and what it
    /// moved between the last reading and its removal is not seen.
    /// </summary>
    private void CountBytes(InterfaceReading? reading)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var peer in reading?.Peers ?? [])
        {
            var key = Convert.ToBase64String(peer.PublicKey);
            seen.Add(key);
            var (rx, tx) = _lastBytes.GetValueOrDefault(key);
            _received.Inc(peer.RxBytes >= rx ? peer.RxBytes - rx : peer.RxBytes);
            _sent.Inc(peer.TxBytes >= tx ? peer.TxBytes - tx : peer.TxBytes);
            _lastBytes[key] = (peer.RxBytes, peer.TxBytes);
        }
        foreach (var gone in _lastBytes.Keys.Where(k => !seen.Contains(k)).ToList())
            _lastBytes.Remove(gone);
    }
}
