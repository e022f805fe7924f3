using System.Collections.Immutable;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using MyDvpn.Common;
using MyDvpn.Protocol.Control;
using MyDvpn.Security;
using MyDvpn.SuperNode.Exits;
using StatusCode = Grpc.Core.StatusCode;

namespace MyDvpn.SuperNode.Sessions;

/// <summary>A command issued to the peer and not finished yet. <see cref="Command"/> is the session's own copy.</summary>
public sealed record InFlightCommand(string CommandId, Command Command, string? ReplyToPeerId, DateTimeOffset IssuedAt)
{
    public DateTimeOffset Deadline => Command.Deadline?.ToDateTimeOffset() ?? IssuedAt;
}

/// <summary>
/// The durable state of one peer's session. Pure: <see cref="Apply"/> folds an event into a new state and the
/// <c>Decide…</c> methods turn a request into a decision or the events it causes; neither does any I/O.
/// </summary>
/// <param name="Enrollment">How the peer enrolled (its role and public key); null while it is unknown.</param>
/// <param name="SessionId">The latest authenticated session: the only one a stream may attach with.</param>
/// <param name="InFlight">Commands issued and not finished, in issue order.</param>
/// <param name="Finished">Ids of the last <paramref name="RememberCompleted"/> finished commands, oldest first.</param>
public sealed record PeerState(
    string PeerId,
    string Region,
    int RememberCompleted,
    PeerEnrolled? Enrollment,
    bool Revoked,
    string? SessionId,
    PeerRole SessionRole,
    ImmutableList<InFlightCommand> InFlight,
    ImmutableList<string> Finished)
{
    /// <summary>The same ids as <see cref="Finished"/>, for lookup.</summary>
    private ImmutableHashSet<string> FinishedIds { get; init; } = ImmutableHashSet.CreateRange(StringComparer.Ordinal, Finished);

    public const int PublicKeyLength = 32;

    /// <summary>A client's exit, from its request until the release completes; null when it holds none.</summary>
    public ClientExit? Exit { get; init; }

    /// <summary>An exit's clients: the SetupExit (side exit) it acked and no RemoveExit ended yet.</summary>
    public ImmutableList<ExitAssignmentRecord> Served { get; init; } = [];

    public static PeerState Empty(string peerId, string region, int rememberCompleted) =>
        new(peerId, region, rememberCompleted, null, false, null, PeerRole.Unspecified, [], []);

    public bool Enrolled => Enrollment is not null;

    public PeerState Apply(IPeerSessionEvent evt) => evt switch
    {
        PeerEnrolled e => this with { Enrollment = e },
        SessionStarted e => this with { SessionId = e.SessionId, SessionRole = e.Role },
        PeerRevoked => this with { Revoked = true },
        CommandIssued e => this with
        {
            InFlight = InFlight.Add(new InFlightCommand(e.CommandId, Command.Parser.ParseFrom(e.Command), e.ReplyToPeerId, e.At)),
        },
        CommandCompleted e => Concluded(e.CommandId, CommandResponse.Parser.ParseFrom(e.Response), null).Finish(e.CommandId),
        CommandFailed e => Concluded(e.CommandId, null, e.Reason).Finish(e.CommandId),
        ExitRequested e => this with { Exit = new ClientExit(e.AssignmentId, e.Region, e.ClientPublicKey, e.At) },
        ExitAssigned e when Exit is { Phase: ExitPhase.Requested } exit && exit.AssignmentId == e.Assignment.AssignmentId => this with
        {
            Exit = exit with { Phase = ExitPhase.SettingUp, Assignment = e.Assignment, SetupCommandId = e.SetupCommandId },
        },
        ExitRequestRefused e when Exit?.AssignmentId == e.AssignmentId && Exit.Phase == ExitPhase.Requested => this with { Exit = null },
        ExitReleaseStarted e when Exit?.AssignmentId == e.AssignmentId => this with
        {
            Exit = Exit with { Phase = ExitPhase.Releasing, Problem = Exit.Problem ?? e.Reason },
        },
        ExitReleaseCompleted e when Exit?.AssignmentId == e.AssignmentId => this with { Exit = null },
        RelayEstablished e when Exit?.AssignmentId == e.AssignmentId =>
            this with { Exit = Exit with { ClientRelayLeg = e.ClientLeg, ExitRelayLeg = e.ExitLeg, RelayedSince = e.At } },
        // Exit events that no longer match the current assignment (it was replaced or released meanwhile).
        ExitAssigned or ExitRequestRefused or ExitReleaseStarted or ExitReleaseCompleted or RelayEstablished => this,
        _ => throw new ArgumentException($"Unknown peer session event {evt.GetType().Name}", nameof(evt)),
    };

    public InFlightCommand? FindInFlight(string commandId) => InFlight.Find(c => c.CommandId == commandId);

    /// <summary>
    /// What the end of a command means for the exit assignments: the client's SetupExit decides its assignment
    /// (active, or failed and to be rolled back); an exit's acked SetupExit adds a client it serves, RemoveExit drops it.
    /// </summary>
    private PeerState Concluded(string commandId, CommandResponse? response, string? failureReason)
    {
        if (FindInFlight(commandId) is not { } command)
            return this;
        var succeeded = response?.OutcomeCase == CommandResponse.OutcomeOneofCase.Result;
        var state = this;
        if (Exit is { Phase: ExitPhase.SettingUp } exit && exit.SetupCommandId == commandId)
        {
            state = state with
            {
                Exit = succeeded
                    ? exit with { Phase = ExitPhase.Active }
                    : exit with
                    {
                        Phase = ExitPhase.SetupFailed,
                        Problem = failureReason ?? $"{response!.Failure.Code}: {response.Failure.Reason}",
                        ProblemStatus = failureReason is not null
                            ? (int)StatusCode.DeadlineExceeded
                            : (int)(response!.Failure.Code == CommandError.Invalid ? StatusCode.FailedPrecondition : StatusCode.Aborted),
                    },
            };
        }

        switch (command.Command)
        {
            case { BodyCase: Command.BodyOneofCase.SetupExit, SetupExit: { Side: ExitSide.Exit } setup } when succeeded
                && response!.Result.SetupExit is { } result:
                var served = new ExitAssignmentRecord(setup.AssignmentId, Region, PeerId, result.PublicKey.ToByteArray(), result.Endpoint,
                    setup.Peer?.AllowedIps.FirstOrDefault() ?? "", setup.TunnelAddresses.FirstOrDefault() ?? "", setup.CounterpartPeerId,
                    setup.CounterpartRegion, setup.Peer?.PublicKey.ToByteArray() ?? [], ExitAssignmentRecord.Active);
                state = state with { Served = state.Served.RemoveAll(a => a.AssignmentId == setup.AssignmentId).Add(served) };
                break;
            case { BodyCase: Command.BodyOneofCase.RemoveExit, RemoveExit: { Side: ExitSide.Exit } remove }:
                // Released at the pool either way: a peer that never got it drops the client when it reconciles.
                state = state with { Served = state.Served.RemoveAll(a => a.AssignmentId == remove.AssignmentId) };
                break;
        }

        return state;
    }

    /// <summary>
    /// What to do with a client's ExitRequest for <paramref name="region"/>: refuse it (not a client, bad key or region),
    /// start an allocation, ignore it (one is under way), tell the client its active exit again (same region and key: it
    /// lost its state), or release the old assignment first (another region or key).
    /// </summary>
    public ExitRequestDecision DecideExitRequest(string region, byte[] clientPublicKey, string newAssignmentId, DateTimeOffset now)
    {
        if (SessionRole is not (PeerRole.Client or PeerRole.Both))
        {
            return new ExitRequestDecision.Refuse(StatusCode.PermissionDenied, RefusalReason.NotAnExitClient,
                $"the peer is connected as {SessionRole}; only a client (or both) may ask for an exit");
        }

        if (clientPublicKey.Length != PublicKeyLength)
        {
            return new ExitRequestDecision.Refuse(StatusCode.InvalidArgument, RefusalReason.MalformedMessage,
                $"wireguard_public_key must be {PublicKeyLength} bytes, was {clientPublicKey.Length}");
        }

        if (!RegionName.IsValid(region, out var problem))
            return new ExitRequestDecision.Refuse(StatusCode.InvalidArgument, RefusalReason.MalformedMessage, $"region: {problem}");

        return Exit switch
        {
            null => new ExitRequestDecision.Start(new ExitRequested(newAssignmentId, region, (byte[])clientPublicKey.Clone(), now)),
            { Phase: ExitPhase.Requested or ExitPhase.SettingUp } => ExitRequestDecision.InProgress.Instance,
            { Phase: ExitPhase.Active } exit when exit.Region == region && exit.ClientPublicKey.AsSpan().SequenceEqual(clientPublicKey) =>
                new ExitRequestDecision.Reissue(exit),
            { Phase: ExitPhase.Active } exit => new ExitRequestDecision.ReleaseFirst(
                $"the client asked for an exit in {region} with {(exit.Region == region ? "a new key" : "another region")}"),
            _ => new ExitRequestDecision.Refuse(StatusCode.Unavailable, RefusalReason.Unavailable,
                $"the previous exit (assignment {Exit.AssignmentId}) is being released; ask again shortly"),
        };
    }

    /// <summary>The assignments as the admin and the peer's stream show them: a client's exit, or an exit's clients.</summary>
    public ImmutableList<ExitAssignmentRecord> Assignments()
    {
        if (Exit is not { } exit)
            return Served;
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
        return Served.Add(record);
    }

    public bool IsFinished(string commandId) => FinishedIds.Contains(commandId);

    /// <summary>
    /// Whether the peer may authenticate, in this order: a role a peer may take (client, exit, both), this
    /// region, not revoked; then an enrolled peer's signature is checked with its enrolled key and its claimed role
    /// against the enrolled one (a token it presents is ignored), while an unknown peer needs a token and a 32-byte
    /// public key whose signature verifies — before the token is redeemed, so a forger never spends one.
    /// </summary>
    public AuthDecision DecideAuthentication(AuthenticatePeer request)
    {
        if (request.PeerId != PeerId)
        {
            return new AuthDecision.Refuse(RefusalReason.MalformedMessage,
                $"the request for peer '{request.PeerId}' reached the session of peer '{PeerId}'");
        }

        if (request.Role is not (PeerRole.Client or PeerRole.Exit or PeerRole.Both))
        {
            return new AuthDecision.Refuse(RefusalReason.RoleNotAllowed,
                $"a peer may act as client, exit or both, not as {request.Role}");
        }

        if (request.Region != Region)
        {
            return new AuthDecision.Refuse(RefusalReason.WrongRegion,
                $"the peer claims region '{request.Region}' but this SuperNode serves region '{Region}'");
        }

        if (Revoked)
        {
            return new AuthDecision.Refuse(RefusalReason.Revoked, "the peer is revoked");
        }

        if (Enrollment is { } enrolled)
        {
            if (!SignatureVerifies(enrolled.PublicKey, request))
            {
                return new AuthDecision.Refuse(RefusalReason.BadSignature,
                    "the signature does not verify with the peer's enrolled public key");
            }

            return RoleAllows(enrolled.Role, request.Role)
                ? new AuthDecision.StartSession(request.Role)
                : new AuthDecision.Refuse(RefusalReason.RoleNotAllowed,
                    $"the peer is enrolled as {enrolled.Role} and may not act as {request.Role}");
        }

        if (string.IsNullOrEmpty(request.EnrollmentToken))
        {
            return new AuthDecision.Refuse(RefusalReason.UnknownPeer,
                "the peer is not enrolled and presented no enrollment token");
        }

        if (request.PublicKey is not { Length: PublicKeyLength } publicKey)
        {
            return new AuthDecision.Refuse(RefusalReason.MalformedMessage,
                $"an enrolling peer must present its {PublicKeyLength}-byte Ed25519 public key");
        }

        if (!SignatureVerifies(publicKey, request))
        {
            return new AuthDecision.Refuse(RefusalReason.BadSignature,
                "the signature does not verify with the presented public key");
        }

        return new AuthDecision.Enroll(request.Role, (byte[])publicKey.Clone(), request.EnrollmentToken);
    }

    /// <summary>What an enrolled role lets a peer claim: BOTH allows client, exit or both; the others only themselves.</summary>
    public static bool RoleAllows(PeerRole enrolled, PeerRole claimed) =>
        enrolled == PeerRole.Both
            ? claimed is PeerRole.Client or PeerRole.Exit or PeerRole.Both
            : claimed == enrolled && claimed is PeerRole.Client or PeerRole.Exit;

    /// <summary>
    /// Issues <paramref name="issue"/>'s command with an id (its own, else <paramref name="assignedId"/>) and a deadline
    /// (its own, else <paramref name="now"/> + <paramref name="defaultDeadline"/>), or says why not.
    /// </summary>
    public IssueDecision DecideIssue(IssueCommand issue, string assignedId, DateTimeOffset now, TimeSpan defaultDeadline)
    {
        var command = issue.Command.Clone();
        if (command.CommandId.Length == 0)
        {
            command.CommandId = assignedId;
        }

        var id = command.CommandId;
        if (Revoked)
        {
            return new IssueDecision.Refuse(id, "peer revoked");
        }

        if (!Enrolled)
        {
            return new IssueDecision.Refuse(id, "peer not enrolled");
        }

        if (FindInFlight(id) is not null)
        {
            return new IssueDecision.AlreadyInFlight(id);
        }

        if (IsFinished(id))
        {
            return new IssueDecision.Refuse(id, "command id already used by a finished command");
        }

        command.Deadline ??= Timestamp.FromDateTimeOffset(now + defaultDeadline);
        if (command.Deadline.ToDateTimeOffset() <= now)
        {
            return new IssueDecision.Refuse(id, "deadline already passed");
        }

        return new IssueDecision.Issue(new CommandIssued(id, command.ToByteArray(), issue.ReplyToPeerId, now));
    }

    /// <summary>An answer to a command in flight completes it; any other answer (late duplicate, unknown id) is ignored.</summary>
    public CommandCompleted? DecideAnswer(CommandResponse response, DateTimeOffset now) =>
        FindInFlight(response.CommandId) is not null
            ? new CommandCompleted(response.CommandId, response.ToByteArray(), now)
            : null;

    /// <summary>
    /// What to do with command <paramref name="commandId"/> when its timer fires, after <paramref name="deliveries"/>
    /// deliveries: give up at the deadline; without a stream wait for one until the deadline; with one deliver again
    /// unless <paramref name="maxAttempts"/> deliveries went unanswered.
    /// </summary>
    public CommandStep DecideRetry(string commandId, DateTimeOffset now, bool streamAttached, int deliveries, int maxAttempts)
    {
        if (FindInFlight(commandId) is not { } command)
        {
            return CommandStep.Nothing.Instance;
        }

        if (now >= command.Deadline)
        {
            return new CommandStep.Fail(new CommandFailed(commandId, deliveries == 0
                ? "deadline passed while no stream was attached"
                : $"deadline passed after {deliveries} deliveries without an answer", now));
        }

        if (!streamAttached)
        {
            return new CommandStep.AwaitStream(command.Deadline - now);
        }

        return deliveries >= maxAttempts
            ? new CommandStep.Fail(new CommandFailed(commandId, $"no answer after {deliveries} deliveries", now))
            : CommandStep.Deliver.Instance;
    }

    /// <summary>Revocation and the failure of every command in flight; nothing when already revoked.</summary>
    public ImmutableList<IPeerSessionEvent> DecideRevoke(DateTimeOffset now) =>
        Revoked
            ? []
            : [new PeerRevoked(PeerId), .. InFlight.Select(c => new CommandFailed(c.CommandId, "peer revoked", now))];

    public PeerStateView View(bool streamAttached) =>
        new(PeerId, Enrolled, Enrollment?.Role ?? PeerRole.Unspecified, Revoked, SessionId, streamAttached, InFlight.Count,
            InFlight.Select(c => c.CommandId).ToImmutableList())
        {
            Assignments = Assignments(),
        };

    /// <summary>The form this state is stored in as a snapshot (see <see cref="PeerSnapshot"/>).</summary>
    public PeerSnapshot ToSnapshot() =>
        new(PeerId, Region, Enrollment, Revoked, SessionId, SessionRole,
            InFlight.Select(c => new CommandIssued(c.CommandId, c.Command.ToByteArray(), c.ReplyToPeerId, c.IssuedAt)).ToImmutableList(),
            Finished)
        {
            Exit = Exit,
            Served = Served,
        };

    public static PeerState FromSnapshot(PeerSnapshot snapshot, int rememberCompleted)
    {
        var state = Empty(snapshot.PeerId, snapshot.Region, rememberCompleted) with
        {
            Enrollment = snapshot.Enrollment,
            Revoked = snapshot.Revoked,
            SessionId = snapshot.SessionId,
            SessionRole = snapshot.SessionRole,
            Exit = snapshot.Exit,
            Served = snapshot.Served ?? [],
        };
        state = snapshot.Finished.Aggregate(state, (s, id) => s.Remember(id));
        return snapshot.InFlight.Aggregate(state, (s, issued) => s.Apply(issued));
    }

    private PeerState Finish(string commandId) =>
        FindInFlight(commandId) is { } command
            ? Remember(commandId) with { InFlight = InFlight.Remove(command) }
            : this;

    private PeerState Remember(string commandId)
    {
        if (FinishedIds.Contains(commandId))
        {
            return this;
        }

        var finished = Finished.Add(commandId);
        var ids = FinishedIds.Add(commandId);
        while (finished.Count > RememberCompleted)
        {
            ids = ids.Remove(finished[0]);
            finished = finished.RemoveAt(0);
        }

        return this with { Finished = finished, FinishedIds = ids };
    }

    private static bool SignatureVerifies(byte[] publicKey, AuthenticatePeer request) =>
        IdentityKey.Verify(publicKey, request.Transcript ?? [], request.Signature ?? []);
}

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
}

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

/// <summary>A client's exit assignment as its session holds it.</summary>
public sealed record ClientExit(string AssignmentId, string Region, byte[] ClientPublicKey, DateTimeOffset Since)
{
    public ExitPhase Phase { get; init; } = ExitPhase.Requested;

    /// <summary>Both halves' details, once the exit's region allocated it.</summary>
    public ExitAssignmentRecord? Assignment { get; init; }

    public string? SetupCommandId { get; init; }

    /// <summary>Why the setup failed or the release started.</summary>
    public string? Problem { get; init; }

    /// <summary>The gRPC status code a failed setup is reported to the client with.</summary>
    public int ProblemStatus { get; init; }

    /// <summary>When the direct path failed: the client's relay leg (host:port) and the exit's; null while direct.</summary>
    public string? ClientRelayLeg { get; init; }

    public string? ExitRelayLeg { get; init; }

    /// <summary>When the current relay chain was set up; null while direct (and in journals older than this field).</summary>
    public DateTimeOffset? RelayedSince { get; init; }
}

/// <summary>The outcome of <see cref="PeerState.DecideExitRequest"/>.</summary>
public abstract record ExitRequestDecision
{
    private ExitRequestDecision()
    {
    }

    public sealed record Refuse(StatusCode Code, RefusalReason Reason, string Detail) : ExitRequestDecision;

    public sealed record Start(ExitRequested Event) : ExitRequestDecision;

    public sealed record InProgress : ExitRequestDecision
    {
        public static readonly InProgress Instance = new();
    }

    public sealed record Reissue(ClientExit Exit) : ExitRequestDecision;

    public sealed record ReleaseFirst(string Reason) : ExitRequestDecision;
}

/// <summary>The outcome of <see cref="PeerState.DecideAuthentication"/>.</summary>
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

/// <summary>The outcome of <see cref="PeerState.DecideIssue"/>.</summary>
public abstract record IssueDecision(string CommandId)
{
    public sealed record Issue(CommandIssued Event) : IssueDecision(Event.CommandId);

    public sealed record AlreadyInFlight(string CommandId) : IssueDecision(CommandId);

    public sealed record Refuse(string CommandId, string Reason) : IssueDecision(CommandId);
}

/// <summary>The outcome of <see cref="PeerState.DecideRetry"/>.</summary>
public abstract record CommandStep
{
    private CommandStep()
    {
    }

    /// <summary>The command is no longer in flight (a stale timer).</summary>
    public sealed record Nothing : CommandStep
    {
        public static readonly Nothing Instance = new();
    }

    public sealed record Deliver : CommandStep
    {
        public static readonly Deliver Instance = new();
    }

    /// <summary>No stream: check again after <paramref name="UntilDeadline"/> unless a stream attaches first.</summary>
    public sealed record AwaitStream(TimeSpan UntilDeadline) : CommandStep;

    public sealed record Fail(CommandFailed Event) : CommandStep;
}
