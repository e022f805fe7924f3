using System.Net;
using System.Net.NetworkInformation;
using MyDvpn.DataPlane;

namespace MyDvpn.Peer.Tunnel;

/// <summary>
/// The agent's test of the path to its exit (ARCHITECTURE §4 Relay, "a path that breaks"). The client's counters for its
/// exit are read every second: when it has been sending (more than keepalives) and received nothing for
/// <see cref="PeerTimings.ProbeAfter"/>, it pings the exit's own tunnel address through the tunnel — on a working path the
/// answer arrives within a round trip and the silence ends; on a broken one it does not, and the agent reports the broken
/// path to its SuperNode at once (StatusReport.probe_failed) rather than leaving it to WireGuard's own 15 s test of a path
/// (a peer answers data with a keepalive within 10 s, a silent sender starts a new handshake 5 s later).
/// Pure: <see cref="Next"/> follows the readings, <see cref="ProbeDue"/> says when to ping, the rest is the monitor's.
/// </summary>
/// <param name="PublicKey">The exit's WireGuard key, base64.</param>
/// <param name="Rx">Bytes received from the exit: unchanged since <paramref name="Since"/>.</param>
/// <param name="Tx">Bytes sent to it at <paramref name="Since"/>.</param>
/// <param name="Stage">Whether a ping is out, or the failure was reported (once per silence).</param>
public sealed record PathProbe(string PublicKey, ulong Rx, ulong Tx, DateTimeOffset Since, PathProbe.Stages Stage = PathProbe.Stages.Watching)
{
    /// <summary>What a working but idle path may send without an answer: persistent keepalives (32 bytes each).</summary>
    public const ulong KeepalivesOnly = 2 * 32;

    public enum Stages
    {
        Watching,
        Probing,
        Reported,
    }

    /// <summary>The probe after a reading: the same silence, or a new one when something was received, the counters restarted or the exit changed.</summary>
    /// <param name="exitKey">The exit's key (base64); null: no exit, nothing to watch.</param>
    public static PathProbe? Next(PathProbe? probe, string? exitKey, InterfaceReading? reading, DateTimeOffset now)
    {
        var peer = exitKey is null ? null : reading?.Peers.FirstOrDefault(p => Convert.ToBase64String(p.PublicKey) == exitKey);
        if (peer is null)
            return null;
        return probe is not null && probe.PublicKey == exitKey && peer.RxBytes == probe.Rx && peer.TxBytes >= probe.Tx
            ? probe
            : new PathProbe(exitKey!, peer.RxBytes, peer.TxBytes, now);
    }

    /// <summary>Sending (<paramref name="tx"/> bytes so far) and hearing nothing for <paramref name="after"/>, not yet tested.</summary>
    public bool ProbeDue(ulong tx, DateTimeOffset now, TimeSpan after) =>
        Stage == Stages.Watching && now - Since >= after && tx - Tx > KeepalivesOnly;
}

/// <summary>Whether an address answers a ping in time.</summary>
public interface IPathProber
{
    Task<bool> AnswersAsync(IPAddress address, TimeSpan within, CancellationToken cancellationToken);
}

/// <summary>An ICMP echo through whatever route the host has (for the exit's tunnel address: the tunnel).</summary>
public sealed class IcmpPathProber : IPathProber
{
    public async Task<bool> AnswersAsync(IPAddress address, TimeSpan within, CancellationToken cancellationToken)
    {
        using var ping = new Ping();
        try
        {
            var reply = await ping.SendPingAsync(address, within, cancellationToken: cancellationToken);
            return reply.Status == IPStatus.Success;
        }
        catch (PingException)
        {
            // No route, no permission: no answer either way.
            return false;
        }
    }
}
