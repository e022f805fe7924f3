using System.Collections.Immutable;
using System.Net;
using Microsoft.Extensions.Logging;
using MyDvpn.SuperNode.Commands;

namespace MyDvpn.SuperNode.Sessions;

/// <summary>
/// What the session knows of the path between a client and its exit, beyond the relay legs it persisted with the
/// assignment (<see cref="ClientExit.ClientRelayLeg"/>). In memory only: a new incarnation watches the path afresh.
/// </summary>
/// <param name="DirectConfirmed">A StatusReport showed a handshake with the exit over the direct path (until the next assignment).</param>
/// <param name="DirectPathOverdue">The direct-path timeout passed without a handshake: the next report without one relays.</param>
/// <param name="NoHandshakeReported">A report within the direct-path timeout listed the exit without a handshake: the timeout's end relays.</param>
/// <param name="RelayStarting">A relay chain is being set up (one at a time).</param>
/// <param name="RelayDue">Why a chain is due while the client has no stream (its address is needed): set up when it attaches.</param>
/// <param name="Silence">Since when the client's reports show nothing received from its exit (reset by anything received).</param>
/// <param name="ExitLostUnreplaced">Why the exit's region lost the client's exit, when no other exit could take the client: the client
/// stays on it while its traffic may still flow, and gives it up once its own test of the path fails.</param>
/// <param name="Attempt">A relayed client's try of the direct path under way (<see cref="DirectReturn"/>).</param>
/// <param name="FailedDirectAttempts">Tries of the direct path that failed since the assignment became active (the backoff).</param>
/// <param name="ExitHandshake">The last handshake with the exit the client reported.</param>
/// <param name="FailedRelayAttempts">Attempts at a relay chain that failed in a row (the retry's backoff).</param>
public sealed record PathState(bool DirectConfirmed, bool DirectPathOverdue, bool RelayStarting, string? RelayDue, bool NoHandshakeReported = false,
    PathSilence? Silence = null, string? ExitLostUnreplaced = null, DirectAttempt? Attempt = null, int FailedDirectAttempts = 0,
    DateTimeOffset? ExitHandshake = null, int FailedRelayAttempts = 0)
{
    public static readonly PathState Initial = new(false, false, false, null);
}

/// <summary>
/// The client's counters for its exit when they last showed something received: <paramref name="Rx"/> has not moved since
/// <paramref name="Since"/>, and <paramref name="Tx"/> was the bytes sent then.
/// </summary>
public sealed record PathSilence(ulong Rx, ulong Tx, DateTimeOffset Since)
{
    /// <summary>
    /// What a working but idle path may send without an answer: the client's persistent keepalives (32 bytes each, one
    /// every 25 s), two of them within a silence window. One handshake initiation (148 bytes) or any data is more.
    /// </summary>
    public const ulong KeepalivesOnly = 2 * 32;

    /// <summary>The next report's counters: the same silence, or a new one when something was received (or the counters restarted).</summary>
    public PathSilence Next(ulong rx, ulong tx, DateTimeOffset now) => rx == Rx && tx >= Tx ? this : new(rx, tx, now);

    /// <summary>Sending, not receiving, for at least <paramref name="after"/>.</summary>
    public bool Broken(ulong tx, DateTimeOffset now, TimeSpan after) => now - Since >= after && tx - Tx > KeepalivesOnly;
}

/// <summary>
/// The path of a client's active assignment (ARCHITECTURE §4 Relay): a client with an active, direct exit gets
/// <see cref="Exits.ExitSettings.DirectPathTimeout"/> to report a handshake with it; a StatusReport that lists the exit
/// without one sets up a relay chain once that time is up — a leg for the client here, one for the exit at its region,
/// chained; the client is pointed at its leg. (The agent reports at the end of its own wait for the first handshake,
/// which may reach here just before or just after the timeout.) A path that worked is set up again once the client sends and receives
/// nothing back for <see cref="Exits.ExitSettings.SilentPathAfter"/> (<see cref="PathSilence"/>), or shows no handshake
/// for <see cref="Exits.ExitSettings.PathStaleAfter"/>; a chain that loses a leg, or whose client leg is not
/// here when the client attaches, is chained anew. A failed attempt is retried after <see cref="Exits.ExitSettings.RelayRetry"/>,
/// doubling up to <see cref="Exits.ExitSettings.RelayRetryMax"/>.
/// </summary>
public static class PathMonitoring
{
    public const string DirectPathTimer = "direct-path";

    /// <summary>How far before the assignment a handshake may lie and still count for it (clocks of reports are the agent's).</summary>
    private static readonly TimeSpan HandshakeSlack = TimeSpan.FromSeconds(5);

    /// <summary>The client's SetupExit was applied: the direct path gets its chance.</summary>
    public static Decision Activated(Decision d) =>
        Arm(d.With(s => s with
        {
            Path = s.Path with { DirectConfirmed = false, Silence = null, ExitLostUnreplaced = null, Attempt = null, FailedDirectAttempts = 0, ExitHandshake = null },
        }));

    /// <summary>Starts the direct-path timeout for an active, direct, unconfirmed assignment with a stream attached.</summary>
    public static Decision Arm(Decision d)
    {
        var state = d.State;
        if (!state.Config.RelayAvailable || !state.Stream.Attached || state.Path.DirectConfirmed || state.Path.RelayStarting
            || state.Exit is not { Phase: ExitPhase.Active, ClientRelayLeg: null } exit)
        {
            return d;
        }

        return d.With(s => s with { Path = s.Path with { DirectPathOverdue = false, NoHandshakeReported = false } })
            .Do(new SessionEffect.StartTimer(DirectPathTimer, new DirectPathExpired(exit.AssignmentId, Retry: false), state.Config.Exits!.DirectPathTimeout));
    }

    /// <summary>The assignment goes: nothing more to watch.</summary>
    public static Decision Stop(Decision d) =>
        d.With(s => s with { Path = s.Path with { Attempt = null } }).Do(new SessionEffect.CancelTimer(DirectPathTimer), new SessionEffect.CancelTimer(DirectReturn.Timer));

    public static Decision Expired(Decision d, DirectPathExpired expired)
    {
        if (d.State.Exit is not { Phase: ExitPhase.Active } exit || exit.AssignmentId != expired.AssignmentId)
            return d;
        if (expired.Retry)
        {
            // An earlier attempt at a chain (a first one, or a new one for a chain that broke) failed.
            return StartRelay(d, "the last attempt at a relay chain failed; trying again");
        }

        if (exit.ClientRelayLeg is not null || d.State.Path.DirectConfirmed)
            return d;
        if (d.State.Path.NoHandshakeReported)
            return StartRelay(d, $"no handshake with exit {exit.Assignment?.ExitPeerId} within {d.State.Config.Exits!.DirectPathTimeout.TotalSeconds:0.#} s");
        // Decided by the next StatusReport: one without a handshake with the exit sets up the relay.
        return d.With(s => s with { Path = s.Path with { DirectPathOverdue = true } });
    }

    /// <summary>The client's StatusReport: its handshakes with its WireGuard peers, and whether its own test of the path failed.</summary>
    public static Decision Reported(Decision d, ImmutableList<ReportedHandshake> peers, DateTimeOffset now, ProbeFailure? probeFailed = null)
    {
        var state = d.State;
        if (state.Exit is not { Phase: ExitPhase.Active, Assignment: { } assignment } exit)
            return d;

        var withExit = peers.FirstOrDefault(p => p.PublicKey.AsSpan().SequenceEqual(assignment.ExitPublicKey));
        if (state.Path.Attempt is { Stage: DirectAttemptStage.Watching })
            return DirectReturn.Reported(d, withExit, probeFailed?.PublicKey.AsSpan().SequenceEqual(assignment.ExitPublicKey) == true ? probeFailed : null, now);
        if (withExit?.LastHandshake is { } handshake)
            d = d.With(s => s with { Path = s.Path with { ExitHandshake = handshake } });
        if (exit.ClientRelayLeg is not null || state.Path.DirectConfirmed)
        {
            if (withExit is null)
                return d;
            // A path that worked, which the client tested: it sent, heard nothing back and its ping of the exit went unanswered.
            // (A client can only hurt itself with a false claim: its own traffic is relayed.)
            if (probeFailed is not null && probeFailed.PublicKey.AsSpan().SequenceEqual(assignment.ExitPublicKey))
            {
                // Its exit is lost and no other one took the client: now its traffic is known not to flow either.
                if (state.Path.ExitLostUnreplaced is { } lost)
                {
                    return ExitAssignment.GiveUpLostExit(d, $"{lost}; no other exit of region {exit.Region} took the client, and the client " +
                                                            "hears nothing from it", now);
                }

                return Broke(d, $"client heard nothing from exit {assignment.ExitPeerId} over the {(exit.ClientRelayLeg is null ? "direct path" : "relay chain")} " +
                                $"for {probeFailed.SilentFor.TotalSeconds:0.#} s while sending, and its ping of the exit went unanswered");
            }

            // A path that worked: broken once the client sends and hears nothing back for SilentPathAfter.
            var silence = state.Path.Silence?.Next(withExit.RxBytes, withExit.TxBytes, now) ?? new PathSilence(withExit.RxBytes, withExit.TxBytes, now);
            d = d.With(s => s with { Path = s.Path with { Silence = silence } });
            var silentAfter = state.Config.Exits?.SilentPathAfter ?? TimeSpan.MaxValue;
            if (silence.Broken(withExit.TxBytes, now, silentAfter))
            {
                return Broke(d, $"client sent {withExit.TxBytes - silence.Tx} bytes to exit {assignment.ExitPeerId} over the " +
                                $"{(exit.ClientRelayLeg is null ? "direct path" : "relay chain")} and received nothing for {(now - silence.Since).TotalSeconds:0} s");
            }

            // A path that worked: broken once no handshake renewed it for PathStaleAfter.
            var staleAfter = state.Config.Exits?.PathStaleAfter ?? TimeSpan.MaxValue;
            var workingSince = exit.ClientRelayLeg is null ? exit.Since : exit.RelayedSince ?? exit.Since;
            if (now - workingSince >= staleAfter && (withExit.LastHandshake is not { } last || now - last >= staleAfter))
            {
                return Broke(d, $"no handshake with exit {assignment.ExitPeerId} over the {(exit.ClientRelayLeg is null ? "direct path" : "relay chain")} " +
                                $"since {withExit.LastHandshake?.ToString("o") ?? "ever"} (more than {staleAfter.TotalSeconds:0} s)");
            }

            return d;
        }

        if (withExit?.LastHandshake is { } at && at >= exit.Since - HandshakeSlack)
        {
            return d.With(s => s with { Path = s.Path with { DirectConfirmed = true, DirectPathOverdue = false, NoHandshakeReported = false } })
                .Do(new SessionEffect.CancelTimer(DirectPathTimer))
                .Log(LogLevel.Information, "Direct path to exit {ExitPeerId} works (handshake at {Handshake:o})", assignment.ExitPeerId, at);
        }

        if (withExit is null)
            return d;
        return state.Path.DirectPathOverdue
            ? StartRelay(d, $"no handshake with exit {assignment.ExitPeerId} within {state.Config.Exits!.DirectPathTimeout.TotalSeconds:0.#} s")
            : d.With(s => s with { Path = s.Path with { NoHandshakeReported = true } });
    }

    /// <summary>
    /// A path that worked broke: the exit's region hears of it (enough such reports make the exit stale,
    /// <see cref="Exits.ExitHealth.PathFailed"/>), and the client gets a chain (a new one, if it was relayed).
    /// </summary>
    private static Decision Broke(Decision d, string why)
    {
        var state = d.State;
        var exit = state.Exit!;
        var report = new Protocol.SuperNode.PathFailureReport
        {
            AssignmentId = exit.AssignmentId,
            Region = exit.Region,
            ExitPeerId = exit.Assignment!.ExitPeerId,
            ClientRegion = state.Region,
            ClientPeerId = state.PeerId,
            Relayed = exit.ClientRelayLeg is not null,
            Detail = why.Length <= 512 ? why : why[..512],
        };
        return StartRelay(state.Config.Exits is null ? d : d.Do(new SessionEffect.ReportPathFailure(report)), why);
    }

    /// <summary>
    /// A relayed client attached here: its leg must be on this SuperNode and take its packets from the address its stream
    /// comes from. It is not after this SuperNode restarted (legs live in memory), when the session moved here from
    /// another SuperNode of the region, or when the client's public address changed; then the chain is set up again.
    /// </summary>
    /// <param name="clientLegPeer">The address this SuperNode's client leg of the assignment takes packets from; null: no leg here.</param>
    public static Decision Attached(Decision d, IPAddress? clientLegPeer)
    {
        var state = d.State;
        d = Arm(d);
        if (!state.Config.RelayAvailable || state.Exit is not { Phase: ExitPhase.Active, ClientRelayLeg: { } leg }
            || ClientAddress(state.Stream.RemoteAddress) is not { } clientAddress)
        {
            return d;
        }

        if (state.Path.RelayDue is { } due)
            return StartRelay(d, due);
        if (clientLegPeer is null)
            return StartRelay(d, $"its relay leg {leg} is not open on this SuperNode");
        return clientLegPeer.Equals(clientAddress)
            ? DirectReturn.Schedule(d)
            : StartRelay(d, $"its public address moved from {clientLegPeer} to {state.Stream.RemoteAddress}");
    }

    /// <summary>
    /// A SuperNode holding a leg of the chain lets it go (it shuts down) or is gone: chain anew — unless the chain is on
    /// another exit leg by now (the news came late, or twice).
    /// </summary>
    public static Decision LegLost(Decision d, RelayLegLost lost) =>
        d.State.Exit is { Phase: ExitPhase.Active, ClientRelayLeg: not null } exit && exit.AssignmentId == lost.AssignmentId
        && (lost.ExitLeg is null || lost.ExitLeg == exit.ExitRelayLeg) && (lost.FromRegion is null || lost.FromRegion == exit.Region)
            ? StartRelay(d, $"SuperNode {lost.SuperNodeId} lets its leg of the chain go ({lost.Reason})")
            : d;

    /// <summary>
    /// No handshake over the direct path, or a chain that broke: a leg for the client here, one for the exit at a
    /// SuperNode of its region (which points the exit at it), chained to each other; then the client is pointed at its
    /// leg (RelaySetup). Legs already open are reused, so a chain that only lost one leg keeps the other.
    /// </summary>
    public static Decision StartRelay(Decision d, string why)
    {
        var state = d.State;
        if (!state.Config.RelayAvailable || state.Path.RelayStarting || state.Exit is not { Phase: ExitPhase.Active, Assignment: { } assignment } exit)
            return d;

        if (!state.Stream.Attached)
        {
            // The client's leg takes packets from the address its stream comes from: wait for the stream.
            return d.With(s => s with { Path = s.Path with { RelayDue = why } });
        }

        d = d.With(s => s with { Path = s.Path with { RelayDue = null } });
        if (ClientAddress(state.Stream.RemoteAddress) is not { } clientAddress)
        {
            return d.Log(LogLevel.Warning, "No relay for assignment {AssignmentId}: the client's address '{RemoteAddress}' is unknown",
                exit.AssignmentId, state.Stream.RemoteAddress);
        }

        var starting = d.State.Path with { RelayStarting = true, DirectConfirmed = false, DirectPathOverdue = false, NoHandshakeReported = false, Silence = null, Attempt = null };
        return d.With(s => s with { Path = starting })
            .Do(new SessionEffect.CancelTimer(DirectPathTimer), new SessionEffect.CancelTimer(DirectReturn.Timer))
            .Log(LogLevel.Warning, "{Why}; setting up a relay chain to exit {ExitPeerId}", why, assignment.ExitPeerId)
            .Do(new SessionEffect.OpenRelayChain(exit.AssignmentId, exit.Region, clientAddress));
    }

    public static Decision RelayFinished(Decision d, RelayFinished finished, DateTimeOffset now)
    {
        d = d.With(s => s with { Path = s.Path with { RelayStarting = false } });
        var state = d.State;
        if (state.Exit is not { Phase: ExitPhase.Active, Assignment: { } assignment } exit || exit.AssignmentId != finished.AssignmentId)
        {
            // Released meanwhile: its legs go.
            return d.Do(new SessionEffect.CloseRelayLegs(finished.AssignmentId));
        }

        if (finished.Problem is not null || finished.ClientLeg is null || finished.ExitLeg is null)
        {
            var retry = state.Config.Exits!.RelayRetryAfter(state.Path.FailedRelayAttempts);
            // The retry timer decides the next attempt; reports meanwhile must not bring it forward.
            return d.Log(LogLevel.Warning, "Relay chain for assignment {AssignmentId} could not be set up ({Problem}); trying again in {RetrySeconds:0} s",
                    finished.AssignmentId, finished.Problem, retry.TotalSeconds)
                .With(s => s with { Path = s.Path with { DirectPathOverdue = false, FailedRelayAttempts = s.Path.FailedRelayAttempts + 1 } })
                .Do(new SessionEffect.StartTimer(DirectPathTimer, new DirectPathExpired(finished.AssignmentId, Retry: true), retry));
        }

        d = d.Record(new RelayEstablished(finished.AssignmentId, finished.ClientLeg, finished.ExitLeg, now))
            .With(s => s with { Path = s.Path with { FailedRelayAttempts = 0 } })
            .Log(LogLevel.Information, "Assignment {AssignmentId} relayed: client leg {ClientLeg}, exit leg {ExitLeg}", finished.AssignmentId,
                finished.ClientLeg, finished.ExitLeg)
            .Do(SessionEffect.ShowAssignments.Instance);
        // Sent for every chain, also one through the client's same leg (where it changes nothing): a client that failed
        // to apply the last one, or lost it, is pointed at its leg again.
        return DirectReturn.Schedule(CommandDelivery.IssueOwn(d, PeerCommands.RelaySetup(assignment.AssignmentId, assignment.ExitPublicKey, finished.ClientLeg), now));
    }

    /// <summary>The IPv4 address of a stream from an IPv4 client (a dual-stack socket shows it IPv4-mapped); null if unreadable.</summary>
    private static IPAddress? ClientAddress(string remoteAddress) =>
        IPAddress.TryParse(remoteAddress, out var address) ? address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address : null;
}
