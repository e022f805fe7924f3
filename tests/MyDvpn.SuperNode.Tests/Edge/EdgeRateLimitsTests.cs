using MyDvpn.SuperNode.Edge;

namespace MyDvpn.SuperNode.Tests.Edge;

public sealed class EdgeRateLimitsTests
{
    private static EdgeRateLimits Limits(int burst) => new(EdgeSettings.Default with
    {
        PerSourceBurst = burst,
        PerSourcePerSecond = 1,
        PerPeerBurst = burst,
        PerPeerPerSecond = 1,
    });

    [Fact]
    public void A_source_past_its_burst_is_refused_while_another_source_is_not()
    {
        using var limits = Limits(burst: 2);
        Assert.True(limits.TryAcquireSource("192.0.2.1"));
        Assert.True(limits.TryAcquireSource("192.0.2.1"));
        Assert.False(limits.TryAcquireSource("192.0.2.1"));
        Assert.True(limits.TryAcquireSource("192.0.2.2"));
    }

    [Fact]
    public void A_peer_id_past_its_burst_is_refused_whatever_its_source()
    {
        using var limits = Limits(burst: 1);
        Assert.True(limits.TryAcquirePeer("peer-1"));
        Assert.False(limits.TryAcquirePeer("peer-1"));
        Assert.True(limits.TryAcquirePeer("peer-2"));
    }
}

public sealed class ChallengeBookTests
{
    private sealed class Clock : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = DateTimeOffset.UnixEpoch;

        public override DateTimeOffset GetUtcNow() => Now;
    }

    [Fact]
    public void A_challenge_is_good_once()
    {
        var book = new ChallengeBook(new Clock());
        var challenge = book.Issue(TimeSpan.FromSeconds(5), out _);
        Assert.Equal(ChallengeBook.Verdict.Fresh, book.Consume(challenge, challenge));
        Assert.Equal(ChallengeBook.Verdict.Replayed, book.Consume(challenge, challenge));
    }

    [Fact]
    public void Another_streams_challenge_is_a_replay_and_a_made_up_one_is_unknown()
    {
        var book = new ChallengeBook(new Clock());
        var mine = book.Issue(TimeSpan.FromSeconds(5), out _);
        var theirs = book.Issue(TimeSpan.FromSeconds(5), out _);
        Assert.Equal(ChallengeBook.Verdict.Replayed, book.Consume(mine, theirs));
        Assert.Equal(ChallengeBook.Verdict.Unknown, book.Consume(mine, new byte[ChallengeBook.Size]));
    }

    [Fact]
    public void A_challenge_answered_after_its_lifetime_is_expired()
    {
        var clock = new Clock();
        var book = new ChallengeBook(clock);
        var challenge = book.Issue(TimeSpan.FromSeconds(5), out var expiresAt);
        Assert.Equal(clock.Now.AddSeconds(5), expiresAt);
        clock.Now = clock.Now.AddSeconds(6);
        Assert.Equal(ChallengeBook.Verdict.Expired, book.Consume(challenge, challenge));
    }
}
