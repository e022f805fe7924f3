using MyDvpn.Hosting;

namespace MyDvpn.Peer;

/// <summary>Where the control stream stands, as one immutable snapshot.</summary>
/// <param name="Authentications">Streams authenticated since the agent started.</param>
/// <param name="Attempts">Streams opened since the agent started.</param>
/// <param name="LastProblem">Why the last stream ended or failed; null if none has.</param>
public sealed record PeerStatusSnapshot(
    bool Connected,
    HostPort? Endpoint,
    string? SuperNodeId,
    string? SessionId,
    int Attempts,
    int Authentications,
    string? LastProblem)
{
    public static readonly PeerStatusSnapshot Initial = new(false, null, null, null, 0, 0, null);
}

/// <summary>
/// The agent's control-stream status for readers outside the actor system (tests now, <c>mydvpn status</c> later).
/// Only the <see cref="Control.ControlChannel"/> writes it.
/// </summary>
public sealed class PeerStatus
{
    private PeerStatusSnapshot current = PeerStatusSnapshot.Initial;

    public PeerStatusSnapshot Current => Volatile.Read(ref current);

    internal void Update(Func<PeerStatusSnapshot, PeerStatusSnapshot> change) =>
        Volatile.Write(ref current, change(Volatile.Read(ref current)));
}

/// <summary>Why the agent stopped by itself, and the exit code that says so.</summary>
public sealed record PeerStop(int ExitCode, string Reason);

/// <summary>Completed once, by the actor that decides the agent cannot go on (a permanent refusal).</summary>
public sealed class PeerOutcome
{
    private readonly TaskCompletionSource<PeerStop> stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public Task<PeerStop> Stopped => stopped.Task;

    internal void Stop(PeerStop stop) => stopped.TrySetResult(stop);
}
