using Google.Protobuf;
using MyDvpn.Protocol.Control;
using MyDvpn.SuperNode.Exits;
using MyDvpn.SuperNode.Sessions;

namespace MyDvpn.SuperNode.Tests.Exits.Flows;

/// <summary>Exit pool states for the flows' pure tests; time is a plain value moved by hand.</summary>
internal static class PoolStates
{
    public const string Region = "us-east";
    public const string ClientRegion = "eu-west";
    public const string ExitAddress = "198.51.100.7";

    public static readonly DateTimeOffset T0 = new(2030, 1, 1, 12, 0, 0, TimeSpan.Zero);
    public static readonly ExitSettings Settings = ExitSettings.Default with { MaxExitAttempts = 2 };
    public static readonly byte[] ClientKey = Key(0x11);

    public static PoolState Empty(ExitSettings? settings = null) => PoolState.Empty(Region, settings ?? Settings);

    /// <summary><paramref name="exits"/> online, announced at T0, preferred in the order given (lower RTT first).</summary>
    public static PoolState Online(this PoolState state, params string[] exits) =>
        exits.Select((exit, i) => (exit, i)).Aggregate(state, (s, e) => s.Announced(e.exit, T0, rtt: e.i + 1));

    public static PoolState Announced(this PoolState state, string exit, DateTimeOffset at, int capacity = 10, string address = ExitAddress,
        int rtt = 1) =>
        state with { Exits = state.Exits.Announced(exit, new ExitPresence(capacity, address, TimeSpan.FromMilliseconds(rtt), at)) };

    public static AllocateExit Request(string assignmentId, string client = "client-1") =>
        new(Region, assignmentId, client, ClientRegion, ClientKey);

    public static PoolDecision Decide(this PoolState state, object message, DateTimeOffset? now = null) => state.Decide(message, now ?? T0);

    public static PoolDecision Then(this PoolDecision decision, object message, DateTimeOffset? now = null) =>
        decision.State.Decide(message, now ?? T0);

    public static T Effect<T>(this PoolDecision decision)
        where T : PoolEffect => Assert.Single(decision.Effects.OfType<T>());

    /// <summary>The commands the decision issues to exits, in order, as (exit, kind).</summary>
    public static IEnumerable<(string Exit, Command.BodyOneofCase Kind)> Commands(this PoolDecision decision) =>
        decision.Effects.OfType<PoolEffect.Issue>().Select(i => (i.PeerId, i.Command.BodyCase));

    public static PoolEffect.Issue Issued(this PoolDecision decision, Command.BodyOneofCase kind) =>
        Assert.Single(decision.Effects.OfType<PoolEffect.Issue>(), i => i.Command.BodyCase == kind);

    /// <summary>What the decision tells those waiting for <paramref name="what"/> of <paramref name="assignmentId"/>.</summary>
    public static object Answer(this PoolDecision decision, Awaited what, string assignmentId) =>
        Assert.Single(decision.Effects.OfType<PoolEffect.Answer>(), a => a.What == what && a.AssignmentId == assignmentId).Message;

    public static object Reply(this PoolDecision decision) => decision.Effect<PoolEffect.Reply>().Message;

    /// <summary>The exit's session reports that the exit accepted the client (endpoint empty: "use my stream's address").</summary>
    public static CommandOutcome Acked(PoolEffect.Issue setup, byte[] exitKey, string endpoint = "") =>
        new(setup.PeerId, setup.Command.CommandId, new CommandResponse
        {
            CommandId = setup.Command.CommandId,
            Result = new CommandResult { SetupExit = new SetupExitResult { PublicKey = ByteString.CopyFrom(exitKey), Endpoint = endpoint, ListenPort = 51820 } },
        }, null);

    public static CommandOutcome Refused(PoolEffect.Issue setup, string reason) =>
        new(setup.PeerId, setup.Command.CommandId, new CommandResponse
        {
            CommandId = setup.Command.CommandId,
            Failure = new CommandFailure { Code = CommandError.Dataplane, Reason = reason },
        }, null);

    public static byte[] Key(byte fill) => Enumerable.Repeat(fill, 32).ToArray();
}
