using Google.Protobuf;
using MyDvpn.Protocol.Control;
using MyDvpn.SuperNode.Exits;
using MyDvpn.SuperNode.Sessions;

namespace MyDvpn.SuperNode.Tests.Sessions.Flows;

/// <summary>Session states built from events, for the flows' pure tests; time is a plain value moved by hand.</summary>
internal static class SessionStates
{
    public const string PeerId = "client-1";
    public const string Region = "eu-west";
    public const string ExitRegion = "us-east";
    public const string AssignmentId = "a-1";
    public const string SetupId = "setup-1";
    public const string ClientAddress = "203.0.113.5";

    public static readonly DateTimeOffset T0 = new(2030, 1, 1, 12, 0, 0, TimeSpan.Zero);
    public static readonly byte[] ClientKey = Key(0xC1);
    public static readonly byte[] ExitKey = Key(0xE1);
    public static readonly ExitSettings ExitConfig = ExitSettings.Default;

    public static readonly ExitAssignmentRecord Assignment = new(AssignmentId, ExitRegion, "exit-1", ExitKey, "198.51.100.7:51820",
        "100.96.0.2/32", "100.96.0.1/24", PeerId, Region, ClientKey, ExitAssignmentRecord.Active);

    public static SessionConfig Config(bool relay = true, bool exits = true) =>
        new(PeerSessionSettings.Default, exits ? ExitConfig : null, relay);

    /// <summary>An enrolled peer with an authenticated session, no stream.</summary>
    public static PeerState Enrolled(PeerRole role = PeerRole.Client, SessionConfig? config = null) =>
        PeerState.Empty(PeerId, Region, config ?? Config())
            .Apply(new PeerEnrolled(role, Key(0x01), "token-1", T0))
            .Apply(new SessionStarted("s-1", role, T0));

    /// <summary>A client whose exit acked and whose own SetupExit (<see cref="SetupId"/>) is in flight, with its stream attached.</summary>
    public static PeerState SettingUp(SessionConfig? config = null) =>
        Attached(Enrolled(config: config)
            .Apply(new ExitRequested(AssignmentId, ExitRegion, ClientKey, T0))
            .Apply(new ExitAssigned(Assignment, SetupId, T0))
            .Apply(new CommandIssued(SetupId, new Command { CommandId = SetupId, SetupExit = new SetupExit { AssignmentId = AssignmentId } }
                .ToByteArray(), null, T0)));

    /// <summary>A client whose exit is active since <see cref="T0"/> (its SetupExit answered), with its stream attached.</summary>
    public static PeerState ActiveExit(SessionConfig? config = null, bool attached = true)
    {
        var state = SettingUp(config).Apply(new CommandCompleted(SetupId, Done(SetupId).ToByteArray(), T0));
        return attached ? state : state with { Stream = StreamState.Detached };
    }

    public static PeerState Attached(PeerState state, string remoteAddress = ClientAddress) =>
        state with { Stream = new StreamState(true, remoteAddress, 0, null) };

    public static PeerState Relayed(PeerState state, DateTimeOffset at) =>
        state.Apply(new RelayEstablished(AssignmentId, "192.0.2.1:40000", "198.51.100.20:41000", at));

    public static CommandResponse Done(string commandId) => new() { CommandId = commandId, Result = new CommandResult { Done = new Empty() } };

    public static CommandResponse Failed(string commandId, string reason) =>
        new() { CommandId = commandId, Failure = new CommandFailure { Code = CommandError.Dataplane, Reason = reason } };

    public static HandshakesReported Report(DateTimeOffset? exitHandshake, ulong rx = 0, ulong tx = 0) =>
        new(PeerId, [new ReportedHandshake(ExitKey, exitHandshake, rx, tx)]);

    public static T Effect<T>(this Decision decision)
        where T : SessionEffect => Assert.Single(decision.Effects.OfType<T>());

    public static IEnumerable<Command> Sent(this Decision decision) => decision.Effects.OfType<SessionEffect.SendCommand>().Select(s => s.Command);

    public static Decision Decide(this PeerState state, object message, DateTimeOffset now) => state.Decide(message, now, "new-id");

    private static byte[] Key(byte fill) => Enumerable.Repeat(fill, 32).ToArray();
}
