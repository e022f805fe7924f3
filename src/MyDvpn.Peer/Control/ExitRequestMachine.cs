using Google.Protobuf;
using Microsoft.Extensions.Logging;
using MyDvpn.Peer.Commands;
using MyDvpn.Protocol.Control;

namespace MyDvpn.Peer.Control;

/// <summary>
/// The exit-request machine, as a value. A client (role client or both) with <c>--exit-region</c> asks for an exit
/// after each authentication while it holds none: one ExitRequest outstanding at a time, sent again when unanswered for
/// <see cref="PeerTimings.ExitRequestTimeout"/> or after a reconnect. An ExitRequestFailed is asked again after a jittered
/// exponential backoff unless the <see cref="RefusalCatalogue"/> calls its reason permanent (a reason this version does
/// not know is asked again); a permanent one stops the requests until the agent restarts, as a Disconnect does. An exit
/// assigned or rotated to ends the asking; an exit that went away starts it again after
/// <see cref="PeerTimings.ExitReaskDelay"/>. An exit the session no longer holds (it says which it holds when the stream
/// authenticates) is dropped first. <see cref="Decide"/> is a pure function of the state, the message, the time, a
/// random sample for the jitter, and the assignment of the exit the tunnel state holds.
/// </summary>
internal sealed record ExitRequestMachine
{
    public const string RetryTimer = "exit-retry", TimeoutTimer = "exit-timeout";

    /// <summary>The region asked for; null when this peer asks for no exit.</summary>
    public string? Region { get; init; }

    /// <summary>This peer's WireGuard public key, for the SuperNode to give the exit.</summary>
    public required ByteString WireGuardKey { get; init; }

    public required PeerTimings Timings { get; init; }

    public ExitRequestState State { get; init; }

    /// <summary>The stream the outstanding ExitRequest went out on.</summary>
    public int RequestGeneration { get; init; }

    /// <summary>The authenticated stream; null while none is up.</summary>
    public int? Stream { get; init; }

    public ExitRequestError? LastError { get; init; }

    public DateTimeOffset? NextAttemptAt { get; init; }

    public required ReconnectBackoff Backoff { get; init; }

    /// <summary>The agent is stopping: no more requests.</summary>
    public bool Closing { get; init; }

    /// <summary>Whether a peer with <paramref name="settings"/> asks for an exit: a client (or both) with <c>--exit-region</c>.</summary>
    public static bool AsksForExit(PeerSettings settings) =>
        settings.Role is PeerRole.Client or PeerRole.Both && settings.ExitRegion is not null;

    public static ExitRequestMachine Initial(PeerSettings settings, byte[] wireGuardPublicKey) => new()
    {
        Region = AsksForExit(settings) ? settings.ExitRegion : null,
        WireGuardKey = ByteString.CopyFrom(wireGuardPublicKey),
        Timings = settings.Timings,
        Backoff = new ReconnectBackoff(settings.Timings.ExitRetryBase, settings.Timings.ExitRetryCap),
    };

    /// <summary>The exit-request status before anything was asked.</summary>
    public static ExitRequestStatus InitialStatus(PeerSettings settings) =>
        ExitRequestStatus.Idle with { Region = AsksForExit(settings) ? settings.ExitRegion : null };

    public ExitRequestStatus Status => new(Region, State, LastError, NextAttemptAt);

    private bool Wanted => Region is not null;

    /// <param name="jitter">A uniform sample in [0, 1] for the backoff, should the decision need one.</param>
    /// <param name="held">The assignment of the exit the tunnel state holds; null when it holds none.</param>
    public Decision<ExitRequestMachine> Decide(object message, DateTimeOffset now, double jitter, string? held)
    {
        var d = Decision<ExitRequestMachine>.Of(this);
        switch (message)
        {
            case StreamUp up:
                d = d.With(s => s with { Stream = up.Generation });
                if (held is not null && held != up.SessionAssignmentId)
                {
                    return d.Log(LogLevel.Warning, "The SuperNode's session holds {SessionAssignment} instead of exit assignment {HeldAssignment}; dropping the stale exit",
                            up.SessionAssignmentId.Length == 0 ? "no exit" : $"assignment {up.SessionAssignmentId}", held)
                        .Do(new ChannelEffect.DropStaleExit(held));
                }
                return MaybeRequest(d, now, held);
            case StreamDown:
                return d.With(s => s with { Stream = null });
            case StaleExitDropped:
                return MaybeRequest(d, now, held);
            case ExitRequestDue when State == ExitRequestState.WaitingRetry:
                return MaybeRequest(d.With(s => s with { State = ExitRequestState.Idle, NextAttemptAt = null }), now, held);
            case ExitRequestUnanswered unanswered when State == ExitRequestState.Requested && Stream == unanswered.Generation && !Closing:
                if (held is not null)
                    return d.With(s => s with { State = ExitRequestState.Idle });
                return Send(d.Log(LogLevel.Warning, "No answer to the ExitRequest for region {ExitRegion} within {TimeoutMs} ms; asking again",
                    Region, (long)Timings.ExitRequestTimeout.TotalMilliseconds), unanswered.Generation, now);
            case ExitRequestFailed failed:
                return Failed(d, failed, now, jitter, held);
            case ExitChanged.Assigned assigned:
                return Settled(d).Log(LogLevel.Information, "Using exit {ExitPeerId} of region {ExitRegion} at {Endpoint} (assignment {AssignmentId})",
                    assigned.ExitPeerId, assigned.ExitRegion, assigned.Endpoint, assigned.AssignmentId);
            case ExitChanged.Rotated rotated:
                return Settled(d).Log(LogLevel.Warning,
                    "Moved from exit {OldExitPeerId} (assignment {OldAssignmentId}) to exit {ExitPeerId} of region {ExitRegion} at {Endpoint} (assignment {AssignmentId}): {Reason}",
                    rotated.FromExitPeerId, rotated.FromAssignmentId, rotated.ExitPeerId, rotated.ExitRegion, rotated.Endpoint, rotated.AssignmentId, rotated.Reason);
            case ExitChanged.PathChanged path:
                return d.Log(LogLevel.Information, path.Relayed
                    ? "The path to the exit of assignment {AssignmentId} goes through a relay leg now"
                    : "The path to the exit of assignment {AssignmentId} is direct again (on trial until its handshake)", path.AssignmentId);
            case ExitChanged.Removed removed when Wanted && !Closing && State == ExitRequestState.Idle && held is null:
                return Wait(d, Timings.ExitReaskDelay, now)
                    .Log(LogLevel.Warning, "The exit of assignment {AssignmentId} went away ({Reason}); asking for another in {DelayMs} ms",
                        removed.AssignmentId, removed.Reason, (long)Timings.ExitReaskDelay.TotalMilliseconds);
            case ExitChanged.Disconnected disconnected when Wanted:
                var stopped = Stop(d);
                return State == ExitRequestState.Stopped
                    ? stopped
                    : stopped.Log(LogLevel.Warning, "The SuperNode disconnected this peer ({Reason}): its exit is dropped, and no exit is asked for until the agent restarts",
                        disconnected.Reason);
            case ChannelClosing:
                return d.With(s => s with { Closing = true }).Do(new ChannelEffect.CancelTimer(TimeoutTimer), new ChannelEffect.CancelTimer(RetryTimer));
            default:
                return d;
        }
    }

    /// <summary>Sends an ExitRequest if this peer wants an exit, holds none, has none outstanding on this stream and may ask.</summary>
    private static Decision<ExitRequestMachine> MaybeRequest(Decision<ExitRequestMachine> d, DateTimeOffset now, string? held)
    {
        var s = d.State;
        if (!s.Wanted || s.Closing || s.State is ExitRequestState.Stopped or ExitRequestState.WaitingRetry)
            return d;
        if (held is not null)
            return d.With(x => x with { State = ExitRequestState.Idle }).Do(new ChannelEffect.CancelTimer(TimeoutTimer));
        if (s.Stream is not { } stream || (s.State == ExitRequestState.Requested && s.RequestGeneration == stream))
            return d;
        return Send(d, stream, now);
    }

    private static Decision<ExitRequestMachine> Send(Decision<ExitRequestMachine> d, int stream, DateTimeOffset now)
    {
        var s = d.State;
        return d.With(x => x with { State = ExitRequestState.Requested, RequestGeneration = stream, NextAttemptAt = null })
            .Log(LogLevel.Information, "Asking for an exit in region {ExitRegion} with WireGuard key {WireGuardKey}", s.Region, s.WireGuardKey.ToBase64())
            .Do(new ChannelEffect.StartTimer(TimeoutTimer, new ExitRequestUnanswered(stream), s.Timings.ExitRequestTimeout),
                new ChannelEffect.Send(new ControlMessage { ExitRequest = new ExitRequest { Region = s.Region, WireguardPublicKey = s.WireGuardKey } }));
    }

    private static Decision<ExitRequestMachine> Failed(Decision<ExitRequestMachine> d, ExitRequestFailed failed, DateTimeOffset now, double jitter, string? held)
    {
        var s = d.State;
        var statusName = Refusals.GrpcStatusName(failed.GrpcStatus);
        var reasonName = RefusalReasons.WireName(failed.Reason);
        if (!s.Wanted || s.Closing || s.State == ExitRequestState.Stopped || held is not null)
        {
            return d.Log(LogLevel.Information, "Ignoring ExitRequestFailed {GrpcStatus} {Reason} ({Detail}): no exit is being asked for",
                statusName, reasonName, failed.Detail);
        }
        d = d.With(x => x with { LastError = new ExitRequestError(statusName, reasonName, failed.Detail, now) })
            .Do(new ChannelEffect.CancelTimer(TimeoutTimer));
        if (Refusals.RetriesExitRequest(failed.Reason))
        {
            var (delay, next) = s.Backoff.Next(jitter);
            return Wait(d.With(x => x with { Backoff = next }), delay, now)
                .Log(LogLevel.Warning, "No exit in region {ExitRegion} for now: {GrpcStatus} {Reason} ({Detail}); asking again in {DelayMs} ms",
                    failed.Region, statusName, reasonName, failed.Detail, (long)delay.TotalMilliseconds);
        }
        return Stop(d).Log(LogLevel.Error,
            "Not asking for an exit again until the agent restarts: the SuperNode refused it with {GrpcStatus} {Reason} ({Detail}): {Fix}",
            statusName, reasonName, failed.Detail, Refusals.ExplainExitRefusal(failed.Reason, s.Region));
    }

    /// <summary>An exit is held: no more asking, no error, the backoff from the start.</summary>
    private static Decision<ExitRequestMachine> Settled(Decision<ExitRequestMachine> d)
    {
        var s = d.State;
        var settled = s with
        {
            State = s.State == ExitRequestState.Stopped ? ExitRequestState.Stopped : ExitRequestState.Idle,
            Backoff = s.Backoff.Reset(),
            LastError = null,
            NextAttemptAt = null,
        };
        return d.With(_ => settled).Do(new ChannelEffect.CancelTimer(TimeoutTimer), new ChannelEffect.CancelTimer(RetryTimer));
    }

    private static Decision<ExitRequestMachine> Wait(Decision<ExitRequestMachine> d, TimeSpan delay, DateTimeOffset now) =>
        d.With(x => x with { State = ExitRequestState.WaitingRetry, NextAttemptAt = now + delay })
            .Do(new ChannelEffect.StartTimer(RetryTimer, ExitRequestDue.Instance, delay));

    private static Decision<ExitRequestMachine> Stop(Decision<ExitRequestMachine> d) =>
        d.With(x => x with { State = ExitRequestState.Stopped, NextAttemptAt = null })
            .Do(new ChannelEffect.CancelTimer(TimeoutTimer), new ChannelEffect.CancelTimer(RetryTimer));
}
