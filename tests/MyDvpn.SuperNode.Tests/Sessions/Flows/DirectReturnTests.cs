using MyDvpn.Protocol.Control;
using MyDvpn.SuperNode.Exits;
using MyDvpn.SuperNode.Sessions;
using static MyDvpn.SuperNode.Tests.Sessions.Flows.SessionStates;

namespace MyDvpn.SuperNode.Tests.Sessions.Flows;

/// <summary>A relayed client trying its direct path again, as pure decisions on a clock moved by hand.</summary>
public sealed class DirectReturnTests
{
    private const string ClientLeg = "192.0.2.1:40000", ExitLeg = "198.51.100.20:41000";

    /// <summary>When the chain was set up, and the last handshake the client reported over it.</summary>
    private static readonly DateTimeOffset RelayedAt = T0 + TimeSpan.FromSeconds(3), RelayedHandshake = T0 + TimeSpan.FromSeconds(4);

    private static readonly DateTimeOffset Due = RelayedAt + ExitConfig.DirectRetry;

    /// <summary>A client whose direct path failed and whose chain was just set up (and reported a handshake over it).</summary>
    private static Decision ChainSetUp()
    {
        var starting = ActiveExit().Decide(new DirectPathExpired(AssignmentId, false), RelayedAt).State.Decide(Report(null), RelayedAt).State;
        var relayed = starting.Decide(new RelayFinished(AssignmentId, ClientLeg, ExitLeg, null), RelayedAt);
        return relayed.State.Decide(Report(RelayedHandshake, rx: 500, tx: 500), RelayedHandshake) with { Effects = relayed.Effects };
    }

    /// <summary>The try under way, the client pointed at the direct endpoint and its RelayTeardown applied.</summary>
    private static PeerState Watching(PeerState relayed, DateTimeOffset at)
    {
        var unpinning = relayed.Decide(new DirectReturnDue(AssignmentId), at).State;
        var pointing = unpinning.Decide(new ExitUnpinned(AssignmentId, null), at);
        var teardown = Assert.Single(pointing.Sent());
        return pointing.State.Decide(new CommandAnswered(PeerId, Done(teardown.CommandId)), at).State;
    }

    [Fact]
    public void A_chain_set_up_schedules_the_first_try_of_the_direct_path()
    {
        var timer = Assert.Single(ChainSetUp().Effects.OfType<SessionEffect.StartTimer>(), t => t.Key == DirectReturn.Timer);

        Assert.Equal((new DirectReturnDue(AssignmentId), ExitConfig.DirectRetry), (timer.Message, timer.Delay));
    }

    [Fact]
    public void A_try_unpins_the_exit_first_and_only_then_points_the_client_at_the_direct_endpoint()
    {
        var relayed = ChainSetUp().State;

        var unpinning = relayed.Decide(new DirectReturnDue(AssignmentId), Due);

        Assert.Equal(new SessionEffect.UnpinExit(AssignmentId, ExitRegion), unpinning.Effect<SessionEffect.UnpinExit>());
        Assert.Empty(unpinning.Sent());
        Assert.Equal(DirectAttemptStage.UnpinningExit, unpinning.State.Path.Attempt!.Stage);

        var pointing = unpinning.State.Decide(new ExitUnpinned(AssignmentId, null), Due);

        var teardown = Assert.Single(pointing.Sent());
        Assert.Equal(Command.BodyOneofCase.RelayTeardown, teardown.BodyCase);
        Assert.Equal((AssignmentId, Assignment.ExitEndpoint), (teardown.RelayTeardown.AssignmentId, teardown.RelayTeardown.DirectEndpoint));
        Assert.Equal(ExitKey, teardown.RelayTeardown.PeerPublicKey.ToByteArray());
        // Until the client's report shows a direct handshake, the chain stays on record and open.
        Assert.Equal(ClientLeg, pointing.State.Exit!.ClientRelayLeg);
        Assert.Empty(pointing.Effects.OfType<SessionEffect.CloseRelayLegs>());
    }

    [Fact]
    public void A_direct_handshake_after_the_teardown_closes_the_chain_on_both_sides()
    {
        var watching = Watching(ChainSetUp().State, Due);
        var handshake = Due + TimeSpan.FromMilliseconds(200);

        var decision = watching.Decide(Report(handshake), handshake);

        Assert.Equal(new RelayClosed(AssignmentId, handshake), Assert.Single(decision.Events));
        Assert.Null(decision.State.Exit!.ClientRelayLeg);
        Assert.Null(decision.State.Exit.ExitRelayLeg);
        Assert.True(decision.State.Path.DirectConfirmed);
        Assert.Null(decision.State.Path.Attempt);
        Assert.Equal(new SessionEffect.CloseRelayLegs(AssignmentId), decision.Effect<SessionEffect.CloseRelayLegs>());
        Assert.Equal(new SessionEffect.CloseExitLeg(AssignmentId, ExitRegion), decision.Effect<SessionEffect.CloseExitLeg>());
        Assert.Equal(ExitAssignmentRecord.Direct, decision.State.Assignments().Single().Path);
    }

    [Fact]
    public void The_relayed_handshake_reported_again_does_not_count_as_a_direct_one()
    {
        var watching = Watching(ChainSetUp().State, Due);

        var early = watching.Decide(Report(RelayedHandshake), Due + TimeSpan.FromMilliseconds(500));

        Assert.Empty(early.Events);
        Assert.Equal(DirectAttemptStage.Watching, early.State.Path.Attempt!.Stage);
    }

    [Fact]
    public void No_direct_handshake_within_the_timeout_points_both_back_at_the_open_legs_and_the_next_try_waits_twice_as_long()
    {
        var watching = Watching(ChainSetUp().State, Due);
        var late = Due + ExitConfig.DirectPathTimeout;

        var failed = watching.Decide(Report(null), late);

        Assert.Equal(new SessionEffect.OpenRelayChain(AssignmentId, ExitRegion, System.Net.IPAddress.Parse(ClientAddress)),
            failed.Effect<SessionEffect.OpenRelayChain>());
        Assert.Empty(failed.Events);
        Assert.Equal(1, failed.State.Path.FailedDirectAttempts);

        var rechained = failed.State.Decide(new RelayFinished(AssignmentId, ClientLeg, ExitLeg, null), late);

        var next = Assert.Single(rechained.Effects.OfType<SessionEffect.StartTimer>(), t => t.Key == DirectReturn.Timer);
        Assert.Equal(2 * ExitConfig.DirectRetry, next.Delay);
        Assert.Equal(ClientLeg, Assert.Single(rechained.Sent()).RelaySetup.RelayEndpoint);
    }

    [Fact]
    public void A_failed_path_test_while_trying_ends_the_try_at_once()
    {
        var watching = Watching(ChainSetUp().State, Due);
        var report = Report(null) with { ProbeFailed = new ProbeFailure(ExitKey, TimeSpan.FromSeconds(2)) };

        var failed = watching.Decide(report, Due + TimeSpan.FromMilliseconds(900));

        Assert.Single(failed.Effects.OfType<SessionEffect.OpenRelayChain>());
        Assert.Null(failed.State.Path.Attempt);
    }

    [Fact]
    public void A_try_no_report_settles_ends_when_its_timer_fires()
    {
        var watching = Watching(ChainSetUp().State, Due);

        var failed = watching.Decide(new DirectReturnExpired(AssignmentId), Due + 2 * ExitConfig.DirectPathTimeout);

        Assert.Single(failed.Effects.OfType<SessionEffect.OpenRelayChain>());
        Assert.Equal(1, failed.State.Path.FailedDirectAttempts);
    }

    [Fact]
    public void A_client_that_does_not_apply_its_teardown_goes_back_to_the_chain()
    {
        var pointing = ChainSetUp().State.Decide(new DirectReturnDue(AssignmentId), Due).State.Decide(new ExitUnpinned(AssignmentId, null), Due);
        var teardown = Assert.Single(pointing.Sent());

        var failed = pointing.State.Decide(new CommandAnswered(PeerId, Failed(teardown.CommandId, "wireguard-go is gone")), Due);

        Assert.Single(failed.Effects.OfType<SessionEffect.OpenRelayChain>());
        Assert.Null(failed.State.Path.Attempt);
    }

    [Fact]
    public void An_exit_that_cannot_be_unpinned_keeps_the_client_on_the_chain_and_the_try_is_rescheduled()
    {
        var unpinning = ChainSetUp().State.Decide(new DirectReturnDue(AssignmentId), Due).State;

        var failed = unpinning.Decide(new ExitUnpinned(AssignmentId, "Unavailable: exit exit-1 did not answer"), Due + TimeSpan.FromSeconds(5));

        Assert.Empty(failed.Sent());
        Assert.Empty(failed.Effects.OfType<SessionEffect.OpenRelayChain>());
        Assert.Null(failed.State.Path.Attempt);
        Assert.Equal(2 * ExitConfig.DirectRetry, Assert.Single(failed.Effects.OfType<SessionEffect.StartTimer>(), t => t.Key == DirectReturn.Timer).Delay);
    }

    [Fact]
    public void A_leg_lost_while_trying_ends_the_try_with_a_new_chain()
    {
        var unpinning = ChainSetUp().State.Decide(new DirectReturnDue(AssignmentId), Due).State;

        var lost = unpinning.Decide(new RelayLegLost(PeerId, AssignmentId, "sn-b", "crashed", ExitLeg), Due);

        Assert.Single(lost.Effects.OfType<SessionEffect.OpenRelayChain>());
        Assert.Null(lost.State.Path.Attempt);
        // The exit's late answer then changes nothing.
        Assert.Empty(lost.State.Decide(new ExitUnpinned(AssignmentId, null), Due).Effects);
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, true)]
    public void No_try_starts_without_a_stream_or_while_a_chain_is_being_set_up(bool attached, bool relayStarting)
    {
        var relayed = ChainSetUp().State;
        relayed = relayed with
        {
            Stream = attached ? relayed.Stream : StreamState.Detached,
            Path = relayed.Path with { RelayStarting = relayStarting },
        };

        var decision = relayed.Decide(new DirectReturnDue(AssignmentId), Due);

        Assert.Empty(decision.Effects);
        Assert.Null(decision.State.Path.Attempt);
    }

    [Theory]
    [InlineData(0, 60)]
    [InlineData(1, 120)]
    [InlineData(3, 480)]
    [InlineData(4, 600)]
    [InlineData(40, 600)]
    public void The_backoff_doubles_from_a_minute_up_to_ten(int failed, int seconds) =>
        Assert.Equal(TimeSpan.FromSeconds(seconds), ExitSettings.Default.DirectRetryAfter(failed));
}
