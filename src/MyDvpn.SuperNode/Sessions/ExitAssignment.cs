using Google.Protobuf;
using Microsoft.Extensions.Logging;
using MyDvpn.Common;
using MyDvpn.Protocol.Control;
using MyDvpn.Protocol.SuperNode;
using MyDvpn.SuperNode.Commands;
using MyDvpn.SuperNode.Exits;

namespace MyDvpn.SuperNode.Sessions;

public enum ExitPhase
{
    /// <summary>Asked of the exit's region; no answer yet.</summary>
    Requested,

    /// <summary>The exit acked; the client's SetupExit is in flight.</summary>
    SettingUp,

    Active,

    /// <summary>The client did not apply its half: to be rolled back.</summary>
    SetupFailed,

    /// <summary>Being given back; the exit's region has not confirmed yet.</summary>
    Releasing,
}

/// <summary>A client's exit assignment as its session holds it (persisted, and part of the snapshot: keep its shape).</summary>
public sealed record ClientExit(string AssignmentId, string Region, byte[] ClientPublicKey, DateTimeOffset Since)
{
    public ExitPhase Phase { get; init; } = ExitPhase.Requested;

    /// <summary>Both halves' details, once the exit's region allocated it.</summary>
    public ExitAssignmentRecord? Assignment { get; init; }

    public string? SetupCommandId { get; init; }

    /// <summary>Why the setup failed or the release started.</summary>
    public string? Problem { get; init; }

    /// <summary>The gRPC status code a failed setup was first reported with (kept for journals; the catalogue decides now).</summary>
    public int ProblemStatus { get; init; }

    /// <summary>When the direct path failed: the client's relay leg (host:port) and the exit's; null while direct.</summary>
    public string? ClientRelayLeg { get; init; }

    public string? ExitRelayLeg { get; init; }

    /// <summary>When the current relay chain was set up; null while direct (and in journals older than this field).</summary>
    public DateTimeOffset? RelayedSince { get; init; }

    /// <summary>A move of the client to another exit under way; null: none.</summary>
    public ExitRotationState? Rotation { get; init; }

    /// <summary>How the client came to this exit when it was moved here from another; null: it asked for it.</summary>
    public ExitRotationRecord? LastRotation { get; init; }

    /// <summary>Folds an exit event in; an event of another assignment (replaced or released meanwhile) changes nothing.</summary>
    public static ClientExit? Apply(ClientExit? exit, IPeerSessionEvent evt) => evt switch
    {
        ExitRequested e => new ClientExit(e.AssignmentId, e.Region, e.ClientPublicKey, e.At),
        ExitAssigned e when exit is { Phase: ExitPhase.Requested } && exit.AssignmentId == e.Assignment.AssignmentId =>
            exit with { Phase = ExitPhase.SettingUp, Assignment = e.Assignment, SetupCommandId = e.SetupCommandId },
        ExitRequestRefused e when exit?.AssignmentId == e.AssignmentId && exit.Phase == ExitPhase.Requested => null,
        ExitReleaseStarted e when exit?.AssignmentId == e.AssignmentId =>
            exit with { Phase = ExitPhase.Releasing, Problem = exit.Problem ?? e.Reason },
        ExitReleaseCompleted e when exit?.AssignmentId == e.AssignmentId => null,
        RelayEstablished e when exit?.AssignmentId == e.AssignmentId =>
            exit with { ClientRelayLeg = e.ClientLeg, ExitRelayLeg = e.ExitLeg, RelayedSince = e.At },
        RelayClosed e when exit?.AssignmentId == e.AssignmentId => exit with { ClientRelayLeg = null, ExitRelayLeg = null, RelayedSince = null },
        ExitRotationStarted e when exit?.AssignmentId == e.FromAssignmentId =>
            exit with { Rotation = new ExitRotationState(e.RotationId, e.Reason, e.Detail, e.AvoidExitPeerId, e.At) },
        ExitRotationAllocated e when exit?.Rotation?.RotationId == e.RotationId =>
            exit with { Rotation = exit.Rotation with { Next = e.Next, CommandId = e.CommandId } },
        ExitRotated e when exit is { Rotation.Next: { } next } && exit.AssignmentId == e.FromAssignmentId && next.AssignmentId == e.ToAssignmentId =>
            new ClientExit(next.AssignmentId, next.Region, exit.ClientPublicKey, e.At)
            {
                Phase = ExitPhase.Active,
                Assignment = next,
                SetupCommandId = exit.Rotation.CommandId,
                LastRotation = new ExitRotationRecord(exit.AssignmentId, exit.Assignment?.ExitPeerId ?? "", exit.Rotation.Reason, exit.Rotation.Detail, e.At),
            },
        ExitRotationFailed e when exit?.Rotation?.RotationId == e.RotationId => exit with { Rotation = null },
        _ => exit,
    };

    /// <summary>The end of the client's SetupExit decides the assignment: active, or failed and to be rolled back.</summary>
    public ClientExit Concluded(string commandId, CommandResponse? response, string? failureReason)
    {
        if (Phase != ExitPhase.SettingUp || SetupCommandId != commandId)
            return this;
        return response?.OutcomeCase == CommandResponse.OutcomeOneofCase.Result
            ? this with { Phase = ExitPhase.Active }
            : this with
            {
                Phase = ExitPhase.SetupFailed,
                Problem = failureReason ?? $"{response!.Failure.Code}: {response.Failure.Reason}",
                ProblemStatus = (int)RefusalCatalogue.StatusOf(RefusalReason.ExitSetupFailed),
            };
    }
}

/// <summary>
/// A client's exit (ARCHITECTURE §4 Direct): its request persists <see cref="ExitRequested"/> and asks the exit's region;
/// the answer persists <see cref="ExitAssigned"/> with the client's SetupExit, or <see cref="ExitRequestRefused"/> and an
/// ExitRequestFailed to the peer. The client's answer to its SetupExit makes the assignment active — or failed, and then
/// it is rolled back: RemoveExit to the client, the exit's half released at its region, ExitRequestFailed. A Disconnect,
/// an ExitRelease from the client or a revocation releases both halves; a release is retried until the exit's region
/// confirms it.
/// </summary>
public static class ExitAssignment
{
    public const string ReleaseTimer = "exit-release";

    public static Decision Request(Decision d, RequestExit request, string newAssignmentId, DateTimeOffset now)
    {
        var state = d.State;
        switch (DecideRequest(state, request.Region, request.ClientPublicKey ?? [], newAssignmentId, now))
        {
            case ExitRequestDecision.Refuse refuse:
                return TellFailed(d, request.Region, refuse.Reason, refuse.Detail);
            case ExitRequestDecision.InProgress:
                return d.Log(LogLevel.Debug, "Exit request for {ExitRegion} ignored, assignment {AssignmentId} is under way", request.Region,
                    state.Exit?.AssignmentId);
            case ExitRequestDecision.AnsweredFromState answered:
                return d.Log(LogLevel.Debug, "Exit request for {ExitRegion} answered from state: {Why}", request.Region, answered.Why);
            case ExitRequestDecision.Reissue reissue:
                var assignment = reissue.Exit.Assignment!;
                d = CommandDelivery.IssueOwn(d.Log(LogLevel.Information, "Asked again for the exit it holds; sending its SetupExit again"),
                    PeerCommands.UseExit(assignment, state.Config.Exits!, now + state.Config.Exits!.ClientSetupTimeout), now);
                // Its SetupExit carries the direct endpoint: point it at its relay leg again.
                return reissue.Exit.ClientRelayLeg is { } leg
                    ? CommandDelivery.IssueOwn(d, PeerCommands.RelaySetup(assignment.AssignmentId, assignment.ExitPublicKey, leg), now)
                    : d;
            case ExitRequestDecision.ReleaseFirst releaseFirst:
                return TellFailed(StartRelease(d, releaseFirst.Reason, removeFromClient: true, now), request.Region, RefusalReason.Unavailable,
                    "the previous exit is being released first; ask again shortly");
            case ExitRequestDecision.Start start when state.Config.Exits is null:
                return TellFailed(d, start.Event.Region, RefusalReason.Unavailable, "exit allocation is not configured on this SuperNode");
            case ExitRequestDecision.Start start:
                d = d.Record(start.Event)
                    .Log(LogLevel.Information, "Asking region {ExitRegion} for an exit (assignment {AssignmentId})", start.Event.Region,
                        start.Event.AssignmentId)
                    .Do(SessionEffect.ShowAssignments.Instance);
                return Allocate(d);
            default:
                throw new InvalidOperationException("unknown exit request decision");
        }
    }

    /// <summary>
    /// What to do with a client's ExitRequest for <paramref name="region"/>: refuse it (not a client, bad key or region),
    /// start an allocation, ignore it (one is under way), or release the old assignment first (another region or key). A
    /// request for the active exit it holds (same region and key) is answered from state: while a SetupExit or RotatePeer of
    /// that assignment is in flight, that command is what the client gets (delivered and redelivered on its stream); once
    /// the client applied one in its current session, it holds the exit and nothing is sent; otherwise (it authenticated
    /// anew since, and asks: it lost its state) its SetupExit is sent again, once — so repeated requests never issue more.
    /// </summary>
    public static ExitRequestDecision DecideRequest(PeerState state, string region, byte[] clientPublicKey, string newAssignmentId, DateTimeOffset now)
    {
        var role = state.Identity.SessionRole;
        if (role is not (PeerRole.Client or PeerRole.Both))
            return new ExitRequestDecision.Refuse(RefusalReason.NotAnExitClient, $"the peer is connected as {role}; only a client (or both) may ask for an exit");

        if (clientPublicKey.Length != PeerIdentity.PublicKeyLength)
        {
            return new ExitRequestDecision.Refuse(RefusalReason.MalformedMessage,
                $"wireguard_public_key must be {PeerIdentity.PublicKeyLength} bytes, was {clientPublicKey.Length}");
        }

        if (!RegionName.IsValid(region, out var problem))
            return new ExitRequestDecision.Refuse(RefusalReason.MalformedMessage, $"region: {problem}");

        return state.Exit switch
        {
            null => new ExitRequestDecision.Start(new ExitRequested(newAssignmentId, region, (byte[])clientPublicKey.Clone(), now)),
            { Phase: ExitPhase.Requested or ExitPhase.SettingUp } => ExitRequestDecision.InProgress.Instance,
            { Phase: ExitPhase.Active } exit when exit.Region == region && exit.ClientPublicKey.AsSpan().SequenceEqual(clientPublicKey) =>
                state.Commands.InFlight.Find(c => AssignmentOf(c.Command) == exit.AssignmentId) is { } inFlight
                    ? new ExitRequestDecision.AnsweredFromState($"command {inFlight.CommandId} for assignment {exit.AssignmentId} is on its way to the client")
                    : state.ExitConfirmed == new ExitConfirmation(state.Identity.SessionId ?? "", exit.AssignmentId)
                        ? new ExitRequestDecision.AnsweredFromState($"the client applied assignment {exit.AssignmentId} in this session already")
                        : new ExitRequestDecision.Reissue(exit),
            { Phase: ExitPhase.Active } exit => new ExitRequestDecision.ReleaseFirst(
                $"the client asked for an exit in {region} with {(exit.Region == region ? "a new key" : "another region")}"),
            var exit => new ExitRequestDecision.Refuse(RefusalReason.Unavailable,
                $"the previous exit (assignment {exit.AssignmentId}) is being released; ask again shortly"),
        };
    }

    /// <summary>The assignment a command gives the peer as a client (a SetupExit or RotatePeer); null for any other command.</summary>
    public static string? AssignmentOf(Command command) => command.BodyCase switch
    {
        Command.BodyOneofCase.SetupExit when command.SetupExit.Side != ExitSide.Exit => command.SetupExit.AssignmentId,
        Command.BodyOneofCase.RotatePeer => command.RotatePeer.AssignmentId,
        _ => null,
    };

    /// <summary>Asks the exit's region (again, after a restart) for the requested assignment.</summary>
    public static Decision Allocate(Decision d)
    {
        var state = d.State;
        if (state.Exit is not { Phase: ExitPhase.Requested } exit)
            return d;
        if (state.Config.Exits is null)
        {
            return d.Do(new SessionEffect.TellSelf(new AllocationFinished(exit.AssignmentId,
                new ExitAllocationResult.Refused(RefusalReason.Unavailable,
                    "exit allocation is not configured on this SuperNode"))));
        }

        return d.Do(new SessionEffect.AllocateExit(new AllocateExitRequest
        {
            AssignmentId = exit.AssignmentId,
            Region = exit.Region,
            ClientPeerId = state.PeerId,
            ClientRegion = state.Region,
            ClientPublicKey = ByteString.CopyFrom(exit.ClientPublicKey),
        }));
    }

    /// <summary>The exit's region answered: send the client its half, or tell it why not.</summary>
    public static Decision Allocated(Decision d, AllocationFinished finished, DateTimeOffset now)
    {
        var state = d.State;
        if (state.Exit is not { Phase: ExitPhase.Requested } exit || exit.AssignmentId != finished.AssignmentId)
        {
            if (finished.Result is not ExitAllocationResult.Allocated late)
                return d;
            // Released or replaced while the region worked on it: give it back so no exit keeps a place for nobody.
            return ReleaseUntracked(d.Log(LogLevel.Information, "Assignment {AssignmentId} arrived after it was given up; releasing it",
                finished.AssignmentId), late.Assignment.Region, finished.AssignmentId, "given up by the client's session before it completed");
        }

        switch (finished.Result)
        {
            case ExitAllocationResult.Allocated allocated:
                var settings = state.Config.Exits!;
                var setup = PeerCommands.UseExit(allocated.Assignment, settings, now + settings.ClientSetupTimeout);
                if (state.Commands.DecideIssue(new IssueCommand(state.PeerId, setup), setup.CommandId, now, settings.ClientSetupTimeout,
                        state.Identity) is not IssueDecision.Issue issue)
                {
                    return d.Do(new SessionEffect.TellSelf(new AllocationFinished(finished.AssignmentId, new ExitAllocationResult.Refused(RefusalReason.ExitSetupFailed, "the client's SetupExit could not be issued"))));
                }

                d = d.Record(new ExitAssigned(allocated.Assignment, setup.CommandId, now)).Record(issue.Event)
                    .Log(LogLevel.Information, "Exit {ExitPeerId}@{ExitRegion} acked assignment {AssignmentId}; sending the client its SetupExit",
                        allocated.Assignment.ExitPeerId, allocated.Assignment.Region, finished.AssignmentId);
                return CommandDelivery.Deliver(d, setup.CommandId, now).Do(SessionEffect.ShowAssignments.Instance);
            case ExitAllocationResult.Refused refused:
                if (refused.Reason == RefusalReason.RegionUnreachable)
                {
                    // The region may have completed it after the call gave up.
                    d = ReleaseUntracked(d, exit.Region, exit.AssignmentId, "the client's session gave up waiting for it");
                }

                d = d.Record(new ExitRequestRefused(exit.AssignmentId, (int)RefusalCatalogue.StatusOf(refused.Reason), refused.Reason, refused.Detail, now))
                    .Log(LogLevel.Information, "No exit in region {ExitRegion}: {Reason} {Detail}", exit.Region,
                        RefusalReasons.WireName(refused.Reason), refused.Detail);
                return TellFailed(d, exit.Region, refused.Reason, refused.Detail).Do(SessionEffect.ShowAssignments.Instance);
            default:
                throw new InvalidOperationException("unknown allocation result");
        }
    }

    /// <summary>
    /// A command ended: the client's SetupExit makes its assignment active, or failed and rolled back; its RotatePeer
    /// completes or fails a rotation.
    /// </summary>
    public static Decision CommandConcluded(Decision d, CommandOutcome outcome, DateTimeOffset now) => d.State.Exit switch
    {
        { Phase: ExitPhase.SetupFailed } => RollBackFailedSetup(d, now),
        { Rotation.CommandId: { } rotating } when rotating == outcome.CommandId => ExitRotation.CommandConcluded(d, outcome, now),
        { Phase: ExitPhase.Active, Assignment: { } assignment } exit when exit.SetupCommandId == outcome.CommandId => PathMonitoring.Activated(
            d.Log(LogLevel.Information, "Exit {ExitPeerId}@{ExitRegion} active (assignment {AssignmentId}, address {ClientAddress})",
                assignment.ExitPeerId, exit.Region, exit.AssignmentId, assignment.ClientAddress)),
        _ => d,
    };

    /// <summary>The client did not apply its half: undo both halves and tell it why.</summary>
    public static Decision RollBackFailedSetup(Decision d, DateTimeOffset now)
    {
        if (d.State.Exit is not { Phase: ExitPhase.SetupFailed } exit)
            return d;
        var why = $"the client could not apply its SetupExit: {exit.Problem}";
        d = TellFailed(d.Log(LogLevel.Warning, "Rolling back assignment {AssignmentId}: {Why}", exit.AssignmentId, why),
            exit.Region, RefusalReason.ExitSetupFailed, why);
        return StartRelease(d, why, removeFromClient: true, now);
    }

    /// <summary>
    /// Gives the client's assignment back: persisted first, then the exit's region is asked until it confirms; with
    /// <paramref name="removeFromClient"/> the client gets RemoveExit (it may have applied its half).
    /// </summary>
    public static Decision StartRelease(Decision d, string reason, bool removeFromClient, DateTimeOffset now)
    {
        var state = d.State;
        if (state.Exit is not { } exit || exit.Phase == ExitPhase.Releasing)
            return d;

        // The client's relay leg here goes now; the exit's goes with the release at its region. A rotation ends with it.
        d = PathMonitoring.Stop(ExitRotation.Abandon(d, reason, now)).Do(new SessionEffect.CloseRelayLegs(exit.AssignmentId))
            .Record(new ExitReleaseStarted(exit.AssignmentId, reason, now))
            .Log(LogLevel.Information, "Releasing assignment {AssignmentId}: {Reason}", exit.AssignmentId, reason)
            .Do(SessionEffect.ShowAssignments.Instance)
            .Then(SendRelease);
        if (removeFromClient && exit.Assignment is { } assignment)
        {
            var deadline = now + (state.Config.Exits?.RemoveDeadline ?? state.Config.Session.DefaultDeadline);
            d = CommandDelivery.IssueOwn(d, PeerCommands.RemoveExit(exit.AssignmentId, assignment.ExitPublicKey, ExitSide.Client, reason, deadline), now);
        }

        return d;
    }

    /// <summary>Asks the exit's region to release the assignment being given back.</summary>
    public static Decision SendRelease(Decision d)
    {
        if (d.State.Exit is not { Phase: ExitPhase.Releasing } exit)
            return d;
        if (d.State.Config.Exits is null)
            return d.Do(new SessionEffect.TellSelf(new ReleaseFinished(exit.AssignmentId, null)));
        return d.Do(new SessionEffect.ReleaseExit(
            new ReleaseExitRequest { AssignmentId = exit.AssignmentId, Region = exit.Region, Reason = exit.Problem ?? "released" }, Tracked: true));
    }

    public static Decision ReleaseFinished(Decision d, ReleaseFinished finished, DateTimeOffset now)
    {
        if (d.State.Exit is not { Phase: ExitPhase.Releasing } exit || exit.AssignmentId != finished.AssignmentId)
            return d;

        if (finished.Problem is not null)
        {
            var retry = d.State.Config.Exits!.ReleaseRetry;
            return d.Log(LogLevel.Warning, "Releasing assignment {AssignmentId} at region {ExitRegion} failed, retrying in {RetrySeconds:0} s: {Problem}",
                    exit.AssignmentId, exit.Region, retry.TotalSeconds, finished.Problem)
                .Do(new SessionEffect.StartTimer(ReleaseTimer, RetryRelease.Instance, retry));
        }

        return d.Record(new ExitReleaseCompleted(exit.AssignmentId, now))
            .Log(LogLevel.Information, "Assignment {AssignmentId} released", exit.AssignmentId)
            .Do(SessionEffect.ShowAssignments.Instance);
    }

    /// <summary>The client gives its exit back (its ExitRelease).</summary>
    public static Decision ClientReleases(Decision d, string assignmentId, DateTimeOffset now) =>
        d.State.Exit?.AssignmentId == assignmentId ? StartRelease(d, "released by the client", removeFromClient: true, now) : d;

    /// <summary>An exit step the last incarnation left under way goes on from where the journal says it was.</summary>
    public static Decision Recovered(Decision d, DateTimeOffset now) => d.State.Exit?.Phase switch
    {
        ExitPhase.Requested => Allocate(d),
        ExitPhase.SetupFailed => RollBackFailedSetup(d, now),
        ExitPhase.Releasing => SendRelease(d),
        _ => d,
    };

    /// <summary>Best effort, nothing persisted: for an assignment the session no longer holds.</summary>
    private static Decision ReleaseUntracked(Decision d, string region, string assignmentId, string reason) =>
        d.State.Config.Exits is null
            ? d
            : d.Do(new SessionEffect.ReleaseExit(new ReleaseExitRequest { AssignmentId = assignmentId, Region = region, Reason = reason }, Tracked: false));

    /// <summary>
    /// The client's exit is lost, no other exit took it, and its own test of the path failed: the assignment is given back
    /// (RemoveExit to the client, the release at the exit's region) and the client is told NO_EXIT_AVAILABLE, so that it
    /// asks again with its backoff until an exit of the region takes it.
    /// </summary>
    public static Decision GiveUpLostExit(Decision d, string why, DateTimeOffset now)
    {
        if (d.State.Exit is not { Phase: ExitPhase.Active } exit)
            return d;
        d = TellFailed(d.Log(LogLevel.Warning, "Giving up assignment {AssignmentId}: {Why}", exit.AssignmentId, why), exit.Region,
            RefusalReason.NoExitAvailable, why);
        return StartRelease(d, why, removeFromClient: true, now);
    }

    private static Decision TellFailed(Decision d, string region, RefusalReason reason, string detail) =>
        d.Do(new SessionEffect.SendToPeer(new ControlMessage
        {
            ExitRequestFailed = new ExitRequestFailed
            {
                Region = region,
                GrpcStatus = (int)RefusalCatalogue.StatusOf(reason),
                Reason = reason,
                Detail = detail,
            },
        }));
}

/// <summary>The outcome of <see cref="ExitAssignment.DecideRequest"/>.</summary>
public abstract record ExitRequestDecision
{
    private ExitRequestDecision()
    {
    }

    public sealed record Refuse(RefusalReason Reason, string Detail) : ExitRequestDecision;

    public sealed record Start(ExitRequested Event) : ExitRequestDecision;

    public sealed record InProgress : ExitRequestDecision
    {
        public static readonly InProgress Instance = new();
    }

    public sealed record Reissue(ClientExit Exit) : ExitRequestDecision;

    /// <summary>The client already has, or is being sent, what it asks for: nothing new is issued or persisted.</summary>
    public sealed record AnsweredFromState(string Why) : ExitRequestDecision;

    public sealed record ReleaseFirst(string Reason) : ExitRequestDecision;
}
