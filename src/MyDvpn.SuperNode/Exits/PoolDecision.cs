using System.Collections.Immutable;
using Microsoft.Extensions.Logging;
using MyDvpn.Protocol.Control;

namespace MyDvpn.SuperNode.Exits;

/// <summary>
/// What the exit pool decided about one message: the state it leads to, the events to persist first (in order; every one
/// already folded into <see cref="State"/>) and the effects to run after the last of them is written (or at once when
/// there are none). Built by the pure flows (<see cref="ExitSetup"/>, <see cref="AssignmentRelease"/>,
/// <see cref="ExitAnnouncements"/>); the <see cref="ExitPool"/> actor only persists and runs effects.
/// </summary>
public sealed record PoolDecision(PoolState State, ImmutableList<IExitPoolEvent> Events, ImmutableList<PoolEffect> Effects)
{
    public static PoolDecision From(PoolState state) => new(state, [], []);

    /// <summary>Folds <paramref name="evt"/> into the state and has it persisted.</summary>
    public PoolDecision Record(IExitPoolEvent evt) => this with { State = State.Apply(evt), Events = Events.Add(evt) };

    public PoolDecision Do(PoolEffect effect) => this with { Effects = Effects.Add(effect) };

    /// <summary>A change of what the pool keeps in memory only (nothing persisted).</summary>
    public PoolDecision With(Func<PoolState, PoolState> change) => this with { State = change(State) };

    public PoolDecision Log(LogLevel level, string template, params object?[] args) => Do(new PoolEffect.Log(level, template, args));

    /// <summary>Continues with <paramref name="next"/> applied to this decision.</summary>
    public PoolDecision Then(Func<PoolDecision, PoolDecision> next) => next(this);
}

/// <summary>What a caller waits for, by assignment (see <see cref="PoolEffect.Await"/>).</summary>
public enum Awaited
{
    /// <summary>The answer to an <see cref="AllocateExit"/>: <see cref="ExitAllocated"/> or <see cref="ExitAllocationRefused"/>.</summary>
    Allocation,

    /// <summary>The answer to a <see cref="ReleaseExit"/> asked while the assignment's setup was under way.</summary>
    Release,
}

/// <summary>
/// Something the pool actor does once a decision's events are persisted. Plain values, so decisions compare: callers are
/// named by what they wait for (<see cref="Await"/>, <see cref="Answer"/>), never by their actor refs, which only the actor holds.
/// </summary>
public abstract record PoolEffect
{
    private PoolEffect()
    {
    }

    /// <summary>Tell the requester (the sender of the message decided on).</summary>
    public sealed record Reply(object Message) : PoolEffect;

    /// <summary>The requester waits for <paramref name="What"/> of the assignment: it hears the <see cref="Answer"/>.</summary>
    public sealed record Await(Awaited What, string AssignmentId) : PoolEffect;

    /// <summary>Everyone waiting for <paramref name="What"/> of the assignment hears <paramref name="Message"/>; then none waits any more.</summary>
    public sealed record Answer(Awaited What, string AssignmentId, object Message) : PoolEffect;

    /// <summary>Issue <paramref name="Command"/> to exit <paramref name="PeerId"/> through its session (the <c>peers</c> shard region).</summary>
    public sealed record Issue(string PeerId, Command Command) : PoolEffect;

    public sealed record StartTimer(string Key, object Message, TimeSpan Delay, bool Periodic = false) : PoolEffect;

    /// <summary>Ask the session of a client (in its region, maybe another) to move it to another exit (<c>ExitAllocation.RotateClient</c>).</summary>
    public sealed record MoveClient(Protocol.SuperNode.RotateClientRequest Request) : PoolEffect;

    public sealed record CancelTimer(string Key) : PoolEffect;

    /// <summary>An exit's claimed endpoint was not taken (<see cref="ExitEndpoints"/>): counted in <c>mydvpn_exit_endpoints_refused_total</c>.</summary>
    public sealed record CountRefusedEndpoint : PoolEffect;

    public sealed record Log(LogLevel Level, string Template, object?[] Args) : PoolEffect
    {
        public bool Equals(Log? other) =>
            other is not null && Level == other.Level && Template == other.Template && Args.SequenceEqual(other.Args);

        public override int GetHashCode() => HashCode.Combine(Level, Template);
    }
}
