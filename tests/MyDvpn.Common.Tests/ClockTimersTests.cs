using Microsoft.Extensions.Time.Testing;

namespace MyDvpn.Common.Tests;

public sealed class ClockTimersTests
{
    private readonly FakeTimeProvider _clock = new(new DateTimeOffset(2030, 1, 1, 12, 0, 0, TimeSpan.Zero));
    private readonly List<ClockTimers.Fired> _delivered = [];

    private ClockTimers Timers() => new(_clock, message => _delivered.Add((ClockTimers.Fired)message));

    [Fact]
    public void A_single_timer_fires_once_when_the_clock_reaches_it_and_is_then_done()
    {
        using var timers = Timers();
        timers.StartSingle("t", "ring", TimeSpan.FromSeconds(5));

        _clock.Advance(TimeSpan.FromSeconds(4));
        Assert.Empty(_delivered);
        _clock.Advance(TimeSpan.FromSeconds(1));

        var fired = Assert.Single(_delivered);
        Assert.Equal("ring", timers.Accept(fired));
        Assert.False(timers.IsActive("t"));
        Assert.Null(timers.Accept(fired));
        _clock.Advance(TimeSpan.FromMinutes(1));
        Assert.Single(_delivered);
    }

    [Fact]
    public void A_timer_cancelled_after_its_message_was_sent_is_not_accepted()
    {
        using var timers = Timers();
        timers.StartSingle("t", "ring", TimeSpan.FromSeconds(1));
        _clock.Advance(TimeSpan.FromSeconds(1));

        timers.Cancel("t");

        Assert.Null(timers.Accept(Assert.Single(_delivered)));
    }

    [Fact]
    public void A_restarted_timer_accepts_only_its_latest_message()
    {
        using var timers = Timers();
        timers.StartSingle("t", "first", TimeSpan.FromSeconds(1));
        _clock.Advance(TimeSpan.FromSeconds(1));
        timers.StartSingle("t", "second", TimeSpan.FromSeconds(1));
        _clock.Advance(TimeSpan.FromSeconds(1));

        Assert.Equal([null, "second"], _delivered.Select(timers.Accept));
    }

    [Fact]
    public void A_periodic_timer_fires_every_interval_until_cancelled()
    {
        using var timers = Timers();
        timers.StartPeriodic("beat", "tick", TimeSpan.FromSeconds(5));

        _clock.Advance(TimeSpan.FromSeconds(16));

        Assert.Equal(["tick", "tick", "tick"], _delivered.Select(timers.Accept));
        Assert.True(timers.IsActive("beat"));
        timers.Cancel("beat");
        _clock.Advance(TimeSpan.FromSeconds(10));
        Assert.Equal(3, _delivered.Count);
    }

    [Theory]
    [InlineData(false, 1)]
    [InlineData(true, 3)]
    public void Start_as_an_effect_names_it_is_single_or_periodic(bool periodic, int firings)
    {
        using var timers = Timers();
        timers.Start("t", "ring", TimeSpan.FromSeconds(1), periodic);

        for (var second = 0; second < 3; second++)
        {
            _clock.Advance(TimeSpan.FromSeconds(1));
            if (_delivered.Count > 0)
                timers.Accept(_delivered[^1]);
        }

        Assert.Equal(firings, _delivered.Count);
        Assert.Equal(periodic, timers.IsActive("t"));
    }

    [Fact]
    public void A_timer_due_now_fires_at_once()
    {
        using var timers = Timers();

        timers.StartSingle("t", "now", TimeSpan.FromSeconds(-3));

        Assert.Equal("now", timers.Accept(Assert.Single(_delivered)));
    }
}
