using System.Security.Cryptography;
using Akka.Actor;
using Akka.TestKit;
using Microsoft.Extensions.Logging;
using MyDvpn.Protocol.Control;
using MyDvpn.Security;
using MyDvpn.SuperNode.Sessions;
using MyDvpn.TestSupport;
using Xunit.Abstractions;

namespace MyDvpn.SuperNode.Tests.Sessions;

/// <summary>
/// A peer's session over a real SQLite journal, with TestProbes as the edge and the <c>peers</c> shard region and a
/// real Ed25519 key signing fresh transcripts.
/// </summary>
public abstract class PeerSessionTestKit(ITestOutputHelper output) : SqliteTestKit(output)
{
    /// <summary>The session's log, in the test's output.</summary>
    protected ILogger SessionLog { get; } = new TestOutputLogger(output, nameof(PeerSession));

    /// <summary>The sessions' clock: their deadlines, event times and timers move only when a test advances it.</summary>
    protected ManualTimeProvider Clock { get; } = new();

    protected const string Region = "eu-west";
    protected const string PeerId = "peer-1";
    protected const string Token = "enroll-secret";

    /// <summary>
    /// How long a test waits for what real I/O (the SQLite journal, a piped task) brings back: only a failing test waits it
    /// out, so it is generous for a loaded machine. Nothing here waits on the session's own timers: those run on <see cref="Clock"/>.
    /// </summary>
    protected static readonly TimeSpan Patience = TimeSpan.FromSeconds(15);

    /// <summary>Short timers: a command is delivered at 0, 200 and 450 ms of <see cref="Clock"/> and fails at 600 ms.</summary>
    protected static readonly PeerSessionSettings Fast = new(
        AckTimeout: TimeSpan.FromMilliseconds(150),
        MaxAttempts: 3,
        RetryBackoff: TimeSpan.FromMilliseconds(50),
        MaxRetryBackoff: TimeSpan.FromMilliseconds(200),
        DefaultDeadline: TimeSpan.FromSeconds(20),
        RememberCompleted: 100,
        SnapshotEvery: 1000)
    {
        PassivateIdleAfter = null,
    };

    protected static string PersistenceId => PeerSession.PersistenceIdFor(Region, PeerId);

    protected IdentityKey Key { get; } = IdentityKey.Generate();

    protected FakeEnrollmentClient Enrollment { get; } = new();

    /// <summary>Stands in for the <c>peers</c> shard region: receives every <see cref="CommandOutcomeFor"/>.</summary>
    protected TestProbe PeersRegion => _peersRegion ??= CreateTestProbe("peers-region");

    private TestProbe? _peersRegion;

    protected IActorRef Start(PeerSessionSettings? settings = null, TimeProvider? time = null, CommandMetrics? commandMetrics = null) =>
        Sys.ActorOf(PeerSession.Props(PeerId, Region, settings ?? Fast, Enrollment, PeersRegion.Ref, time ?? Clock, logger: SessionLog,
            commandMetrics: commandMetrics));

    /// <summary>
    /// Moves <see cref="Clock"/> on, firing the session's timers due meanwhile, and waits until <paramref name="entity"/> has
    /// handled them (a round trip: its reply comes after the timers' messages and any events they persist). A round trip
    /// first: a test that saw a command delivered may move the clock while the session, on its own thread, has yet to arm
    /// the retry timer of that delivery, which would then count from the moved clock.
    /// </summary>
    protected void Advance(IActorRef entity, TimeSpan by)
    {
        State(entity);
        Clock.Advance(by);
        State(entity);
    }

    /// <summary>
    /// <see cref="Advance"/> in steps of <paramref name="step"/>, for timers the session arms as earlier ones fire (a
    /// command's redeliveries): one big move would fire only the first.
    /// </summary>
    protected void Advance(IActorRef entity, TimeSpan by, TimeSpan step)
    {
        for (var moved = TimeSpan.Zero; moved < by; moved += step)
            Advance(entity, step < by - moved ? step : by - moved);
    }

    /// <summary>
    /// Advances <see cref="Clock"/> by <paramref name="step"/> until <paramref name="assertion"/> holds: for a timer the
    /// session arms only once work it started outside the actor (a fake region's answer) has come back.
    /// </summary>
    protected void AdvanceUntil(IActorRef entity, TimeSpan step, Action assertion) =>
        AwaitAssert(() =>
        {
            Advance(entity, step);
            assertion();
        }, Patience, TimeSpan.FromMilliseconds(20));

    /// <summary>An authentication signed by <paramref name="signer"/> (default: the peer's key) over fresh bytes.</summary>
    protected AuthenticatePeer Auth(
        PeerRole role = PeerRole.Client,
        IdentityKey? signer = null,
        string? token = null,
        byte[]? publicKey = null,
        string region = Region)
    {
        var transcript = RandomNumberGenerator.GetBytes(64);
        return new AuthenticatePeer(PeerId, role, region, transcript, (signer ?? Key).Sign(transcript), token, publicKey);
    }

    /// <summary>The first authentication of a new peer: a token and its public key.</summary>
    protected AuthenticatePeer EnrollingAuth(PeerRole role = PeerRole.Client) => Auth(role, token: Token, publicKey: Key.PublicKey);

    /// <summary>Sends <paramref name="message"/> from a probe of its own and returns the reply.</summary>
    protected T Request<T>(IActorRef entity, object message)
    {
        var probe = CreateTestProbe();
        entity.Tell(message, probe.Ref);
        return probe.ExpectMsg<T>(Patience);
    }

    /// <summary>Enrolls the peer and returns the session id.</summary>
    protected string Enroll(IActorRef entity, PeerRole role = PeerRole.Client) =>
        Request<PeerAuthenticated>(entity, EnrollingAuth(role)).SessionId;

    /// <summary>Authenticates the enrolled peer with its key and returns the session id.</summary>
    protected string Authenticate(IActorRef entity, PeerRole role = PeerRole.Client) =>
        Request<PeerAuthenticated>(entity, Auth(role)).SessionId;

    /// <summary>A probe as the edge, attached with <paramref name="sessionId"/>.</summary>
    protected TestProbe AttachEdge(IActorRef entity, string sessionId)
    {
        var edge = CreateTestProbe();
        entity.Tell(new AttachStream(PeerId, sessionId, edge.Ref), edge.Ref);
        edge.ExpectMsg(new StreamAttached(PeerId, sessionId), Patience);
        return edge;
    }

    protected PeerStateView State(IActorRef entity) => Request<PeerStateView>(entity, new GetPeerState(PeerId));

    /// <summary>Issues a command from <paramref name="issuer"/> and returns its id once accepted.</summary>
    protected string Issue(IActorRef entity, TestProbe issuer, Command command, string? replyToPeerId = null)
    {
        entity.Tell(new IssueCommand(PeerId, command, replyToPeerId), issuer.Ref);
        return issuer.ExpectMsg<CommandAccepted>(Patience).CommandId;
    }

    protected static Command SetupExit(string commandId = "", DateTimeOffset? deadline = null) => new()
    {
        CommandId = commandId,
        Deadline = deadline is { } d ? Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(d) : null,
        SetupExit = new SetupExit
        {
            AssignmentId = "assignment-1",
            Peer = new WireGuardPeer { Endpoint = "203.0.113.9:51820", AllowedIps = { "10.64.0.2/32" } },
            TunnelAddresses = { "10.64.0.1/32" },
        },
    };

    protected static CommandResponse Done(string commandId) => new()
    {
        CommandId = commandId,
        Result = new CommandResult { Done = new Empty() },
    };

    protected IReadOnlyList<T> Journaled<T>() => JournalEvents(PersistenceId).OfType<T>().ToList();
}
