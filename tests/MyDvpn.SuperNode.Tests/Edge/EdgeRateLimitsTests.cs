using MyDvpn.SuperNode.Edge;

namespace MyDvpn.SuperNode.Tests.Edge;

/// <summary>The edge's limits on the manual clock: sources and all sources before authentication, peers only after it.</summary>
public sealed class EdgeRateLimitsTests
{
    private readonly ManualTimeProvider time = new(new DateTimeOffset(2030, 1, 1, 0, 0, 0, TimeSpan.Zero));

    private EdgeRateLimits Limits(int burst = 2, int perSecond = 1, int globalBurst = 1000, int globalPerSecond = 1000) => new(EdgeSettings.Default with
    {
        PerSourceBurst = burst,
        PerSourcePerSecond = perSecond,
        GlobalBurst = globalBurst,
        GlobalPerSecond = globalPerSecond,
        PerPeerBurst = burst,
        PerPeerPerSecond = perSecond,
    }, time);

    [Fact]
    public void A_source_past_its_burst_is_refused_while_another_source_is_not_and_it_gets_tokens_back_with_time()
    {
        var limits = Limits(burst: 2, perSecond: 1);

        Assert.Null(limits.AdmitUnauthenticated("192.0.2.1"));
        Assert.Null(limits.AdmitUnauthenticated("192.0.2.1"));
        Assert.Contains("too many stream opens from 192.0.2.1", limits.AdmitUnauthenticated("192.0.2.1"), StringComparison.Ordinal);
        Assert.Null(limits.AdmitUnauthenticated("192.0.2.2"));
        time.Advance(TimeSpan.FromMilliseconds(999));
        Assert.NotNull(limits.AdmitUnauthenticated("192.0.2.1"));
        time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Null(limits.AdmitUnauthenticated("192.0.2.1"));
        Assert.NotNull(limits.AdmitUnauthenticated("192.0.2.1"));
    }

    [Fact]
    public void One_source_flooding_gets_its_own_rate_and_no_more()
    {
        var limits = Limits(burst: 5, perSecond: 2);
        var admitted = 0;
        // 50 opens a second for 10 s.
        for (var i = 0; i < 500; i++)
        {
            if (limits.AdmitUnauthenticated("198.51.100.66") is null)
                admitted++;
            time.Advance(TimeSpan.FromMilliseconds(20));
        }

        Assert.InRange(admitted, 24, 25); // the burst of 5, then 2 a second for 10 s
        Assert.Null(limits.AdmitUnauthenticated("198.51.100.67"));
    }

    [Fact]
    public void An_ipv6_source_is_limited_by_its_64_and_an_ipv4_mapped_one_as_its_ipv4_address()
    {
        var limits = Limits(burst: 2, perSecond: 1);

        Assert.Null(limits.AdmitUnauthenticated("2001:db8:1:2::1"));
        Assert.Null(limits.AdmitUnauthenticated("2001:db8:1:2:ffff::9"));
        Assert.Contains("2001:db8:1:2::/64", limits.AdmitUnauthenticated("2001:db8:1:2:abcd::7"), StringComparison.Ordinal);
        Assert.Null(limits.AdmitUnauthenticated("2001:db8:1:3::1"));
        Assert.Null(limits.AdmitUnauthenticated("192.0.2.9"));
        Assert.Null(limits.AdmitUnauthenticated("::ffff:192.0.2.9"));
        Assert.NotNull(limits.AdmitUnauthenticated("192.0.2.9"));
    }

    [Theory]
    [InlineData("192.0.2.1", "192.0.2.1")]
    [InlineData("::ffff:192.0.2.1", "192.0.2.1")]
    [InlineData("2001:db8:aa:bb:cc:dd:ee:ff", "2001:db8:aa:bb::/64")]
    [InlineData("::1", "::/64")]
    [InlineData("unix:/run/x.sock", "unix:/run/x.sock")]
    public void Source_key_is_the_address_or_its_64(string source, string key) => Assert.Equal(key, EdgeRateLimits.SourceKey(source));

    [Fact]
    public void All_sources_together_are_held_to_the_global_rate()
    {
        var limits = Limits(burst: 100, perSecond: 100, globalBurst: 3, globalPerSecond: 1);

        Assert.Null(limits.AdmitUnauthenticated("192.0.2.1"));
        Assert.Null(limits.AdmitUnauthenticated("192.0.2.2"));
        Assert.Null(limits.AdmitUnauthenticated("2001:db8::1"));
        Assert.Contains("from all sources", limits.AdmitUnauthenticated("192.0.2.4"), StringComparison.Ordinal);
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.Null(limits.AdmitUnauthenticated("192.0.2.5"));
    }

    /// <summary>
    /// The lock-out of issue 13: junk naming a victim at 2.5/s from another address let 0 of 6 real logins through,
    /// because the victim's bucket was charged before the signature was checked. Only verified streams are charged to
    /// a peer now; the junk costs its own source.
    /// </summary>
    [Fact]
    public void Junk_naming_a_victim_from_another_source_does_not_lock_the_victim_out()
    {
        var limits = new EdgeRateLimits(EdgeSettings.Default, time);
        var junkAdmitted = 0;
        var logins = 0;
        for (var tick = 0; tick < 60; tick++)
        {
            // 2.5 attempts a second naming "victim" from 203.0.113.66: their signatures fail, so only their source pays.
            if (limits.AdmitUnauthenticated("203.0.113.66") is null)
                junkAdmitted++;
            // The victim logs in every 4 s from its own address: its source, then (signature verified) the peer.
            if (tick % 10 == 0 && limits.AdmitUnauthenticated("192.0.2.10") is null && limits.AdmitAuthenticated("victim") is null)
                logins++;
            time.Advance(TimeSpan.FromMilliseconds(400));
        }

        Assert.Equal(60, junkAdmitted);
        Assert.Equal(6, logins);
    }

    [Fact]
    public void A_verified_peer_reconnecting_in_a_loop_is_held_to_its_own_rate()
    {
        var limits = Limits(burst: 2, perSecond: 1);

        Assert.Null(limits.AdmitAuthenticated("peer-1"));
        Assert.Null(limits.AdmitAuthenticated("peer-1"));
        Assert.Contains("too many streams authenticated as peer peer-1", limits.AdmitAuthenticated("peer-1"), StringComparison.Ordinal);
        Assert.Null(limits.AdmitAuthenticated("peer-2"));
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.Null(limits.AdmitAuthenticated("peer-1"));
    }

    [Fact]
    public void Buckets_are_bounded_full_ones_are_forgotten_first_and_while_all_are_in_use_a_new_key_is_refused()
    {
        var buckets = new TokenBuckets(burst: 1, perSecond: 1, time, maxKeys: 2);

        Assert.True(buckets.TryTake("a"));
        Assert.True(buckets.TryTake("b"));
        Assert.False(buckets.TryTake("c"));
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.True(buckets.TryTake("c"));
        Assert.Equal(1, buckets.Count);
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
