using MyDvpn.Common;

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

    /// <summary>Where asking the SuperNode for an exit stands.</summary>
    public ExitRequestStatus ExitRequest { get; init; } = ExitRequestStatus.Idle;
}

/// <summary>Where asking for an exit stands.</summary>
public enum ExitRequestState
{
    /// <summary>Not asking: no exit wanted (no --exit-region, or role exit), one is held, or the stream is not up yet.</summary>
    Idle,

    /// <summary>An ExitRequest is out, unanswered.</summary>
    Requested,

    /// <summary>The last request failed in a way that may pass; the next goes out at <see cref="ExitRequestStatus.NextAttemptAt"/>.</summary>
    WaitingRetry,

    /// <summary>No more requests until the agent restarts: a Disconnect, or a refusal no retry can fix.</summary>
    Stopped,
}

/// <summary>Why the SuperNode could not give an exit (an ExitRequestFailed).</summary>
/// <param name="GrpcStatus">The gRPC status name, e.g. <c>RESOURCE_EXHAUSTED</c>.</param>
/// <param name="Reason">The refusal reason's wire name, e.g. <c>NO_EXIT_AVAILABLE</c>.</param>
public sealed record ExitRequestError(string GrpcStatus, string Reason, string Detail, DateTimeOffset At);

/// <param name="Region">The region asked for (<c>--exit-region</c>); null when the peer asks for no exit.</param>
/// <param name="NextAttemptAt">When the next request goes out, while <see cref="ExitRequestState.WaitingRetry"/>.</param>
public sealed record ExitRequestStatus(string? Region, ExitRequestState State, ExitRequestError? LastError, DateTimeOffset? NextAttemptAt)
{
    public static readonly ExitRequestStatus Idle = new(null, ExitRequestState.Idle, null, null);

    /// <summary>The state as the status socket writes it: <c>idle</c>, <c>requested</c>, <c>waiting-retry</c>, <c>stopped</c>.</summary>
    public static string WireName(ExitRequestState state) => state switch
    {
        ExitRequestState.Requested => "requested",
        ExitRequestState.WaitingRetry => "waiting-retry",
        ExitRequestState.Stopped => "stopped",
        _ => "idle",
    };
}

/// <summary>
/// The agent's control-stream and exit-request status for readers outside the actor system (the status socket, tests).
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
