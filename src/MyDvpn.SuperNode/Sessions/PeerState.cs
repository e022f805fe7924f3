using System.Collections.Immutable;
using System.Net;
using Google.Protobuf;
using MyDvpn.Protocol.Control;
using MyDvpn.SuperNode.Exits;

namespace MyDvpn.SuperNode.Sessions;

/// <summary>What a session is configured with (not state: the same for every incarnation of one SuperNode).</summary>
/// <param name="Exits">Exit allocation; null: exit requests are refused as unavailable.</param>
/// <param name="RelayAvailable">This SuperNode has relay legs: a direct path that fails gets a relay chain.</param>
public sealed record SessionConfig(PeerSessionSettings Session, ExitSettings? Exits, bool RelayAvailable)
{
    public static readonly SessionConfig Default = new(PeerSessionSettings.Default, null, false);
}

/// <summary>
/// The state of one peer's session, made of the parts each flow owns: <see cref="Identity"/> (authentication,
/// enrollment, revocation), <see cref="Commands"/> (delivery), <see cref="Exit"/> (a client's exit assignment),
/// <see cref="Path"/> (direct or relayed), <see cref="Stream"/> and <see cref="Serving"/> (an exit's clients and presence).
/// Pure: <see cref="Apply"/> folds a persisted event in; <see cref="Decide"/> turns a message into a <see cref="Decision"/>
/// through the flows (<see cref="Authentication"/>, <see cref="CommandDelivery"/>, <see cref="ExitAssignment"/>,
/// <see cref="PathMonitoring"/>, <see cref="StreamLifecycle"/>); neither does I/O.
/// </summary>
public sealed record PeerState(
    SessionConfig Config,
    PeerIdentity Identity,
    CommandBook Commands,
    ClientExit? Exit,
    PathState Path,
    StreamState Stream,
    ExitServing Serving)
{
    /// <summary>Assignments the client left (a rotation's old one, or its new one that did not complete), until their region releases them.</summary>
    public ImmutableList<RetiringExit> Retiring { get; init; } = [];

    /// <summary>
    /// The assignment whose half the client applied (its SetupExit or RotatePeer answered with a result) and the session it
    /// was authenticated in then. Folded from the journal, never persisted of its own (nor in the snapshot): a client that
    /// asks again, in that same session, for the exit it holds already has it (<see cref="ExitAssignment.DecideRequest"/>).
    /// </summary>
    public ExitConfirmation? ExitConfirmed { get; init; }

    public const string JournalUnavailable = "the session journal is unavailable; retry";

    public string PeerId => Identity.PeerId;

    public string Region => Identity.Region;

    public static PeerState Empty(string peerId, string region, SessionConfig config) =>
        new(config, new PeerIdentity(peerId, region, null, false, null, PeerRole.Unspecified), CommandBook.Empty(config.Session.RememberCompleted),
            null, PathState.Initial, StreamState.Detached, ExitServing.None);

    public static PeerState Empty(string peerId, string region, int rememberCompleted) =>
        Empty(peerId, region, SessionConfig.Default with { Session = PeerSessionSettings.Default with { RememberCompleted = rememberCompleted } });

    public PeerState Apply(IPeerSessionEvent evt) => evt switch
    {
        PeerEnrolled or SessionStarted or PeerRevoked or PeerUnrevoked => this with { Identity = Identity.Apply(evt) },
        CommandIssued => this with { Commands = Commands.Apply(evt) },
        CommandCompleted e => Concluded(e.CommandId, CommandResponse.Parser.ParseFrom(e.Response), null) with { Commands = Commands.Apply(evt) },
        CommandFailed e => Concluded(e.CommandId, null, e.Reason) with { Commands = Commands.Apply(evt) },
        ExitRequested or ExitAssigned or ExitRequestRefused or ExitReleaseStarted or ExitReleaseCompleted or RelayEstablished or RelayClosed
            or ExitRotationStarted or ExitRotationAllocated or ExitRotated or ExitRotationFailed =>
            this with { Exit = ClientExit.Apply(Exit, evt), Retiring = RetiringAfter(evt) },
        _ => throw new ArgumentException($"Unknown peer session event {evt.GetType().Name}", nameof(evt)),
    };

    /// <summary>
    /// Routes a message of the session's flows to the flow it belongs to. <paramref name="newId"/> is a fresh id (a session,
    /// a command, an assignment) for the decisions that need one; <paramref name="clientLegPeer"/> the address this
    /// SuperNode's client relay leg of the peer's assignment takes packets from (for an attach).
    /// </summary>
    public Decision Decide(object message, DateTimeOffset now, string newId, IPAddress? clientLegPeer = null)
    {
        var d = Decision.From(this);
        return message switch
        {
            AuthenticatePeer m => Authentication.Authenticate(d, m, newId, now),
            RedemptionFinished m => Authentication.Redeemed(d, m.Enroll, m.Result, newId, now),
            RevokePeer => Authentication.Revoke(d, now),
            UnrevokePeer => Authentication.Unrevoke(d),
            AttachStream m => StreamLifecycle.Attach(d, m, clientLegPeer, now),
            StreamDetached => StreamLifecycle.Detached(d),
            PeerRttMeasured m => StreamLifecycle.RttMeasured(d, m.Rtt),
            ExitHeartbeatTick => StreamLifecycle.Announce(d),
            IssueCommand m => CommandDelivery.Issue(d, m, newId, now),
            CommandAnswered m => CommandDelivery.Answered(d, m.Response, now),
            CommandTimerFired m => CommandDelivery.TimerFired(d, m.CommandId, now),
            RequestExit m => ExitAssignment.Request(d, m, newId, now),
            AllocationFinished m when ExitRotation.Answers(this, m) => ExitRotation.Allocated(d, m, now),
            AllocationFinished m => ExitAssignment.Allocated(d, m, now),
            ClientReleasesExit m => ExitAssignment.ClientReleases(d, m.AssignmentId, now),
            ReleaseFinished m when Retiring.Exists(r => r.AssignmentId == m.AssignmentId) => ExitRotation.ReleaseFinished(d, m, now),
            ReleaseFinished m => ExitAssignment.ReleaseFinished(d, m, now),
            RetryRelease => ExitAssignment.SendRelease(d),
            RetryRetiredRelease m => ExitRotation.RetryRelease(d, m),
            RotateExit m => ExitRotation.Start(d, m, newId, now),
            HandshakesReported m => PathMonitoring.Reported(d, m.Peers, now, m.ProbeFailed),
            DirectPathExpired m => PathMonitoring.Expired(d, m),
            RelayFinished m => PathMonitoring.RelayFinished(d, m, now),
            RelayLegLost m => PathMonitoring.LegLost(d, m),
            DirectReturnDue m => DirectReturn.Due(d, m, now),
            ExitUnpinned m => DirectReturn.ExitUnpinned(d, m, now),
            DirectReturnExpired m => DirectReturn.Expired(d, m),
            _ => throw new ArgumentException($"The session decides nothing about {message.GetType().Name}", nameof(message)),
        };
    }

    /// <summary>What a new incarnation picks up: every command's deadline, and an exit step left under way.</summary>
    public Decision DecideRecovered(DateTimeOffset now) =>
        ExitRotation.Recovered(ExitAssignment.Recovered(CommandDelivery.AwaitStreamAfterRecovery(Decision.From(this), now), now));

    /// <summary>Whether the session may passivate: nothing attached, in flight, being enrolled or under way for its exit.</summary>
    public bool Idle => !Stream.Attached && Commands.InFlight.IsEmpty && !Identity.Redeeming && Retiring.IsEmpty
                        && Exit is null or { Phase: ExitPhase.Active, Rotation: null };

    /// <summary>The assignments being given back after <paramref name="evt"/>: a rotation's old one, or its new one that failed.</summary>
    private ImmutableList<RetiringExit> RetiringAfter(IPeerSessionEvent evt) => evt switch
    {
        ExitRotated e when Exit?.AssignmentId == e.FromAssignmentId =>
            Retiring.Without(e.FromAssignmentId).Add(new RetiringExit(e.FromAssignmentId, Exit.Region, $"the client moved to assignment {e.ToAssignmentId}")),
        ExitRotationFailed e when Exit?.Rotation is { Next: { } made } rotation && rotation.RotationId == e.RotationId =>
            Retiring.Without(made.AssignmentId).Add(new RetiringExit(made.AssignmentId, made.Region, $"the rotation failed: {e.Reason}")),
        ExitReleaseCompleted e => Retiring.Without(e.AssignmentId),
        _ => Retiring,
    };

    /// <summary>The end of a command for the client's exit (its SetupExit) and an exit's clients (its SetupExit and RemoveExit).</summary>
    private PeerState Concluded(string commandId, CommandResponse? response, string? failureReason)
    {
        if (Commands.FindInFlight(commandId) is not { } command)
            return this;
        var applied = response?.OutcomeCase == CommandResponse.OutcomeOneofCase.Result && ExitAssignment.AssignmentOf(command.Command) is { } assignment
                      && Identity.SessionId is { } sessionId
            ? new ExitConfirmation(sessionId, assignment)
            : ExitConfirmed;
        return this with
        {
            Exit = Exit?.Concluded(commandId, response, failureReason),
            Serving = Serving.Concluded(Region, PeerId, command, response),
            ExitConfirmed = applied,
        };
    }

    /// <summary>The assignments as the admin and the peer's stream show them: a client's exit, or an exit's clients.</summary>
    public ImmutableList<ExitAssignmentRecord> Assignments()
    {
        if (Exit is not { } exit)
            return Serving.Served;
        var state = exit.Phase switch
        {
            ExitPhase.Requested => ExitAssignmentRecord.Requested,
            ExitPhase.SettingUp => ExitAssignmentRecord.SettingUp,
            ExitPhase.Active => ExitAssignmentRecord.Active,
            _ => ExitAssignmentRecord.Releasing,
        };
        var record = exit.Assignment is { } assigned
            ? assigned with { State = state }
            : new ExitAssignmentRecord(exit.AssignmentId, exit.Region, "", [], "", "", "", PeerId, Region, exit.ClientPublicKey, state);
        if (exit.ClientRelayLeg is { } clientLeg)
            record = record with { Path = ExitAssignmentRecord.Relayed, ClientRelayLeg = clientLeg, ExitRelayLeg = exit.ExitRelayLeg ?? "" };
        return Serving.Served.Add(record with { LastRotation = exit.LastRotation });
    }

    public PeerStateView View() =>
        new(PeerId, Identity.Enrolled, Identity.Enrollment?.Role ?? PeerRole.Unspecified, Identity.Revoked, Identity.SessionId, Stream.Attached,
            Commands.InFlight.Count, Commands.InFlight.Select(c => c.CommandId).ToImmutableList())
        {
            Assignments = Assignments(),
        };

    /// <summary>The form this state is stored in as a snapshot (see <see cref="PeerSnapshot"/>).</summary>
    public PeerSnapshot ToSnapshot() =>
        new(PeerId, Region, Identity.Enrollment, Identity.Revoked, Identity.SessionId, Identity.SessionRole,
            Commands.InFlight.Select(c => new CommandIssued(c.CommandId, c.Command.ToByteArray(), c.ReplyToPeerId, c.IssuedAt)).ToImmutableList(),
            Commands.Finished)
        {
            Exit = Exit,
            Served = Serving.Served,
            Retiring = Retiring,
        };

    public static PeerState FromSnapshot(PeerSnapshot snapshot, SessionConfig config)
    {
        var empty = Empty(snapshot.PeerId, snapshot.Region, config);
        var state = empty with
        {
            Identity = new PeerIdentity(snapshot.PeerId, snapshot.Region, snapshot.Enrollment, snapshot.Revoked, snapshot.SessionId, snapshot.SessionRole),
            Commands = snapshot.Finished.Aggregate(empty.Commands, (book, id) => book.Remember(id)),
            Exit = snapshot.Exit,
            Serving = new ExitServing(snapshot.Served ?? [], false),
            Retiring = snapshot.Retiring ?? [],
        };
        return snapshot.InFlight.Aggregate(state, (s, issued) => s.Apply(issued));
    }
}

/// <summary>The client applied its half of assignment <paramref name="AssignmentId"/> while authenticated in session <paramref name="SessionId"/>.</summary>
public sealed record ExitConfirmation(string SessionId, string AssignmentId);

/// <summary>
/// A <see cref="PeerState"/> as stored in the snapshot store: lists only (the default JSON serializer cannot read an
/// immutable dictionary back), commands as their <see cref="CommandIssued"/> events, in issue order.
/// </summary>
public sealed record PeerSnapshot(
    string PeerId,
    string Region,
    PeerEnrolled? Enrollment,
    bool Revoked,
    string? SessionId,
    PeerRole SessionRole,
    ImmutableList<CommandIssued> InFlight,
    ImmutableList<string> Finished)
{
    public ClientExit? Exit { get; init; }

    /// <summary>Null in snapshots written before exits existed.</summary>
    public ImmutableList<ExitAssignmentRecord>? Served { get; init; }

    /// <summary>Null in snapshots written before rotations existed.</summary>
    public ImmutableList<RetiringExit>? Retiring { get; init; }
}

/// <summary>The outcome of <see cref="PeerIdentity.DecideAuthentication"/>.</summary>
public abstract record AuthDecision
{
    private AuthDecision()
    {
    }

    public sealed record Refuse(RefusalReason Reason, string Detail) : AuthDecision;

    /// <summary>An enrolled peer proved its identity: start a session in <paramref name="Role"/>.</summary>
    public sealed record StartSession(PeerRole Role) : AuthDecision;

    /// <summary>An unknown peer proved it holds <paramref name="PublicKey"/>: redeem <paramref name="Token"/>, then enroll.</summary>
    public sealed record Enroll(PeerRole Role, byte[] PublicKey, string Token) : AuthDecision;
}
