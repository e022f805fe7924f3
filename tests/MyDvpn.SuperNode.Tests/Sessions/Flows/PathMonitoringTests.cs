using System.Net;
using MyDvpn.Protocol.Control;
using MyDvpn.SuperNode.Sessions;
using static MyDvpn.SuperNode.Tests.Sessions.Flows.SessionStates;

namespace MyDvpn.SuperNode.Tests.Sessions.Flows;

/// <summary>The path of a client's assignment, direct or relayed, as pure decisions on a clock moved by hand.</summary>
public sealed class PathMonitoringTests
{
    private static readonly DateTimeOffset AfterTimeout = T0 + ExitConfig.DirectPathTimeout + TimeSpan.FromSeconds(1);

    [Fact]
    public void An_active_direct_assignment_gets_the_direct_path_timeout()
    {
        var decision = PathMonitoring.Activated(Decision.From(ActiveExit()));

        var timer = decision.Effect<SessionEffect.StartTimer>();
        Assert.Equal((PathMonitoring.DirectPathTimer, ExitConfig.DirectPathTimeout), (timer.Key, timer.Delay));
        Assert.Equal(new DirectPathExpired(AssignmentId, Retry: false), timer.Message);
    }

    [Fact]
    public void Nothing_is_armed_without_a_relay_or_a_stream()
    {
        Assert.Empty(PathMonitoring.Activated(Decision.From(ActiveExit(Config(relay: false)))).Effects);
        Assert.Empty(PathMonitoring.Activated(Decision.From(ActiveExit(attached: false))).Effects);
    }

    [Fact]
    public void A_report_without_a_handshake_before_the_timeout_changes_nothing()
    {
        var decision = ActiveExit().Decide(Report(exitHandshake: null), T0 + TimeSpan.FromSeconds(1));

        Assert.Empty(decision.Effects);
        Assert.Empty(decision.Events);
    }

    [Fact]
    public void After_the_timeout_the_next_report_without_a_handshake_opens_a_relay_chain_from_the_clients_address()
    {
        var overdue = ActiveExit().Decide(new DirectPathExpired(AssignmentId, Retry: false), AfterTimeout).State;

        var decision = overdue.Decide(Report(exitHandshake: null), AfterTimeout);

        Assert.Equal(new SessionEffect.OpenRelayChain(AssignmentId, ExitRegion, IPAddress.Parse(ClientAddress)),
            decision.Effect<SessionEffect.OpenRelayChain>());
        Assert.True(decision.State.Path.RelayStarting);
        // One chain at a time: a second report while it is being made opens none.
        Assert.Empty(decision.State.Decide(Report(exitHandshake: null), AfterTimeout).Effects.OfType<SessionEffect.OpenRelayChain>());
    }

    [Fact]
    public void A_report_without_a_handshake_just_before_the_timeout_relays_when_the_timeout_ends()
    {
        // The agent reports at the end of its own wait for the first handshake, which may reach here first.
        var reported = ActiveExit().Decide(Report(exitHandshake: null), T0 + ExitConfig.DirectPathTimeout - TimeSpan.FromMilliseconds(50)).State;

        var decision = reported.Decide(new DirectPathExpired(AssignmentId, Retry: false), T0 + ExitConfig.DirectPathTimeout);

        Assert.Equal(new SessionEffect.OpenRelayChain(AssignmentId, ExitRegion, IPAddress.Parse(ClientAddress)),
            decision.Effect<SessionEffect.OpenRelayChain>());
    }

    [Fact]
    public void A_handshake_reported_after_a_report_without_one_keeps_the_direct_path()
    {
        var noHandshakeYet = ActiveExit().Decide(Report(exitHandshake: null), T0 + TimeSpan.FromMilliseconds(300)).State;
        var confirmed = noHandshakeYet.Decide(Report(exitHandshake: T0 + TimeSpan.FromSeconds(1)), T0 + TimeSpan.FromSeconds(1)).State;

        var decision = confirmed.Decide(new DirectPathExpired(AssignmentId, Retry: false), T0 + ExitConfig.DirectPathTimeout);

        Assert.True(decision.State.Path.DirectConfirmed);
        Assert.Empty(decision.Effects.OfType<SessionEffect.OpenRelayChain>());
    }

    [Fact]
    public void A_client_stream_from_an_ipv4_mapped_address_gets_its_ipv4_leg()
    {
        var state = Attached(ActiveExit(), "::ffff:" + ClientAddress).Decide(new DirectPathExpired(AssignmentId, false), AfterTimeout).State;

        Assert.Equal(IPAddress.Parse(ClientAddress), state.Decide(Report(null), AfterTimeout).Effect<SessionEffect.OpenRelayChain>().ClientAddress);
    }

    [Fact]
    public void A_handshake_confirms_the_direct_path_and_later_silence_is_judged_only_after_path_stale_after()
    {
        var confirmed = ActiveExit().Decide(Report(exitHandshake: T0 + TimeSpan.FromSeconds(1)), T0 + TimeSpan.FromSeconds(2));
        Assert.True(confirmed.State.Path.DirectConfirmed);
        Assert.Equal(new SessionEffect.CancelTimer(PathMonitoring.DirectPathTimer), confirmed.Effect<SessionEffect.CancelTimer>());

        var quiet = T0 + ExitConfig.PathStaleAfter - TimeSpan.FromSeconds(1);
        Assert.Empty(confirmed.State.Decide(Report(T0 + TimeSpan.FromSeconds(1)), quiet).Effects);

        var stale = T0 + ExitConfig.PathStaleAfter + TimeSpan.FromSeconds(2);
        Assert.Single(confirmed.State.Decide(Report(T0 + TimeSpan.FromSeconds(1)), stale).Effects.OfType<SessionEffect.OpenRelayChain>());
    }

    [Fact]
    public void A_handshake_older_than_the_assignment_does_not_confirm_it()
    {
        var decision = ActiveExit().Decide(Report(exitHandshake: T0 - TimeSpan.FromMinutes(1)), T0 + TimeSpan.FromSeconds(1));

        Assert.False(decision.State.Path.DirectConfirmed);
    }

    [Fact]
    public void A_chain_set_up_is_persisted_and_the_client_is_pointed_at_its_leg()
    {
        var starting = ActiveExit().Decide(new DirectPathExpired(AssignmentId, false), AfterTimeout).State.Decide(Report(null), AfterTimeout).State;

        var decision = starting.Decide(new RelayFinished(AssignmentId, "192.0.2.1:40000", "198.51.100.20:41000", null), AfterTimeout);

        Assert.Equal(new RelayEstablished(AssignmentId, "192.0.2.1:40000", "198.51.100.20:41000", AfterTimeout), decision.Events[0]);
        var setup = Assert.Single(decision.Sent()).RelaySetup;
        Assert.Equal((AssignmentId, "192.0.2.1:40000"), (setup.AssignmentId, setup.RelayEndpoint));
        Assert.Equal(ExitKey, setup.PeerPublicKey.ToByteArray());
        Assert.False(decision.State.Path.RelayStarting);
        Assert.Equal("192.0.2.1:40000", decision.State.Exit!.ClientRelayLeg);
    }

    [Fact]
    public void A_failed_chain_is_tried_again_after_the_relay_retry_and_reports_meanwhile_do_not_bring_it_forward()
    {
        var starting = ActiveExit().Decide(new DirectPathExpired(AssignmentId, false), AfterTimeout).State.Decide(Report(null), AfterTimeout).State;

        var failed = starting.Decide(new RelayFinished(AssignmentId, null, null, "no relay port free"), AfterTimeout);

        var retry = failed.Effect<SessionEffect.StartTimer>();
        Assert.Equal((new DirectPathExpired(AssignmentId, Retry: true), ExitConfig.RelayRetry), (retry.Message, retry.Delay));
        Assert.Empty(failed.State.Decide(Report(null), AfterTimeout).Effects);
        var again = failed.State.Decide(retry.Message, AfterTimeout + ExitConfig.RelayRetry);
        Assert.Single(again.Effects.OfType<SessionEffect.OpenRelayChain>());

        // Each further failure waits twice as long, up to RelayRetryMax; a chain set up starts the count again.
        var second = again.State.Decide(new RelayFinished(AssignmentId, null, null, "no relay port free"), AfterTimeout + ExitConfig.RelayRetry);
        Assert.Equal(2 * ExitConfig.RelayRetry, second.Effect<SessionEffect.StartTimer>().Delay);
        Assert.Equal(TimeSpan.FromSeconds(30), ExitConfig.RelayRetryAfter(10));
        var made = second.State.Decide(retry.Message, AfterTimeout).State.Decide(new RelayFinished(AssignmentId, "192.0.2.1:40000", "198.51.100.20:41000", null), AfterTimeout);
        Assert.Equal(0, made.State.Path.FailedRelayAttempts);
    }

    [Fact]
    public void A_chain_finished_for_an_assignment_given_up_meanwhile_closes_its_legs()
    {
        var decision = ActiveExit().Decide(new RelayFinished("older", "192.0.2.1:40000", "198.51.100.20:41000", null), AfterTimeout);

        Assert.Equal(new SessionEffect.CloseRelayLegs("older"), decision.Effect<SessionEffect.CloseRelayLegs>());
        Assert.Empty(decision.Events);
    }

    [Fact]
    public void A_chain_due_without_a_stream_is_set_up_when_the_client_attaches()
    {
        var relayed = Relayed(ActiveExit(attached: false), T0);
        var due = relayed.Decide(new RelayLegLost(PeerId, AssignmentId, "sn-us-2", "shutting down"), AfterTimeout);
        Assert.Empty(due.Effects);
        Assert.NotNull(due.State.Path.RelayDue);

        var attached = PathMonitoring.Attached(Decision.From(Attached(due.State)), clientLegPeer: IPAddress.Parse(ClientAddress));

        Assert.Single(attached.Effects.OfType<SessionEffect.OpenRelayChain>());
        Assert.Null(attached.State.Path.RelayDue);
    }

    [Theory]
    [InlineData(null, true)] // its leg is not on this SuperNode (restarted, or the session moved here)
    [InlineData("203.0.113.99", true)] // the client's public address moved
    [InlineData(ClientAddress, false)] // its leg is here and takes its packets
    public void A_relayed_client_attaching_is_chained_anew_unless_its_leg_is_here_for_its_address(string? legPeer, bool chainedAnew)
    {
        var decision = PathMonitoring.Attached(Decision.From(Relayed(ActiveExit(), T0)), legPeer is null ? null : IPAddress.Parse(legPeer));

        Assert.Equal(chainedAnew, decision.Effects.OfType<SessionEffect.OpenRelayChain>().Any());
    }

    [Fact]
    public void A_relayed_chain_with_no_handshake_for_path_stale_after_is_set_up_again()
    {
        var relayed = Relayed(ActiveExit(), T0 + TimeSpan.FromMinutes(1));

        Assert.Empty(relayed.Decide(Report(T0), T0 + ExitConfig.PathStaleAfter).Effects);
        var stale = T0 + TimeSpan.FromMinutes(1) + ExitConfig.PathStaleAfter;
        Assert.Single(relayed.Decide(Report(T0), stale).Effects.OfType<SessionEffect.OpenRelayChain>());
    }

    [Fact]
    public void A_confirmed_direct_path_that_sends_and_receives_nothing_for_silent_path_after_is_relayed()
    {
        var handshake = T0 + TimeSpan.FromSeconds(1);
        var state = ActiveExit().Decide(Report(handshake, rx: 1000, tx: 1000), T0 + TimeSpan.FromSeconds(2)).State;
        // Traffic both ways: never silent.
        state = state.Decide(Report(handshake, rx: 5000, tx: 5000), T0 + TimeSpan.FromSeconds(7)).State;
        var broke = T0 + TimeSpan.FromSeconds(12);
        state = state.Decide(Report(handshake, rx: 9000, tx: 9000), broke).State;

        // From here on the client sends and nothing comes back.
        var step = TimeSpan.FromSeconds(5);
        var at = broke;
        ulong tx = 9000;
        while (at + step < broke + ExitConfig.SilentPathAfter)
        {
            at += step;
            tx += 600;
            var quiet = state.Decide(Report(handshake, rx: 9000, tx: tx), at);
            Assert.Empty(quiet.Effects.OfType<SessionEffect.OpenRelayChain>());
            state = quiet.State;
        }

        var relayed = state.Decide(Report(handshake, rx: 9000, tx: tx + 600), broke + ExitConfig.SilentPathAfter);
        Assert.Single(relayed.Effects.OfType<SessionEffect.OpenRelayChain>());
        Assert.Null(relayed.State.Path.Silence);
    }

    [Fact]
    public void An_idle_path_that_only_sends_keepalives_is_not_silent()
    {
        var handshake = T0 + TimeSpan.FromSeconds(1);
        var state = ActiveExit().Decide(Report(handshake, rx: 1000, tx: 1000), T0 + TimeSpan.FromSeconds(2)).State;

        // Two 32-byte keepalives and no answer (the exit has nothing to say) within a whole silence window.
        state = state.Decide(Report(handshake, rx: 1000, tx: 1032), T0 + TimeSpan.FromSeconds(15)).State;
        var idle = state.Decide(Report(handshake, rx: 1000, tx: 1064), T0 + TimeSpan.FromSeconds(2) + ExitConfig.SilentPathAfter * 2);

        Assert.Empty(idle.Effects.OfType<SessionEffect.OpenRelayChain>());
    }

    [Fact]
    public void Counters_that_start_again_from_zero_start_a_new_silence()
    {
        var handshake = T0 + TimeSpan.FromSeconds(1);
        var state = ActiveExit().Decide(Report(handshake, rx: 9000, tx: 9000), T0 + TimeSpan.FromSeconds(2)).State;

        // The client's WireGuard peer was re-created: its counters are small again, and count from now.
        var restarted = state.Decide(Report(handshake, rx: 0, tx: 148), T0 + TimeSpan.FromSeconds(7)).State;
        var later = restarted.Decide(Report(handshake, rx: 0, tx: 1000), T0 + TimeSpan.FromSeconds(7) + ExitConfig.SilentPathAfter - TimeSpan.FromSeconds(1));

        Assert.Empty(later.Effects.OfType<SessionEffect.OpenRelayChain>());
        Assert.Equal(T0 + TimeSpan.FromSeconds(7), later.State.Path.Silence!.Since);
    }

    [Fact]
    public void A_relay_chain_that_sends_and_receives_nothing_for_silent_path_after_is_chained_anew()
    {
        var relayed = Relayed(ActiveExit(), T0 + TimeSpan.FromMinutes(1));
        var start = T0 + TimeSpan.FromMinutes(1) + TimeSpan.FromSeconds(5);
        var state = relayed.Decide(Report(T0, rx: 500, tx: 500), start).State;

        var decision = state.Decide(Report(T0, rx: 500, tx: 2500), start + ExitConfig.SilentPathAfter);

        Assert.Single(decision.Effects.OfType<SessionEffect.OpenRelayChain>());
    }

    [Fact]
    public void A_confirmed_direct_path_whose_client_reports_a_failed_ping_of_the_exit_is_relayed_at_once()
    {
        var confirmed = ActiveExit().Decide(Report(T0), T0).State;
        Assert.True(confirmed.Path.DirectConfirmed);

        var failed = confirmed.Decide(Report(T0, rx: 500, tx: 900) with { ProbeFailed = new ProbeFailure(ExitKey, TimeSpan.FromSeconds(2)) },
            T0 + TimeSpan.FromSeconds(3));
        var otherKey = confirmed.Decide(Report(T0, rx: 500, tx: 900) with { ProbeFailed = new ProbeFailure(new byte[32], TimeSpan.FromSeconds(2)) },
            T0 + TimeSpan.FromSeconds(3));

        Assert.Single(failed.Effects.OfType<SessionEffect.OpenRelayChain>());
        Assert.Empty(otherKey.Effects.OfType<SessionEffect.OpenRelayChain>());
    }

    [Fact]
    public void A_lost_exit_leg_the_chain_still_uses_is_replaced_and_one_it_already_left_is_not()
    {
        var relayed = Relayed(ActiveExit(), T0);

        var current = relayed.Decide(new RelayLegLost(PeerId, AssignmentId, "sn-us-2", "unreachable", ExitLeg: "198.51.100.20:41000"), T0);
        var left = relayed.Decide(new RelayLegLost(PeerId, AssignmentId, "sn-us-2", "unreachable", ExitLeg: "198.51.100.21:41000"), T0);

        Assert.Single(current.Effects.OfType<SessionEffect.OpenRelayChain>());
        Assert.Empty(left.Effects);
        Assert.False(left.State.Path.RelayStarting);
        // Only the exit's region speaks of its legs.
        var fromElsewhere = relayed.Decide(new RelayLegLost(PeerId, AssignmentId, "sn-eu-9", "unreachable", ExitLeg: "198.51.100.20:41000")
        {
            FromRegion = "eu-west",
        }, T0);
        Assert.Empty(fromElsewhere.Effects);
        Assert.Single(relayed.Decide(new RelayLegLost(PeerId, AssignmentId, "sn-us-2", "unreachable", ExitLeg: "198.51.100.20:41000")
        {
            FromRegion = ExitRegion,
        }, T0).Effects.OfType<SessionEffect.OpenRelayChain>());
    }

    [Fact]
    public void A_lost_leg_of_another_assignment_or_of_a_direct_path_changes_nothing()
    {
        Assert.Empty(Relayed(ActiveExit(), T0).Decide(new RelayLegLost(PeerId, "other", "sn-us-2", "x"), T0).Effects);
        Assert.Empty(ActiveExit().Decide(new RelayLegLost(PeerId, AssignmentId, "sn-us-2", "x"), T0).Effects);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_path_that_worked_and_broke_is_reported_to_the_exits_region(bool relayed)
    {
        var state = relayed ? Relayed(ActiveExit(), T0) : ActiveExit().Decide(Report(T0 + TimeSpan.FromSeconds(1)), T0 + TimeSpan.FromSeconds(1)).State;
        var report = Report(null) with { ProbeFailed = new ProbeFailure(ExitKey, TimeSpan.FromSeconds(2)) };

        var decision = state.Decide(report, T0 + TimeSpan.FromSeconds(30));

        var sent = decision.Effect<SessionEffect.ReportPathFailure>().Report;
        Assert.Equal((AssignmentId, ExitRegion, Assignment.ExitPeerId, PeerId, relayed), (sent.AssignmentId, sent.Region, sent.ExitPeerId, sent.ClientPeerId, sent.Relayed));
        Assert.Contains("ping of the exit went unanswered", sent.Detail, StringComparison.Ordinal);
        Assert.Single(decision.Effects.OfType<SessionEffect.OpenRelayChain>());
    }

    [Fact]
    public void A_direct_path_that_never_worked_is_not_reported_to_the_exits_region()
    {
        var overdue = ActiveExit().Decide(new DirectPathExpired(AssignmentId, Retry: false), AfterTimeout).State;

        Assert.Empty(overdue.Decide(Report(exitHandshake: null), AfterTimeout).Effects.OfType<SessionEffect.ReportPathFailure>());
    }
}
