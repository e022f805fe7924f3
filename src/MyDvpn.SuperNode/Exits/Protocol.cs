using System.Collections.Immutable;
using Grpc.Core;
using MyDvpn.Hosting;
using MyDvpn.Protocol.Control;

namespace MyDvpn.SuperNode.Exits;

/// <summary>A message addressed to one region's <see cref="ExitPool"/> (the sharding key: one entity per region).</summary>
public interface IWithRegion
{
    string Region { get; }
}

/// <summary>
/// One exit assignment as both sides hold it: the client's half (its WireGuard key, its tunnel address) and the exit's
/// (its key, endpoint and address). Plain values, so it crosses the cluster and the journal with the default serializer.
/// </summary>
public sealed record ExitAssignmentRecord(
    string AssignmentId,
    string Region,
    string ExitPeerId,
    byte[] ExitPublicKey,
    string ExitEndpoint,
    string ClientAddress,
    string ExitAddress,
    string ClientPeerId,
    string ClientRegion,
    byte[] ClientPublicKey,
    string State)
{
    public const string Requested = "requested", SettingUp = "setting-up", Active = "active", Releasing = "releasing";
    public const string Direct = "direct", Relayed = "relay";

    /// <summary>direct, or relay when the direct path failed and a relay chain carries the tunnel.</summary>
    public string Path { get; init; } = Direct;

    /// <summary>When relayed: the client's leg (a SuperNode of its region) and the exit's (one of the exit's region), host:port.</summary>
    public string ClientRelayLeg { get; init; } = "";

    public string ExitRelayLeg { get; init; } = "";

    /// <summary>A client's own assignment in its session's view: how the client came to this exit; null when it asked for it.</summary>
    public Sessions.ExitRotationRecord? LastRotation { get; init; }

    public Protocol.SuperNode.ExitAssignment ToProto() => new()
    {
        AssignmentId = AssignmentId,
        Region = Region,
        ExitPeerId = ExitPeerId,
        ExitPublicKey = Google.Protobuf.ByteString.CopyFrom(ExitPublicKey),
        ExitEndpoint = ExitEndpoint,
        ClientAddress = ClientAddress,
        ExitAddress = ExitAddress,
        ClientPeerId = ClientPeerId,
        ClientRegion = ClientRegion,
        ClientPublicKey = Google.Protobuf.ByteString.CopyFrom(ClientPublicKey),
        State = State,
        Path = Path,
        ClientRelayLeg = ClientRelayLeg,
        ExitRelayLeg = ExitRelayLeg,
        LastRotation = LastRotation?.ToProto(),
    };

    public static ExitAssignmentRecord FromProto(Protocol.SuperNode.ExitAssignment a) => new(
        a.AssignmentId, a.Region, a.ExitPeerId, a.ExitPublicKey.ToByteArray(), a.ExitEndpoint, a.ClientAddress, a.ExitAddress,
        a.ClientPeerId, a.ClientRegion, a.ClientPublicKey.ToByteArray(), a.State)
    {
        Path = a.Path.Length == 0 ? Direct : a.Path,
        ClientRelayLeg = a.ClientRelayLeg,
        ExitRelayLeg = a.ExitRelayLeg,
        LastRotation = a.LastRotation is { } rotation ? Sessions.ExitRotationRecord.FromProto(rotation) : null,
    };
}

/// <summary>
/// Have an exit of <paramref name="Region"/> accept a client: the pool picks one, the exit's session sends it SetupExit
/// and, once the exit acked, the pool answers <see cref="ExitAllocated"/>; otherwise <see cref="ExitAllocationRefused"/>.
/// Idempotent per <paramref name="AssignmentId"/>.
/// </summary>
public sealed record AllocateExit(
    string Region,
    string AssignmentId,
    string ClientPeerId,
    string ClientRegion,
    byte[] ClientPublicKey) : IWithRegion
{
    /// <summary>Exits not to pick: the one a rotating client leaves.</summary>
    public ImmutableList<string> Avoid { get; init; } = [];

    /// <summary>The assignment a rotating client moves away from: not superseded, its session releases it once the client moved.</summary>
    public string? Keeps { get; init; }

    /// <summary>The W3C traceparent of the call that asks (tracing on): the pool's span continues it, and the exit's SetupExit carries the pool's.</summary>
    public string? TraceParent { get; init; }
}

public sealed record ExitAllocated(ExitAssignmentRecord Assignment);

/// <summary>Why no exit was given: a reason for the client, whose gRPC status is the refusal catalogue's.</summary>
public sealed record ExitAllocationRefused(RefusalReason Reason, string Detail)
{
    public StatusCode Code => RefusalCatalogue.StatusOf(Reason);
}

/// <summary>Remove the exit's half of an assignment and free its address. Reply: <see cref="ExitReleased"/>.</summary>
public sealed record ReleaseExit(string Region, string AssignmentId, string Reason) : IWithRegion;

/// <param name="Known">False: the pool did not hold the assignment (released before, or never made).</param>
public sealed record ExitReleased(string AssignmentId, bool Known);

/// <summary>
/// An exit's session → the pool, on attach and then every <see cref="ExitSettings.ExitHeartbeat"/>: the exit is online,
/// serves up to <paramref name="Capacity"/> clients and its stream comes from <paramref name="PublicAddress"/>.
/// </summary>
public sealed record ExitOnline(string Region, string PeerId, int Capacity, string PublicAddress, TimeSpan? Rtt) : IWithRegion;

/// <summary>An exit's session → the pool: its stream is gone.</summary>
public sealed record ExitOffline(string Region, string PeerId) : IWithRegion;

/// <summary>
/// A client's region → the pool: the path from the client of <paramref name="AssignmentId"/> to its exit worked and broke
/// (<paramref name="Relayed"/>: through a relay chain). Counted towards the exit going stale (<see cref="ExitHealth"/>).
/// </summary>
public sealed record ExitPathFailed(string Region, string AssignmentId, string ExitPeerId, string ClientPeerId, bool Relayed, string Detail) : IWithRegion;

/// <summary>Reply: <see cref="AssignmentDetails"/> (null record when the pool does not hold it).</summary>
public sealed record GetAssignment(string Region, string AssignmentId) : IWithRegion;

/// <param name="ExitPublicAddress">The address the exit's control stream comes from ("" when it is offline).</param>
public sealed record AssignmentDetails(ExitAssignmentRecord? Assignment, string ExitPublicAddress);

/// <summary>Reply: <see cref="ExitPoolSnapshotView"/>.</summary>
public sealed record GetExitPool(string Region) : IWithRegion;

public sealed record ExitView(string PeerId, bool Online, int Capacity, int Clients, string Subnet, TimeSpan? Rtt, int RecentFailures, string PublicAddress)
{
    /// <summary>One of <see cref="ExitStates"/>.</summary>
    public string State { get; init; } = Online ? ExitStates.Online : ExitStates.Offline;
}

/// <summary>
/// How the pool sees an exit: <c>online</c> (announced, takes clients), <c>stale</c> (announced, but its clients' paths to
/// it broke: takes no new clients for a while, its clients are moved away), <c>disconnected</c> (its stream just ended: lost
/// unless it comes back within the grace), <c>lost</c> (its clients are moved away), <c>drained</c> (the operator
/// took it out: takes no new clients, its clients are moved away), <c>offline</c> (not announced, no clients moved).
/// </summary>
public static class ExitStates
{
    public const string Online = "online", Stale = "stale", Disconnected = "disconnected", Lost = "lost", Drained = "drained", Offline = "offline";

    public static IReadOnlyList<string> All { get; } = [Online, Stale, Disconnected, Lost, Drained, Offline];
}

/// <summary>
/// The operator drains an exit: it takes no new clients (persisted, until <see cref="UndrainExit"/>) and every client it
/// serves is moved to another exit, make-before-break. Reply: <see cref="ExitDrainStarted"/>.
/// </summary>
public sealed record DrainExit(string Region, string PeerId) : IWithRegion;

/// <param name="Moving">The assignments whose clients are asked to move.</param>
/// <param name="Known">False: the pool knows no such exit (no subnet, not online); it is drained anyway, should it come.</param>
public sealed record ExitDrainStarted(string PeerId, ImmutableList<MovingClient> Moving, bool Known);

/// <summary>A client asked to leave an exit: the assignment it leaves.</summary>
public sealed record MovingClient(string AssignmentId, string ClientPeerId, string ClientRegion);

/// <summary>The exit takes clients again. Reply: <see cref="ExitUndrainResult"/>.</summary>
public sealed record UndrainExit(string Region, string PeerId) : IWithRegion;

public sealed record ExitUndrainResult(string PeerId, bool WasDrained);

public sealed record ExitPoolSnapshotView(string Region, ImmutableList<ExitView> Exits, ImmutableList<ExitAssignmentRecord> Assignments);

/// <summary>An event in a region's exit-pool journal (<see cref="ExitPool"/>).</summary>
public interface IExitPoolEvent
{
}

/// <summary>Exit <paramref name="PeerId"/> owns subnet <paramref name="Subnet"/> of the pool from now on.</summary>
public sealed record ExitSubnetAssigned(string PeerId, int Subnet) : IExitPoolEvent;

/// <summary>
/// Exit <paramref name="PeerId"/>, offline and without clients, gave its subnet back because the pool had no free one
/// left for an exit that is online (<see cref="ExitPoolState.DecideReservation"/>); it gets a new one if it comes back.
/// </summary>
public sealed record ExitSubnetReleased(string PeerId, int Subnet) : IExitPoolEvent;

/// <summary>An exit was picked for a client and host <paramref name="Host"/> of its subnet set aside; SetupExit is under way.</summary>
public sealed record AssignmentReserved(
    string AssignmentId,
    string ExitPeerId,
    int Host,
    string ClientPeerId,
    string ClientRegion,
    byte[] ClientPublicKey,
    DateTimeOffset At) : IExitPoolEvent;

/// <summary>The exit acked SetupExit: the assignment holds.</summary>
public sealed record AssignmentActivated(string AssignmentId, byte[] ExitPublicKey, string ExitEndpoint, DateTimeOffset At) : IExitPoolEvent;

/// <summary>The setup did not complete (the exit refused or did not answer); the host is free again.</summary>
public sealed record AssignmentCancelled(string AssignmentId, string Reason, DateTimeOffset At) : IExitPoolEvent;

/// <summary>The operator drained exit <paramref name="PeerId"/>: it takes no new clients.</summary>
public sealed record ExitDrained(string PeerId, DateTimeOffset At) : IExitPoolEvent;

/// <summary>The operator took the drain of exit <paramref name="PeerId"/> back.</summary>
public sealed record ExitUndrained(string PeerId, DateTimeOffset At) : IExitPoolEvent;

/// <summary>The assignment was given back; the host is free again (the exit is told through RemoveExit).</summary>
public sealed record AssignmentReleased(string AssignmentId, string Reason, DateTimeOffset At) : IExitPoolEvent;

/// <summary>The shard's hand-off stop message for <c>exit-pool</c>: stops after the events being persisted are written.</summary>
public sealed record StopExitPool
{
    public static readonly StopExitPool Instance = new();

    private StopExitPool()
    {
    }
}

public static class ExitPoolEntityTypes
{
    public const string ExitPool = "exit-pool";
}

/// <summary>One entity per region; few shards, since a region cluster holds one pool.</summary>
public sealed class ExitPoolMessageExtractor() : EntityMessageExtractor<IWithRegion>(ShardCount, message => message.Region)
{
    public const int ShardCount = 10;
}
