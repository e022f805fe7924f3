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
    public void Logins_with_a_token_are_limited_per_source_and_in_all()
    {
        var limits = new EdgeRateLimits(EdgeSettings.Default with
        {
            RedeemPerSourceBurst = 2,
            RedeemPerSourcePerSecond = 0.5,
            RedeemGlobalBurst = 3,
            RedeemGlobalPerSecond = 1,
        }, time);

        Assert.Null(limits.AdmitRedemption("192.0.2.1"));
        Assert.Null(limits.AdmitRedemption("192.0.2.1"));
        Assert.Contains("too many logins with an enrollment token from 192.0.2.1", limits.AdmitRedemption("192.0.2.1"), StringComparison.Ordinal);
        Assert.Null(limits.AdmitRedemption("192.0.2.2"));
        Assert.Contains("redeems at most 1 enrollment tokens a second from all sources", limits.AdmitRedemption("192.0.2.3"), StringComparison.Ordinal);
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.NotNull(limits.AdmitRedemption("192.0.2.1"));
        Assert.Null(limits.AdmitRedemption("192.0.2.3"));
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.Null(limits.AdmitRedemption("192.0.2.1"));
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

/// <summary>The challenges on the manual clock: single use, a lifetime, remembered a while, and bounded.</summary>
public sealed class ChallengeBookTests
{
    private const string Source = "192.0.2.1";

    private readonly ManualTimeProvider clock = new(new DateTimeOffset(2030, 1, 1, 0, 0, 0, TimeSpan.Zero));

    private ChallengeBook Book(int perSource = 64, int total = 100_000) => new(clock, EdgeSettings.Default with
    {
        MaxChallengesPerSource = perSource,
        MaxChallenges = total,
        ChallengesKeptFor = TimeSpan.FromSeconds(30),
    });

    private static byte[] Issued(ChallengeBook book, string source = Source) =>
        book.Issue(source, TimeSpan.FromSeconds(5), out _, out var refusal) ?? throw new InvalidOperationException(refusal);

    [Fact]
    public void A_challenge_is_good_once()
    {
        var book = Book();
        var challenge = Issued(book);
        Assert.Equal(ChallengeBook.Verdict.Fresh, book.Consume(challenge, challenge));
        Assert.Equal(ChallengeBook.Verdict.Replayed, book.Consume(challenge, challenge));
    }

    [Fact]
    public void Another_streams_challenge_is_a_replay_and_a_made_up_one_is_unknown()
    {
        var book = Book();
        var mine = Issued(book);
        var theirs = Issued(book);
        Assert.Equal(ChallengeBook.Verdict.Replayed, book.Consume(mine, theirs));
        Assert.Equal(ChallengeBook.Verdict.Unknown, book.Consume(mine, new byte[ChallengeBook.Size]));
    }

    [Fact]
    public void A_challenge_answered_after_its_lifetime_is_expired()
    {
        var book = Book();
        var start = clock.GetUtcNow();
        var challenge = book.Issue(Source, TimeSpan.FromSeconds(5), out var expiresAt, out _)!;
        Assert.Equal(start.AddSeconds(5), expiresAt);
        clock.Advance(TimeSpan.FromSeconds(6));
        Assert.Equal(ChallengeBook.Verdict.Expired, book.Consume(challenge, challenge));
    }

    /// <summary>Issue 13: challenges were kept 10 minutes. Now 30 s past their expiry (the setting), then forgotten.</summary>
    [Fact]
    public void Challenges_are_forgotten_once_kept_past_their_expiry_for_the_setting()
    {
        var book = Book();
        var old = Issued(book);
        book.Settle(Source);
        clock.Advance(TimeSpan.FromSeconds(5 + 30));
        Issued(book);
        Assert.Equal(2, book.Count);

        clock.Advance(TimeSpan.FromSeconds(3)); // the book sweeps every tenth of the 30 s
        var fresh = Issued(book);

        Assert.Equal(2, book.Count);
        Assert.Equal(ChallengeBook.Verdict.Unknown, book.Consume(fresh, old));
    }

    [Fact]
    public void A_source_with_its_maximum_outstanding_gets_no_more_until_one_settles_while_another_source_does()
    {
        var book = Book(perSource: 3);
        for (var i = 0; i < 3; i++)
            Issued(book);

        Assert.Null(book.Issue(Source, TimeSpan.FromSeconds(5), out _, out var refusal));
        Assert.Contains("3 streams from 192.0.2.1 are still answering", refusal, StringComparison.Ordinal);
        Issued(book, "192.0.2.2");
        // An IPv6 source counts by its /64, like the stream limits.
        for (var i = 0; i < 3; i++)
            Issued(book, $"2001:db8:1:2::{i + 1}");
        Assert.Null(book.Issue("2001:db8:1:2::99", TimeSpan.FromSeconds(5), out _, out _));
        Assert.Equal(3, book.OutstandingFor("2001:db8:1:2:ffff::1"));

        book.Settle(Source);
        Issued(book);
    }

    [Fact]
    public void The_book_holds_at_most_its_maximum_and_makes_room_as_old_ones_are_forgotten()
    {
        var book = Book(total: 4);
        for (var i = 0; i < 4; i++)
        {
            Issued(book, $"198.51.100.{i}");
            book.Settle($"198.51.100.{i}");
        }

        Assert.Null(book.Issue(Source, TimeSpan.FromSeconds(5), out _, out var refusal));
        Assert.Contains("maximum of 4 challenges", refusal, StringComparison.Ordinal);
        clock.Advance(TimeSpan.FromSeconds(36));
        Issued(book);
        Assert.Equal(1, book.Count);
    }
}
