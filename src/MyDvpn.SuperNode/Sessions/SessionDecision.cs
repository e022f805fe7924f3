using System.Collections.Immutable;
using System.Net;
using Akka.Actor;
using Microsoft.Extensions.Logging;
using MyDvpn.Protocol.Control;
using MyDvpn.Protocol.SuperNode;

namespace MyDvpn.SuperNode.Sessions;

/// <summary>
/// What the session decided about one message: the state it leads to, the events to persist first (in order; every one
/// already folded into <see cref="State"/>) and the effects to run after the last of them is written (or at once when
/// there are none). Built by the pure <c>Decide…</c> functions of <see cref="PeerState"/> and its parts; the
/// <see cref="PeerSession"/> actor only persists and runs effects.
/// </summary>
/// <param name="ReplyIfLost">Told to the requester when the journal fails before the events are written.</param>
public sealed record Decision(
    PeerState State,
    ImmutableList<IPeerSessionEvent> Events,
    ImmutableList<SessionEffect> Effects,
    object? ReplyIfLost = null)
{
    public static Decision From(PeerState state) => new(state, [], []);

    /// <summary>Folds <paramref name="evt"/> into the state and has it persisted.</summary>
    public Decision Record(IPeerSessionEvent evt) => this with { State = State.Apply(evt), Events = Events.Add(evt) };

    public Decision Do(SessionEffect effect) => this with { Effects = Effects.Add(effect) };

    public Decision Do(params SessionEffect[] effects) => this with { Effects = Effects.AddRange(effects) };

    /// <summary>A change of what the session keeps in memory only (nothing persisted).</summary>
    public Decision With(Func<PeerState, PeerState> change) => this with { State = change(State) };

    public Decision Log(LogLevel level, string template, params object?[] args) => Do(new SessionEffect.Log(level, template, args));

    public Decision IfLost(object reply) => this with { ReplyIfLost = reply };

    /// <summary>Continues with <paramref name="next"/> applied to this decision (for steps that may add nothing).</summary>
    public Decision Then(Func<Decision, Decision> next) => next(this);
}

/// <summary>Something the session actor does once a decision's events are persisted. Plain values, so decisions compare.</summary>
public abstract record SessionEffect
{
    private SessionEffect()
    {
    }

    // The requester of the message decided on, and the peer's stream.

    /// <summary>Tell the requester (the sender of the message decided on).</summary>
    public sealed record Reply(object Message) : SessionEffect;

    /// <summary>The requester issued command <paramref name="CommandId"/>: it hears its outcome.</summary>
    public sealed record RememberIssuer(string CommandId) : SessionEffect;

    /// <summary>The stream in <paramref name="Edge"/> is the peer's from now on: watch it.</summary>
    public sealed record AdoptStream(IActorRef Edge) : SessionEffect;

    /// <summary>End the peer's attached stream (if any) with this reason.</summary>
    public sealed record CloseStream(RefusalReason Reason, string Detail) : SessionEffect;

    /// <summary>Write a command to the attached stream (a delivery: the timer that follows it is a separate effect).</summary>
    public sealed record SendCommand(Command Command) : SessionEffect;

    /// <summary>Write a message to the attached stream, if one is attached.</summary>
    public sealed record SendToPeer(ControlMessage Message) : SessionEffect;

    /// <summary>Show the assignments in the admin's session list (the edge keeps them), if they changed.</summary>
    public sealed record ShowAssignments : SessionEffect
    {
        public static readonly ShowAssignments Instance = new();
    }

    /// <summary>The requester waits for the end of rotation <paramref name="RotationId"/>.</summary>
    public sealed record RememberRotationWaiter(string RotationId) : SessionEffect;

    /// <summary>A rotation ended: whoever waits for it hears of it.</summary>
    public sealed record AnnounceRotation(RotationOutcome Outcome) : SessionEffect;

    /// <summary>
    /// A rotation ended (its <see cref="ExitRotated"/> or <see cref="ExitRotationFailed"/> is persisted): count it, and how long
    /// the client took to move, from the rotation's start (<c>mydvpn_exit_rotations_total</c>, <c>mydvpn_exit_rotation_seconds</c>).
    /// </summary>
    public sealed record CountRotation(RotationReason Reason, bool Moved, TimeSpan Took) : SessionEffect;

    /// <summary>
    /// A command reached <paramref name="Stage"/> (its event, if any, is persisted): count it by kind, and an answer's time
    /// from the command's issue (<see cref="CommandMetrics"/>).
    /// </summary>
    public sealed record CountCommand(Command.BodyOneofCase Kind, CommandStage Stage, TimeSpan Took = default) : SessionEffect;

    /// <summary>The command ended: its issuer and, through the <c>peers</c> shard region, <paramref name="ReplyToPeerId"/> hear of it.</summary>
    public sealed record Announce(CommandOutcome Outcome, string? ReplyToPeerId) : SessionEffect;

    // Time.

    public sealed record StartTimer(string Key, object Message, TimeSpan Delay, bool Periodic = false) : SessionEffect;

    public sealed record CancelTimer(string Key) : SessionEffect;

    /// <summary>
    /// The peer is unknown and was refused: if its journal holds nothing, the session asks its shard to stop it now (it
    /// would otherwise live until it is idle).
    /// </summary>
    public sealed record ForgetUnknownPeer : SessionEffect
    {
        public static readonly ForgetUnknownPeer Instance = new();
    }

    /// <summary>Authentications that waited for an enrollment are decided now.</summary>
    public sealed record UnstashAll : SessionEffect
    {
        public static readonly UnstashAll Instance = new();
    }

    // Work outside the actor, each piped back as a message.

    /// <summary>Redeem the enrollment token at the directory; piped back as <see cref="RedemptionFinished"/>.</summary>
    public sealed record RedeemToken(AuthDecision.Enroll Enroll) : SessionEffect;

    /// <summary>Ask the exit's region for an exit; piped back as <see cref="AllocationFinished"/>.</summary>
    public sealed record AllocateExit(AllocateExitRequest Request) : SessionEffect;

    /// <summary>Give an assignment back at the exit's region. Tracked: piped back as <see cref="ReleaseFinished"/>; else best effort.</summary>
    public sealed record ReleaseExit(ReleaseExitRequest Request, bool Tracked) : SessionEffect;

    /// <summary>
    /// Open (or reuse) the client's leg here from <paramref name="ClientAddress"/> and have the exit's region open the exit's,
    /// chained; piped back as <see cref="RelayFinished"/>.
    /// </summary>
    public sealed record OpenRelayChain(string AssignmentId, string ExitRegion, IPAddress ClientAddress) : SessionEffect;

    /// <summary>Close this SuperNode's legs of the assignment.</summary>
    public sealed record CloseRelayLegs(string AssignmentId) : SessionEffect;

    /// <summary>Have the exit's region unpin the exit from its relay leg (a try of the direct path); piped back as <see cref="ExitUnpinned"/>.</summary>
    public sealed record UnpinExit(string AssignmentId, string ExitRegion) : SessionEffect;

    /// <summary>Tell the exit's region that the client's path to its exit broke (best effort).</summary>
    public sealed record ReportPathFailure(PathFailureReport Report) : SessionEffect;

    /// <summary>Have the exit's region close its leg of the assignment (best effort: a leg left open closes once idle).</summary>
    public sealed record CloseExitLeg(string AssignmentId, string ExitRegion) : SessionEffect;

    /// <summary>Tell this region's exit pool (<see cref="Exits.ExitOnline"/>, <see cref="Exits.ExitOffline"/>).</summary>
    public sealed record TellExitPool(object Message) : SessionEffect;

    /// <summary>A message to the session itself, handled after the current one.</summary>
    public sealed record TellSelf(object Message) : SessionEffect;

    public sealed record Log(LogLevel Level, string Template, object?[] Args) : SessionEffect
    {
        public bool Equals(Log? other) =>
            other is not null && Level == other.Level && Template == other.Template && Args.SequenceEqual(other.Args);

        public override int GetHashCode() => HashCode.Combine(Level, Template);
    }
}
