using Akka.Actor;
using Akka.Persistence;
using MyDvpn.BaseNode.Certificates;
using Xunit.Abstractions;

namespace MyDvpn.BaseNode.Tests.Certificates;

/// <summary>The directory's certificate revocation list over a real SQLite journal and snapshot store.</summary>
public sealed class CrlEntityTests(ITestOutputHelper output) : SqliteTestKit(output)
{
    private const string PersistenceId = CrlEntity.EntityId;

    private readonly ManualTimeProvider _clock = new();
    private readonly RecordingLogger _log = new(output, nameof(CrlEntity));

    [Fact]
    public void A_list_with_a_higher_number_is_persisted_and_becomes_the_current_one()
    {
        var crl = Start();
        var t0 = _clock.GetUtcNow();

        Assert.Equal(new CrlRecorded(1), Publish(crl, 1, [1]));
        var t1 = _clock.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(new CrlRecorded(5), Publish(crl, 5, [5]));

        var current = Current(crl);
        Assert.Equal(5UL, current.Number);
        Assert.Equal(new byte[] { 5 }, current.Der);
        Assert.Equal(
            [(1UL, t0), (5UL, t1)],
            JournalEvents(PersistenceId).Cast<CrlPublished>().Select(e => (e.Number, e.At)));
    }

    [Fact]
    public void An_older_or_equal_number_is_refused_and_not_persisted()
    {
        var crl = Start();
        Publish(crl, 3, [3]);

        var older = Assert.IsType<CrlRefused>(Publish(crl, 2, [2]));
        var same = Assert.IsType<CrlRefused>(Publish(crl, 3, [9]));

        Assert.Equal(3UL, older.HeldNumber);
        Assert.Contains("CRL number 2 is older than CRL number 3", older.Reason, StringComparison.Ordinal);
        Assert.Contains("holds CRL number 3 already", same.Reason, StringComparison.Ordinal);
        Assert.Equal(new byte[] { 3 }, Current(crl).Der);
        Assert.Single(JournalEvents(PersistenceId));
    }

    [Fact]
    public void Nothing_published_is_number_zero()
    {
        var current = Current(Start());

        Assert.Equal((0UL, 0), (current.Number, current.Der.Length));
    }

    [Fact]
    public void The_list_comes_back_from_the_journal()
    {
        var crl = Start();
        Publish(crl, 1, [1]);
        Publish(crl, 2, [2, 2]);
        Stop(crl);

        var recovered = Start();

        var current = Current(recovered);
        Assert.Equal(2UL, current.Number);
        Assert.Equal(new byte[] { 2, 2 }, current.Der);
        Assert.IsType<CrlRefused>(Publish(recovered, 2, [2]));
    }

    [Fact]
    public async Task The_list_comes_back_from_a_snapshot_when_older_events_are_gone()
    {
        var crl = Start(snapshotEvery: 2);
        Publish(crl, 1, [1]);
        Publish(crl, 2, [2, 2]);
        await AwaitAssertAsync(async () =>
            Assert.Equal(2, (await LatestSnapshotAsync(PersistenceId))?.Metadata.SequenceNr), TimeSpan.FromSeconds(5));
        Stop(crl);
        var probe = CreateTestProbe();
        Journal.Tell(new DeleteMessagesTo(PersistenceId, 2, probe.Ref));
        probe.ExpectMsg<DeleteMessagesSuccess>();

        var recovered = Start(snapshotEvery: 2);

        var current = Current(recovered);
        Assert.Equal(2UL, current.Number);
        Assert.Equal(new byte[] { 2, 2 }, current.Der);
    }

    [Fact]
    public void The_state_refuses_to_apply_a_number_that_does_not_grow()
    {
        var state = CrlState.Empty.Apply(new CrlPublished(4, [4], _clock.GetUtcNow()));

        Assert.Throws<InvalidOperationException>(() => state.Apply(new CrlPublished(4, [4], _clock.GetUtcNow())));
        Assert.Null(state.DecidePublish(1, [1], _clock.GetUtcNow()).Published);
        Assert.Equal(new CrlPublished(5, [5], _clock.GetUtcNow()).Number, state.DecidePublish(5, [5], _clock.GetUtcNow()).Published?.Number);
    }

    private IActorRef Start(int snapshotEvery = CrlEntity.DefaultSnapshotEvery) =>
        Sys.ActorOf(CrlEntity.Props(_clock, snapshotEvery, _log));

    private object Publish(IActorRef crl, ulong number, byte[] der)
    {
        crl.Tell(new PublishCrl(number, der));
        return ExpectMsg<object>(m => m is CrlRecorded or CrlRefused);
    }

    private CurrentCrl Current(IActorRef crl)
    {
        crl.Tell(GetCrl.Instance);
        return ExpectMsg<CurrentCrl>();
    }
}
