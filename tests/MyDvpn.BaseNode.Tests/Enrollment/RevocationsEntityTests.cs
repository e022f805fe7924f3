using Akka.Actor;
using Akka.Persistence;
using Microsoft.Extensions.Logging;
using MyDvpn.BaseNode.Enrollment;
using Xunit.Abstractions;

namespace MyDvpn.BaseNode.Tests.Enrollment;

/// <summary>The revocation list over a real SQLite journal and snapshot store.</summary>
public sealed class RevocationsEntityTests(ITestOutputHelper output) : SqliteTestKit(output)
{
    private const string PersistenceId = "revocations";

    private readonly ManualTimeProvider _clock = new();
    private readonly RecordingLogger _log = new(output, nameof(RevocationsEntity));

    [Fact]
    public void Revocations_get_versions_counting_up_from_one()
    {
        var list = Start();
        var t0 = _clock.GetUtcNow();

        Assert.Equal(new PeerRevocationRecorded(new RevocationEntry("peer-a", 1, t0), AlreadyRevoked: false), Revoke(list, "peer-a"));
        var t1 = _clock.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(new PeerRevocationRecorded(new RevocationEntry("peer-b", 2, t1), AlreadyRevoked: false), Revoke(list, "peer-b"));

        Assert.Equal(2, Version(list));
        Assert.Equal([new PeerRevoked("peer-a", 1, t0), new PeerRevoked("peer-b", 2, t1)], JournalEvents(PersistenceId));
    }

    [Fact]
    public void A_revocation_is_logged_with_the_peer_in_scope()
    {
        var list = Start();

        Revoke(list, "peer-a");

        var entry = Assert.Single(_log.Entries);
        Assert.Equal((LogLevel.Information, "Peer peer-a revoked: revocation version 1"), (entry.Level, entry.Message));
        Assert.Equal(["peer_id=peer-a"], entry.Scopes);
    }

    [Fact]
    public void Revoking_again_returns_the_existing_version_and_persists_nothing()
    {
        var list = Start();
        var first = Revoke(list, "peer-a");
        Revoke(list, "peer-b");
        _clock.Advance(TimeSpan.FromMinutes(1));

        var again = Revoke(list, "peer-a");

        Assert.Equal(first.Revocation, again.Revocation);
        Assert.True(again.AlreadyRevoked);
        Assert.Equal(2, Version(list));
        Assert.Equal(2, JournalEvents(PersistenceId).Count);
    }

    [Fact]
    public void Revocations_after_a_version_are_those_above_it_with_the_current_version()
    {
        var list = Start();
        var t0 = _clock.GetUtcNow();
        foreach (var peer in new[] { "peer-a", "peer-b", "peer-c" })
            Revoke(list, peer);

        Assert.Equal(["peer-a", "peer-b", "peer-c"], After(list, 0).Revocations.Select(r => r.PeerId));
        var afterOne = After(list, 1);
        Assert.Equal([new RevocationEntry("peer-b", 2, t0), new RevocationEntry("peer-c", 3, t0)], afterOne.Revocations);
        Assert.Equal(3, afterOne.Version);
        var afterAll = After(list, 3);
        Assert.Empty(afterAll.Revocations);
        Assert.Equal(3, afterAll.Version);
        Assert.Empty(After(list, 99).Revocations);
    }

    [Fact]
    public void Empty_list_has_version_zero()
    {
        var list = Start();

        Assert.Equal(0, Version(list));
        var after = After(list, 0);
        Assert.Empty(after.Revocations);
        Assert.Equal(0, after.Version);
    }

    [Fact]
    public void Revocation_of_a_peer_is_found_by_its_id()
    {
        var list = Start();
        Revoke(list, "peer-a");

        list.Tell(new GetRevocation("peer-a"));
        Assert.Equal(1, ExpectMsg<RevocationOf>().Revocation?.Version);
        list.Tell(new GetRevocation("peer-z"));
        Assert.Equal(new RevocationOf("peer-z", null), ExpectMsg<RevocationOf>());
    }

    [Fact]
    public void Revocations_come_back_from_the_journal_and_versions_continue()
    {
        var list = Start();
        Revoke(list, "peer-a");
        Revoke(list, "peer-b");
        Stop(list);

        var recovered = Start();

        Assert.Equal(2, Version(recovered));
        Assert.True(Revoke(recovered, "peer-a").AlreadyRevoked);
        Assert.Equal(3, Revoke(recovered, "peer-c").Revocation.Version);
        Assert.Equal(["peer-a", "peer-b", "peer-c"], After(recovered, 0).Revocations.Select(r => r.PeerId));
    }

    [Fact]
    public async Task Revocations_are_recovered_from_a_snapshot_when_older_events_are_gone()
    {
        var list = Start(snapshotEvery: 2);
        foreach (var peer in new[] { "peer-a", "peer-b", "peer-c" })
            Revoke(list, peer);
        await AwaitAssertAsync(async () =>
            Assert.Equal(2, (await LatestSnapshotAsync(PersistenceId))?.Metadata.SequenceNr), TimeSpan.FromSeconds(5));
        Stop(list);
        var probe = CreateTestProbe();
        Journal.Tell(new DeleteMessagesTo(PersistenceId, 2, probe.Ref));
        probe.ExpectMsg<DeleteMessagesSuccess>();

        var recovered = Start(snapshotEvery: 2);

        Assert.Equal(["peer-a", "peer-b", "peer-c"], After(recovered, 0).Revocations.Select(r => r.PeerId));
        Assert.True(Revoke(recovered, "peer-b").AlreadyRevoked);
        Assert.Equal(4, Revoke(recovered, "peer-d").Revocation.Version);
    }

    [Fact]
    public void Unrevoking_takes_the_next_version_logs_who_did_it_and_the_peer_leaves_the_revoked_list()
    {
        var list = Start();
        Revoke(list, "peer-a");
        Revoke(list, "peer-b");
        var t1 = _clock.Advance(TimeSpan.FromMinutes(1));

        list.Tell(new UnrevokePeer("peer-a", "ops"));

        Assert.Equal(new PeerUnrevocationRecorded("peer-a", 3), ExpectMsg<PeerUnrevocationRecorded>());
        Assert.Equal(["peer-b"], Revoked(list).Select(r => r.PeerId));
        Assert.Equal([new RevocationEntry("peer-a", 3, t1, Unrevoked: true)], After(list, 2).Revocations);
        Assert.Equal(new PeerUnrevoked("peer-a", 3, t1, "ops"), JournalEvents(PersistenceId)[^1]);
        var entry = _log.Entries.Last();
        Assert.Equal(LogLevel.Warning, entry.Level);
        Assert.Contains("Security event", entry.Message, StringComparison.Ordinal);
        Assert.Contains("by ops", entry.Message, StringComparison.Ordinal);
        // Revoked again: a new revocation with a new version.
        var again = Revoke(list, "peer-a");
        Assert.Equal((4L, false), (again.Revocation.Version, again.AlreadyRevoked));
    }

    [Fact]
    public void Unrevoking_a_peer_that_is_not_revoked_persists_nothing()
    {
        var list = Start();
        Revoke(list, "peer-a");

        list.Tell(new UnrevokePeer("peer-b", "ops"));

        Assert.Equal(new PeerUnrevocationRecorded("peer-b", 0), ExpectMsg<PeerUnrevocationRecorded>());
        Assert.Single(JournalEvents(PersistenceId));
    }

    [Fact]
    public async Task An_unrevocation_survives_recovery_from_a_snapshot_and_the_journal()
    {
        var list = Start(snapshotEvery: 2);
        Revoke(list, "peer-a");
        list.Tell(new UnrevokePeer("peer-a", "ops"));
        ExpectMsg<PeerUnrevocationRecorded>();
        Revoke(list, "peer-b");
        list.Tell(new UnrevokePeer("peer-b", "ops"));
        ExpectMsg<PeerUnrevocationRecorded>();
        Revoke(list, "peer-c");
        await AwaitAssertAsync(async () =>
            Assert.Equal(4, (await LatestSnapshotAsync(PersistenceId))?.Metadata.SequenceNr), TimeSpan.FromSeconds(5));
        Stop(list);

        var recovered = Start(snapshotEvery: 2);

        Assert.Equal(["peer-c"], Revoked(recovered).Select(r => r.PeerId));
        Assert.Equal([false, true, false, true, false], After(recovered, 0).Revocations.Select(r => r.Unrevoked));
        Assert.False(Revoke(recovered, "peer-a").AlreadyRevoked);
    }

    [Fact]
    public void Invalid_peer_id_is_refused_and_not_persisted()
    {
        var list = Start();

        list.Tell(new RevokePeer("not a peer id"));

        Assert.IsType<ArgumentException>(ExpectMsg<Status.Failure>().Cause);
        Assert.Equal(0, Version(list));
        Assert.Empty(JournalEvents(PersistenceId));
    }

    private IActorRef Start(int snapshotEvery = RevocationsEntity.DefaultSnapshotEvery) =>
        Sys.ActorOf(RevocationsEntity.Props(_clock, snapshotEvery, _log));

    private PeerRevocationRecorded Revoke(IActorRef list, string peerId)
    {
        list.Tell(new RevokePeer(peerId));
        return ExpectMsg<PeerRevocationRecorded>();
    }

    private RevocationsAfter After(IActorRef list, long version)
    {
        list.Tell(new GetRevocationsAfter(version));
        return ExpectMsg<RevocationsAfter>();
    }

    private IReadOnlyList<RevocationEntry> Revoked(IActorRef list)
    {
        list.Tell(GetRevokedPeers.Instance);
        return ExpectMsg<RevokedPeers>().Peers;
    }

    private long Version(IActorRef list)
    {
        list.Tell(GetRevocationVersion.Instance);
        return ExpectMsg<RevocationVersion>().Version;
    }
}
