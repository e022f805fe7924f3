using System.Collections.Immutable;
using Akka.Actor;
using Akka.Cluster;
using Akka.DistributedData;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using MyDvpn.Protocol.SuperNode;
using MyDvpn.SuperNode.Exits;

namespace MyDvpn.SuperNode.Relay;

/// <summary>An exit leg as the region's other SuperNodes know it: the chain's session, the leg, the SuperNode holding it.</summary>
public sealed record ExitLegEntry(string ClientRegion, string ClientPeerId, string Endpoint, string SuperNodeId);

/// <summary>
/// A SuperNode that crashes takes its exit legs with it, and only it knew them. So each SuperNode publishes its exit legs
/// to every member of its region (Akka distributed data, one key per member incarnation, written by that member only),
/// and when the region's cluster loses a member — unreachable to its failure detector, or removed — one survivor (the
/// lowest address among the reachable ones, <see cref="IsTeller"/>) tells the session of each chain whose exit leg the
/// member held (<c>ExitAllocation.RelayLegLost</c>), which chains a new leg through a live SuperNode at once (ARCHITECTURE
/// §5 "SuperNode dies"). Acting on unreachability rather than removal is safe: a chain moved off a member that was only
/// slow just moves (make before break), and the session ignores news about a leg its chain no longer uses.
/// </summary>
public sealed class ExitLegWatch : ReceiveActor, IWithTimers
{
    /// <summary>How often this SuperNode's legs are compared with what its region was told; opening a leg publishes at once.</summary>
    public static readonly TimeSpan PublishEvery = TimeSpan.FromSeconds(2);

    private static readonly TimeSpan WriteWithin = TimeSpan.FromSeconds(2);

    private readonly RelayService _relay;
    private readonly IClientRotations _sessions;
    private readonly string _superNodeId;
    private readonly ILogger _logger;
    private readonly Cluster _cluster;
    private readonly IActorRef _replicator;
    private readonly CancellationTokenSource _lifetime = new();

    // What this member's key holds (as far as this member wrote it), and the members whose legs were told lost.
    private ImmutableDictionary<string, ExitLegEntry> _published = ImmutableDictionary<string, ExitLegEntry>.Empty;
    private readonly HashSet<UniqueAddress> _told = [];

    public ExitLegWatch(RelayService relay, IClientRotations sessions, string superNodeId, ILogger logger)
    {
        _relay = relay;
        _sessions = sessions;
        _superNodeId = superNodeId;
        _logger = logger;
        _cluster = Cluster.Get(Context.System);
        _replicator = DistributedData.Get(Context.System).Replicator;

        Receive<PublishExitLegs>(_ => Publish(everything: false));
        Receive<ClusterEvent.UnreachableMember>(e => Lost(e.Member.UniqueAddress, "is unreachable from its region's cluster"));
        Receive<ClusterEvent.MemberRemoved>(e =>
        {
            // A member that left (it was Exiting) handed its legs over itself (RelayHandOver); one that was downed did not.
            if (e.PreviousStatus == MemberStatus.Down)
                Lost(e.Member.UniqueAddress, "was downed and removed from its region's cluster");
            // Its legs are gone for good: its key goes (a new incarnation writes a key of its own).
            if (IsTeller(_cluster.SelfAddress, ReachableUp()))
                _replicator.Tell(Dsl.Delete(KeyOf(e.Member.UniqueAddress), WriteLocal.Instance));
            _told.Remove(e.Member.UniqueAddress);
        });
        // A member that joins learns this one's legs at once rather than at the next gossip.
        Receive<ClusterEvent.MemberUp>(e =>
        {
            if (!e.Member.UniqueAddress.Equals(_cluster.SelfUniqueAddress))
                Publish(everything: true);
        });
        Receive<ClusterEvent.ReachableMember>(e => _told.Remove(e.Member.UniqueAddress));
        Receive<GetSuccess>(found => Tell(found));
        Receive<NotFound>(_ => { });
        Receive<IUpdateResponse>(_ => { });
        Receive<IDeleteResponse>(_ => { });
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(RelayService relay, IClientRotations sessions, string superNodeId, ILogger logger) =>
        Akka.Actor.Props.Create(() => new ExitLegWatch(relay, sessions, superNodeId, logger));

    /// <summary>The key under which a member publishes its exit legs: one per incarnation, so a restarted member starts empty.</summary>
    public static LWWDictionaryKey<string, ExitLegEntry> KeyOf(UniqueAddress member) =>
        new($"relay-exit-legs-{member.Address.Host}-{member.Address.Port}-{member.Uid}");

    /// <summary>
    /// Whether <paramref name="self"/> tells the sessions of a lost member's chains: the lowest address (the cluster's own
    /// ordering) among the members it sees up and reachable. Each survivor decides alone; should two both tell (their views
    /// differ for a moment), the sessions ignore the second news.
    /// </summary>
    public static bool IsTeller(Address self, IEnumerable<Address> reachableUp) =>
        reachableUp.Append(self).Min(Member.AddressOrdering)!.Equals(self);

    /// <summary>The exit legs to write and remove so that what the region knows is what is open here.</summary>
    public static (ImmutableDictionary<string, ExitLegEntry> Set, ImmutableList<string> Removed) Changes(
        ImmutableDictionary<string, ExitLegEntry> published, ImmutableDictionary<string, ExitLegEntry> open) =>
        (open.Where(leg => !published.TryGetValue(leg.Key, out var was) || was != leg.Value).ToImmutableDictionary(),
            [.. published.Keys.Where(id => !open.ContainsKey(id)).Order(StringComparer.Ordinal)]);

    protected override void PreStart()
    {
        _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents,
            typeof(ClusterEvent.UnreachableMember), typeof(ClusterEvent.ReachableMember), typeof(ClusterEvent.MemberRemoved), typeof(ClusterEvent.MemberUp));
        Timers.StartPeriodicTimer("publish", PublishExitLegs.Instance, PublishEvery);
    }

    protected override void PostStop()
    {
        _cluster.Unsubscribe(Self);
        _lifetime.Cancel();
        _lifetime.Dispose();
    }

    /// <param name="everything">Write every leg open here, not only what changed (for a member that just joined).</param>
    private void Publish(bool everything)
    {
        var open = _relay.ExitLegs().ToImmutableDictionary(
            leg => leg.AssignmentId, leg => new ExitLegEntry(leg.Owner!.Region, leg.Owner.ClientPeerId, leg.Endpoint.ToString(), _superNodeId));
        var (set, removed) = Changes(everything ? ImmutableDictionary<string, ExitLegEntry>.Empty : _published, open);
        if (set.IsEmpty && removed.IsEmpty)
            return;
        var cluster = _cluster;
        // Written to every member at once (not left to gossip): a leg opened just before this member dies is known.
        _replicator.Tell(Dsl.Update(KeyOf(_cluster.SelfUniqueAddress), LWWDictionary<string, ExitLegEntry>.Empty, new WriteAll(WriteWithin),
            legs => removed.Aggregate(set.Aggregate(legs, (d, leg) => d.SetItem(cluster, leg.Key, leg.Value)), (d, id) => d.Remove(cluster, id))));
        _published = open;
    }

    private void Lost(UniqueAddress member, string why)
    {
        if (member.Equals(_cluster.SelfUniqueAddress) || !IsTeller(_cluster.SelfAddress, ReachableUp(except: member.Address)) || !_told.Add(member))
            return;
        _replicator.Tell(Dsl.Get(KeyOf(member), ReadLocal.Instance, new LostMember(member, why)));
    }

    /// <summary>The members this one sees up and reachable (itself aside).</summary>
    private IEnumerable<Address> ReachableUp(Address? except = null) =>
        _cluster.State.Members
            .Where(m => m.Status == MemberStatus.Up && !_cluster.State.Unreachable.Contains(m) && !m.Address.Equals(except))
            .Select(m => m.Address)
            .Where(a => !a.Equals(_cluster.SelfAddress));

    private void Tell(GetSuccess found)
    {
        if (found.Request is not LostMember lost || found.Data is not LWWDictionary<string, ExitLegEntry> legs || legs.Count == 0)
            return;
        _logger.LogWarning("SuperNode at {Member} {Why}: telling the sessions of {Chains} relay chains whose exit leg it held",
            lost.Member.Address, lost.Why, legs.Count);
        foreach (var (assignmentId, leg) in legs)
            _ = TellAsync(assignmentId, leg, lost.Why);
    }

    private async Task TellAsync(string assignmentId, ExitLegEntry leg, string why)
    {
        try
        {
            await _sessions.RelayLegLostAsync(new RelayLegLostRequest
            {
                AssignmentId = assignmentId,
                Region = leg.ClientRegion,
                ClientPeerId = leg.ClientPeerId,
                SupernodeId = leg.SuperNodeId,
                Reason = $"SuperNode {leg.SuperNodeId} {why}",
                ExitLeg = leg.Endpoint,
            }, _lifetime.Token);
        }
        catch (Exception ex) when (ex is RpcException or ExitRegionUnreachableException or OperationCanceledException)
        {
            // The session finds out on its own: its client reports a silent path (Super:Exits:SilentPathAfter).
            _logger.LogWarning("Could not tell region {Region} that the exit leg {Leg} of assignment {AssignmentId} is gone: {Problem}",
                leg.ClientRegion, leg.Endpoint, assignmentId, ex.Message);
        }
    }

    /// <summary>Compare the legs open here with what the region was told, and write the difference.</summary>
    public sealed record PublishExitLegs
    {
        public static readonly PublishExitLegs Instance = new();

        private PublishExitLegs()
        {
        }
    }

    private sealed record LostMember(UniqueAddress Member, string Why);
}
