using System.Collections.Immutable;
using System.Net;
using Microsoft.Extensions.Logging;
using MyDvpn.Protocol.Control;
using MyDvpn.SuperNode.Exits;

namespace MyDvpn.SuperNode.Sessions;

/// <summary>The peer's stream as the session sees it (in memory only; the actor holds the edge itself).</summary>
/// <param name="RemoteAddress">The IP the stream comes from (an exit's endpoint when it does not know its own).</param>
/// <param name="ExitCapacity">Clients the peer offers to serve as an exit (its ExitOffer); 0: none.</param>
public sealed record StreamState(bool Attached, string RemoteAddress, int ExitCapacity, TimeSpan? Rtt)
{
    public static readonly StreamState Detached = new(false, "", 0, null);
}

/// <summary>An exit's clients (persisted through its commands) and whether its region's pool was told it is online.</summary>
/// <param name="Served">The SetupExit (side exit) it acked and no RemoveExit ended yet.</param>
/// <param name="Announced">Whether the pool was told this peer is an exit: only then is it told when it is not any more.</param>
public sealed record ExitServing(ImmutableList<ExitAssignmentRecord> Served, bool Announced)
{
    public static readonly ExitServing None = new([], false);

    /// <summary>What the end of command <paramref name="command"/> means for the clients served.</summary>
    public ExitServing Concluded(string region, string peerId, InFlightCommand command, CommandResponse? response)
    {
        var succeeded = response?.OutcomeCase == CommandResponse.OutcomeOneofCase.Result;
        switch (command.Command)
        {
            case { BodyCase: Command.BodyOneofCase.SetupExit, SetupExit: { Side: ExitSide.Exit } setup } when succeeded
                && response!.Result.SetupExit is { } result:
                var served = new ExitAssignmentRecord(setup.AssignmentId, region, peerId, result.PublicKey.ToByteArray(), result.Endpoint,
                    setup.Peer?.AllowedIps.FirstOrDefault() ?? "", setup.TunnelAddresses.FirstOrDefault() ?? "", setup.CounterpartPeerId,
                    setup.CounterpartRegion, setup.Peer?.PublicKey.ToByteArray() ?? [], ExitAssignmentRecord.Active);
                return this with { Served = Served.RemoveAll(a => a.AssignmentId == setup.AssignmentId).Add(served) };
            case { BodyCase: Command.BodyOneofCase.RemoveExit, RemoveExit: { Side: ExitSide.Exit } remove }:
                // Released at the pool either way: a peer that never got it drops the client when it reconciles.
                return this with { Served = Served.RemoveAll(a => a.AssignmentId == remove.AssignmentId) };
            default:
                return this;
        }
    }
}

/// <summary>
/// A stream attaching to the session and going away, and an exit's presence in its region's pool, which follows its
/// stream: announced on attach and every <see cref="ExitSettings.ExitHeartbeat"/> while attached, withdrawn when it goes.
/// </summary>
public static class StreamLifecycle
{
    public const string ExitHeartbeatTimer = "exit-heartbeat";

    /// <summary>
    /// A stream of session <paramref name="attach"/>.SessionId wants to be the peer's: refused when the peer is revoked, never
    /// authenticated or has authenticated since; otherwise it replaces the stream attached before, gets every command in
    /// flight, and the exit's path and presence are looked after.
    /// </summary>
    /// <param name="clientLegPeer">The address this SuperNode's client relay leg of the peer's assignment takes packets from.</param>
    public static Decision Attach(Decision d, AttachStream attach, IPAddress? clientLegPeer, DateTimeOffset now)
    {
        var state = d.State;
        if (state.Identity.Revoked)
            return d.Do(new SessionEffect.Reply(new CloseStream(RefusalReason.Revoked, "the peer is revoked")));
        if (state.Identity.SessionId is null)
            return d.Do(new SessionEffect.Reply(new CloseStream(RefusalReason.UnknownPeer, "the peer has not authenticated")));
        if (attach.SessionId != state.Identity.SessionId)
        {
            return d.Do(new SessionEffect.Reply(new CloseStream(RefusalReason.Replaced,
                $"session {attach.SessionId} was replaced by a newer authentication of the peer")));
        }

        d = Close(d, RefusalReason.Replaced, "a newer stream of the peer took over")
            .With(s => s with { Stream = new StreamState(true, attach.RemoteAddress, attach.ExitCapacity, s.Stream.Rtt) })
            .Do(new SessionEffect.AdoptStream(attach.Edge))
            .Log(LogLevel.Information, "Stream of session {SessionId} attached at {Edge}, {Commands} commands to deliver", attach.SessionId,
                attach.Edge.Path.ToString(), state.Commands.InFlight.Count)
            .Do(new SessionEffect.Reply(new StreamAttached(state.PeerId, attach.SessionId)));
        d = CommandDelivery.DeliverAll(d, now).Do(SessionEffect.ShowAssignments.Instance);
        d = PathMonitoring.Attached(d, clientLegPeer);
        return ServesAsExit(d.State)
            ? Announce(d).Do(new SessionEffect.StartTimer(ExitHeartbeatTimer, ExitHeartbeatTick.Instance, d.State.Config.Exits!.ExitHeartbeat, Periodic: true))
            : d;
    }

    /// <summary>The attached stream ended (its edge stopped).</summary>
    public static Decision Detached(Decision d) =>
        Withdraw(d.With(s => s with { Stream = s.Stream with { Attached = false } })
            .Log(LogLevel.Information, "Stream detached, {Commands} commands wait for the next one", d.State.Commands.InFlight.Count));

    /// <summary>Ends the attached stream, if any, with <paramref name="reason"/>.</summary>
    public static Decision Close(Decision d, RefusalReason reason, string detail) =>
        d.State.Stream.Attached
            ? Withdraw(d.Do(new SessionEffect.CloseStream(reason, detail)).With(s => s with { Stream = s.Stream with { Attached = false } }))
            : d;

    /// <summary>Tells the region's pool the exit is online (on attach and every heartbeat).</summary>
    public static Decision Announce(Decision d)
    {
        var state = d.State;
        if (!state.Stream.Attached || !ServesAsExit(state))
            return d;
        return d.With(s => s with { Serving = s.Serving with { Announced = true } })
            .Do(new SessionEffect.TellExitPool(new ExitOnline(state.Region, state.PeerId, state.Stream.ExitCapacity, state.Stream.RemoteAddress,
                state.Stream.Rtt)));
    }

    public static Decision RttMeasured(Decision d, TimeSpan rtt) => d.With(s => s with { Stream = s.Stream with { Rtt = rtt } });

    private static Decision Withdraw(Decision d)
    {
        d = d.Do(new SessionEffect.CancelTimer(ExitHeartbeatTimer));
        return d.State.Serving.Announced
            ? d.With(s => s with { Serving = s.Serving with { Announced = false } })
                .Do(new SessionEffect.TellExitPool(new ExitOffline(d.State.Region, d.State.PeerId)))
            : d;
    }

    private static bool ServesAsExit(PeerState state) =>
        state.Config.Exits is not null && state.Stream.ExitCapacity > 0 && state.Identity.SessionRole is PeerRole.Exit or PeerRole.Both;
}
