using System.Collections.Concurrent;
using System.Collections.Immutable;
using System.Net;
using Akka.Actor;
using Akka.Cluster;
using Akka.Configuration;
using Akka.DistributedData;
using Microsoft.Extensions.Logging.Abstractions;
using MyDvpn.Protocol.SuperNode;
using MyDvpn.SuperNode.Exits;
using MyDvpn.SuperNode.Relay;
using Xunit.Abstractions;

namespace MyDvpn.SuperNode.Tests.Relay;

/// <summary>
/// The exit legs a region's members know of each other: a one-member cluster with real distributed data and a real relay;
/// the member that "crashes" is one whose key the test writes, as its own replicator would have.
/// </summary>
public sealed class ExitLegWatchTests(ITestOutputHelper output) : Akka.TestKit.Xunit2.TestKit(ClusterConfig, output: output)
{
    private static readonly Config ClusterConfig = ConfigurationFactory.ParseString("""
        akka.actor.provider = cluster
        akka.remote.dot-netty.tcp.hostname = 127.0.0.1
        akka.remote.dot-netty.tcp.port = 0
        akka.loglevel = INFO
        # A member that stops answering is unreachable within about 2 s, and nothing downs it (no SBR here);
        # its actor system ends without leaving, as a kill -9 ends a SuperNode.
        akka.cluster.failure-detector.heartbeat-interval = 200ms
        akka.cluster.failure-detector.acceptable-heartbeat-pause = 1s
        akka.coordinated-shutdown.run-by-actor-system-terminate = off
        """);

    private static readonly Address Lower = new("akka.tcp", "sys", "10.0.0.1", 2552);
    private static readonly Address Higher = new("akka.tcp", "sys", "10.0.0.2", 2552);

    [Fact]
    public void The_lowest_reachable_address_tells_and_no_other()
    {
        Assert.True(ExitLegWatch.IsTeller(Lower, [Higher]));
        Assert.False(ExitLegWatch.IsTeller(Higher, [Lower]));
        Assert.True(ExitLegWatch.IsTeller(Higher, []));
    }

    [Fact]
    public void Only_what_changed_is_written()
    {
        var a = new ExitLegEntry("eu-west", "client-a", "192.0.2.1:40000", "sn-us-1");
        var b = new ExitLegEntry("eu-west", "client-b", "192.0.2.1:40001", "sn-us-1");
        var published = ImmutableDictionary<string, ExitLegEntry>.Empty.Add("a1", a).Add("a2", b);
        var open = ImmutableDictionary<string, ExitLegEntry>.Empty.Add("a1", a).Add("a3", b with { ClientPeerId = "client-c" });

        var (set, removed) = ExitLegWatch.Changes(published, open);

        Assert.Equal(["a3"], set.Keys);
        Assert.Equal(["a2"], removed);
        Assert.True(ExitLegWatch.Changes(open, open) is { Set.IsEmpty: true, Removed.IsEmpty: true });
    }

    [Fact]
    public async Task A_member_that_goes_silent_has_the_sessions_of_its_exit_legs_told_by_the_survivor()
    {
        var cluster = Cluster.Get(Sys);
        await cluster.JoinAsync(cluster.SelfAddress);
        var survivorSessions = new RecordingSessions();
        var (low, high) = RelayTestPorts.Range(4);
        await using var survivorRelay = new RelayService(IPAddress.Loopback, low, low + 1, NullLogger<RelayService>.Instance, bindAddress: IPAddress.Loopback);
        Sys.ActorOf(ExitLegWatch.Props(survivorRelay, survivorSessions, "sn-us-1", NullLogger.Instance));

        // A second member of the region, with an exit leg (and a client leg, which is not published).
        var member = ActorSystem.Create(Sys.Name, ClusterConfig);
        try
        {
            var memberCluster = Cluster.Get(member);
            await memberCluster.JoinAsync(cluster.SelfAddress);
            await using var relay = new RelayService(IPAddress.Loopback, low + 2, high, NullLogger<RelayService>.Instance, bindAddress: IPAddress.Loopback);
            var watch = member.ActorOf(ExitLegWatch.Props(relay, new RecordingSessions(), "sn-us-2", NullLogger.Instance));
            var leg = await relay.OpenLegAsync("as-1", RelaySides.Exit, IPAddress.Loopback, new IPEndPoint(IPAddress.Loopback, 51820),
                CancellationToken.None, new RelayLegOwner("eu-west", "client-a"));
            await relay.OpenLegAsync("as-2", RelaySides.Client, IPAddress.Loopback, null, CancellationToken.None, new RelayLegOwner("us-east", "client-b"));
            watch.Tell(ExitLegWatch.PublishExitLegs.Instance);

            // The survivor's replica holds the member's leg, under the member's key.
            var key = ExitLegWatch.KeyOf(memberCluster.SelfUniqueAddress);
            await AwaitAssertAsync(async () =>
            {
                var known = await DistributedData.Get(Sys).GetAsync(key, ReadLocal.Instance);
                Assert.Equal(new ExitLegEntry("eu-west", "client-a", leg.Endpoint.ToString(), "sn-us-2"), Assert.Single(known!).Value);
            }, TimeSpan.FromSeconds(10));

            // The member stops answering (no leave: its actor system just ends, as a kill -9 would end it).
            await member.Terminate();
            var told = await survivorSessions.NextAsync(TimeSpan.FromSeconds(20));
            Assert.Equal(("as-1", "eu-west", "client-a", "sn-us-2", leg.Endpoint.ToString()),
                (told.AssignmentId, told.Region, told.ClientPeerId, told.SupernodeId, told.ExitLeg));
            Assert.Contains("unreachable", told.Reason, StringComparison.Ordinal);
            Assert.Equal(1, survivorSessions.Count);
        }
        finally
        {
            await member.Terminate();
        }
    }

    private sealed class RecordingSessions : IClientRotations
    {
        private readonly BlockingCollection<RelayLegLostRequest> _told = [];

        public int Count { get; private set; }

        public Task RotateClientAsync(RotateClientRequest request, CancellationToken cancellationToken) =>
            throw new InvalidOperationException("no rotation expected");

        public Task RelayLegLostAsync(RelayLegLostRequest request, CancellationToken cancellationToken)
        {
            Count++;
            _told.Add(request, cancellationToken);
            return Task.CompletedTask;
        }

        public Task<RelayLegLostRequest> NextAsync(TimeSpan within) => Task.Run(() =>
            _told.TryTake(out var request, within) ? request : throw new TimeoutException($"no session was told within {within}"));
    }
}
