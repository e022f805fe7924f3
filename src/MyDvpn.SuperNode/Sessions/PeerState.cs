using System.Collections.Immutable;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using MyDvpn.Protocol.Control;
using MyDvpn.Security;

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
        CommandCompleted e => Finish(e.CommandId),
        CommandFailed e => Finish(e.CommandId),
        _ => throw new ArgumentException($"Unknown peer session event {evt.GetType().Name}", nameof(evt)),
    };

    public InFlightCommand? FindInFlight(string commandId) => InFlight.Find(c => c.CommandId == commandId);

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
            InFlight.Select(c => c.CommandId).ToImmutableList());

    /// <summary>The form this state is stored in as a snapshot (see <see cref="PeerSnapshot"/>).</summary>
    public PeerSnapshot ToSnapshot() =>
        new(PeerId, Region, Enrollment, Revoked, SessionId, SessionRole,
            InFlight.Select(c => new CommandIssued(c.CommandId, c.Command.ToByteArray(), c.ReplyToPeerId, c.IssuedAt)).ToImmutableList(),
            Finished);

    public static PeerState FromSnapshot(PeerSnapshot snapshot, int rememberCompleted)
    {
        var state = Empty(snapshot.PeerId, snapshot.Region, rememberCompleted) with
        {
            Enrollment = snapshot.Enrollment,
            Revoked = snapshot.Revoked,
            SessionId = snapshot.SessionId,
            SessionRole = snapshot.SessionRole,
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
    ImmutableList<string> Finished);

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
