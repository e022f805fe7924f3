using System.Collections.Immutable;
using Microsoft.Extensions.Logging;
using MyDvpn.Common;
using MyDvpn.Protocol.Control;

namespace MyDvpn.Peer.Control;

/// <summary>
/// What one of the channel's machines (<see cref="ConnectionMachine"/>, <see cref="ExitRequestMachine"/>) decided about one
/// message: its next state and the effects the <see cref="ControlChannel"/> runs, in order. Built by pure functions.
/// </summary>
internal sealed record Decision<TState>(TState State, ImmutableList<ChannelEffect> Effects)
{
    public static Decision<TState> Of(TState state) => new(state, []);

    public Decision<TState> With(Func<TState, TState> change) => this with { State = change(State) };

    public Decision<TState> Do(params ChannelEffect[] effects) => this with { Effects = Effects.AddRange(effects) };

    public Decision<TState> Log(LogLevel level, string template, params object?[] args) => Do(new ChannelEffect.Log(level, template, args));
}

/// <summary>Something the control channel does for a decision. Plain values, so decisions compare.</summary>
internal abstract record ChannelEffect
{
    private ChannelEffect()
    {
    }

    /// <summary>Write a message to the current stream (a stream that takes no more is dropped).</summary>
    public sealed record Send(ControlMessage Message) : ChannelEffect;

    public sealed record StartTimer(string Key, object Message, TimeSpan Delay, bool Periodic = false) : ChannelEffect;

    public sealed record CancelTimer(string Key) : ChannelEffect;

    public sealed record Log(LogLevel Level, string Template, object?[] Args) : ChannelEffect
    {
        public bool Equals(Log? other) =>
            other is not null && Level == other.Level && Template == other.Template && Args.SequenceEqual(other.Args);

        public override int GetHashCode() => HashCode.Combine(Level, Template);
    }

    // The connection.

    /// <summary>Open stream <paramref name="Generation"/> to <paramref name="Endpoint"/>; its messages and its end come back tagged with it.</summary>
    public sealed record OpenStream(int Generation, HostPort Endpoint) : ChannelEffect;

    /// <summary>Let the current stream go (aborted if it still runs).</summary>
    public sealed record EndStream : ChannelEffect
    {
        public static readonly EndStream Instance = new();
    }

    /// <summary>
    /// Sign the challenge, bound to <paramref name="Server"/>'s certificate (with the enrollment token and public key if
    /// <paramref name="PresentToken"/>), and send the AuthRequest.
    /// </summary>
    public sealed record AnswerChallenge(AuthChallenge Challenge, bool PresentToken, ServerCertificate Server) : ChannelEffect;

    /// <summary>Record in the state directory that this identity enrolled (with SuperNode <paramref name="SuperNodeId"/>).</summary>
    public sealed record SaveEnrollment(string SuperNodeId, DateTimeOffset At) : ChannelEffect;

    /// <summary>Hand a command to the executor; its answer comes back to the channel.</summary>
    public sealed record Execute(Command Command) : ChannelEffect;

    /// <summary>The agent cannot go on (a permanent refusal): it stops with this outcome.</summary>
    public sealed record StopAgent(PeerStop Stop) : ChannelEffect;

    /// <summary>Something for the exit-request machine to decide on, decided right after.</summary>
    public sealed record TellExitRequestMachine(object Message) : ChannelEffect;

    // Asking for an exit.

    /// <summary>Drop the exit of <paramref name="AssignmentId"/> from the tunnel state; <see cref="StaleExitDropped"/> follows.</summary>
    public sealed record DropStaleExit(string AssignmentId) : ChannelEffect;
}
