using System.Text.Json;
using MyDvpn.Cli.Commands;
using MyDvpn.Cli.Demo;
using MyDvpn.Peer.LocalStatus;
using MyDvpn.Protocol.Admin;
using MyDvpn.Protocol.SuperNode;
using MyDvpn.Testbed;

namespace MyDvpn.Bench;

/// <summary>
/// failover mode: how fast the client's traffic comes back when its exit goes, and how long its first packet through a relay
/// takes, measured in network namespaces (see <see cref="DataPlaneRun"/>) while the client pings the internet router through
/// its tunnel every 50 ms (<see cref="BackgroundPing"/>: every reply carries ping's own receive time, so the numbers do not
/// depend on how often this program looks). Each measurement of each run gets a testbed and network of its own:
/// <list type="bullet">
/// <item><c>exit_kill</c> (two exits, <c>exit</c> and <c>exit2</c>, each behind its NAT): SIGKILL to the agent of the exit the
/// client holds and its wireguard-go, as a host crash takes them; the seconds from the kill to the first reply after a ping the
/// kill lost. The echo server must then see the client as the other exit's NAT, else the run fails (the reply did not come
/// through the other exit).</item>
/// <item><c>drain</c> (two exits): <c>admin drain</c> of the exit the client holds; the pings lost from the last reply before the
/// drain until a second after the drained exit gave the client's assignment back, and the seconds from the drain request to the
/// client's move to the other exit (its status's <c>lastRotation.at</c>: when its agent took the RotatePeer).</item>
/// <item><c>first_relay_packet</c> (one exit): the internet router drops UDP between the two NATs, then the client starts and
/// gets its exit; the clock runs from the assignment becoming active — the client's status, read every 50 ms, shows its exit:
/// its tunnel is on the host and it answers its SetupExit — to the first reply; pings start then. The direct path cannot carry
/// it, so its session must chain relay legs first; the client's path must then say <c>relay</c> and its WireGuard peer for the
/// exit be a leg on sn-eu-1.</item>
/// <item><c>direct_break</c> (one exit): the client's direct path works; then the internet router drops UDP between the two
/// NATs; the seconds from the drop to the first reply after a ping the drop lost. The client's path must then say
/// <c>relay</c>.</item>
/// <item><c>supernode_kill</c> (one exit; the exit's region of three SuperNodes): with UDP between the NATs dropped, the client
/// is relayed; SIGKILL to the SuperNode holding the chain's exit leg (its region's cluster and the client's session are not
/// told); the seconds from the kill to the first reply after a ping the kill lost. The chain's exit leg must then be on another
/// SuperNode of the region, and the echo server must see the client as the exit's NAT.</item>
/// </list>
/// A measurement that cannot be taken fails the run with the reason; no number is made up. Needs root.
/// </summary>
internal static class FailoverBench
{
    public const int DefaultRepeat = 5;

    /// <summary>The default --timeout of this mode: per run.</summary>
    public const int TimeoutSecondsPerRun = 900;

    private static readonly TimeSpan PingInterval = TimeSpan.FromMilliseconds(50);
    // Bounds of each wait; far beyond the goals (3 s after a kill, 5 s to the first relayed packet).
    private static readonly TimeSpan FirstReplyWithin = TimeSpan.FromSeconds(20);
    private static readonly TimeSpan RecoveryWithin = TimeSpan.FromSeconds(30);
    private const uint DrainWaitSeconds = 30;
    private static readonly TimeSpan ReleaseWithin = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan RelayWithin = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan EchoWithin = TimeSpan.FromSeconds(10);
    // After the drain's window: one more second of pings, each answered (and a late reply inside the window its chance).
    private static readonly TimeSpan Tail = TimeSpan.FromSeconds(1);
    private const string RelayClockStart = "assignment_active";

    /// <summary>A lower bound on the seconds the runs take: five networks started, measured and torn down per run.</summary>
    public static int EstimatedSeconds(int repeat) => 300 * repeat;

    public static Task<int> RunAsync(int repeat, CancellationToken cancellationToken) =>
        DataPlaneRun.RunOnFreshTestbedsAsync("failover", (run, cancel) => MeasureAsync(run, repeat, cancel), cancellationToken);

    private static async Task<Dictionary<string, object>> MeasureAsync(DataPlaneRun run, int repeat, CancellationToken cancellationToken)
    {
        var exitKill = new List<double>();
        var drainLost = new List<double>();
        var drainSeconds = new List<double>();
        var firstRelayPacket = new List<double>();
        var superNodeKill = new List<double>();
        var directBreak = new List<double>();
        for (var i = 1; i <= repeat; i++)
        {
            await run.FreshTestbedAsync($"run{i}-exit-kill", secondExit: true, cancellationToken);
            Record(run, i, repeat, exitKill, await ExitKillAsync(run, await run.StartNetworkAsync(cancellationToken), cancellationToken),
                "exit_kill", "s", goal: 3);

            await run.FreshTestbedAsync($"run{i}-drain", secondExit: true, cancellationToken);
            var (lost, seconds) = await DrainAsync(run, await run.StartNetworkAsync(cancellationToken), cancellationToken);
            Record(run, i, repeat, drainLost, lost, "drain lost", "pings", goal: 0);
            Record(run, i, repeat, drainSeconds, seconds, "drain: client on the other exit after", "s", goal: null);

            await run.FreshTestbedAsync($"run{i}-first-relay-packet", secondExit: false, cancellationToken);
            Record(run, i, repeat, firstRelayPacket, await FirstRelayPacketAsync(run, await run.StartNodesAsync(cancellationToken), cancellationToken),
                "first_relay_packet (after the assignment became active)", "s", goal: 5);

            await run.FreshTestbedAsync($"run{i}-direct-break", secondExit: false, cancellationToken);
            Record(run, i, repeat, directBreak, await DirectBreakAsync(run, await run.StartNetworkAsync(cancellationToken), cancellationToken),
                "direct_break", "s", goal: 10);

            await run.FreshTestbedAsync($"run{i}-supernode-kill", secondExit: false, cancellationToken);
            await run.Testbed.DropUdpBetweenNatsAsync(cancellationToken);
            Record(run, i, repeat, superNodeKill,
                await SuperNodeKillAsync(run, await run.StartNodesAsync(cancellationToken, exitRegionSuperNodes: 3), cancellationToken),
                "supernode_kill", "s", goal: 10);
        }
        return new Dictionary<string, object>
        {
            ["mode"] = "failover",
            ["runs"] = repeat,
            ["ping_interval_ms"] = PingInterval.TotalMilliseconds,
            ["exit_kill_seconds"] = Summary(exitKill, 3),
            ["drain_lost_pings"] = Summary(drainLost, 0),
            ["drain_seconds"] = Summary(drainSeconds, 3),
            ["first_relay_packet_seconds"] = Summary(firstRelayPacket, 3),
            ["first_relay_packet_from"] = RelayClockStart,
            ["direct_break_seconds"] = Summary(directBreak, 3),
            ["supernode_kill_seconds"] = Summary(superNodeKill, 3),
            ["cpus"] = Environment.ProcessorCount,
        };
    }

    /// <summary>
    /// Adds a measurement of run <paramref name="i"/> to its series and prints it; one that misses its goal (more than
    /// <paramref name="goal"/>) keeps the run's logs, so that the outlier can be explained from the nodes' logs.
    /// </summary>
    private static void Record(DataPlaneRun run, int i, int repeat, List<double> series, double value, string name, string unit, double? goal)
    {
        series.Add(value);
        var over = value > goal;
        run.Progress($"run {i}/{repeat}: {name} {value:0.###} {unit}{(goal is { } g ? $" (goal {(g == 0 ? "" : "< ")}{g} {unit})" : "")}" +
                     (over ? ": over the goal, logs kept" : ""));
        if (over)
            run.KeepLogs($"{name} {value:0.###} {unit}");
    }

    /// <summary>exit_kill: seconds from SIGKILL of the serving exit's agent (and its wireguard-go) to the first reply through the other exit.</summary>
    private static async Task<double> ExitKillAsync(DataPlaneRun run, TestbedNetwork network, CancellationToken cancellationToken)
    {
        var (from, to) = await network.ClientExitsAsync(cancellationToken);
        var ping = await PingUntilAnsweredAsync(run, network, FirstReplyWithin + RecoveryWithin + EchoWithin, cancellationToken);
        try
        {
            var killedAt = DateTimeOffset.UtcNow;
            network.KillPeer(from.PeerId);
            run.Progress($"exit_kill: SIGKILL to {from.PeerId}'s agent and wireguard-go (the client held it; the other exit is {to.PeerId})");
            try
            {
                var recovered = await FirstReplyAfterLossAsync(network, ping, killedAt, "exit_kill", "the kill", cancellationToken);
                await RequireEchoAsync(run, to, $"after the kill of {from.PeerId} the first ping reply came at icmp_seq {recovered.Sequence}",
                    cancellationToken);
                await RequireClientExitAsync(network, to, "after the kill", cancellationToken);
                return (recovered.At - killedAt).TotalSeconds;
            }
            finally
            {
                // The killed wireguard-go could not remove its UAPI socket; the file is host-wide and this testbed's alone.
                File.Delete($"/var/run/wireguard/{from.Interface}.sock");
            }
        }
        finally
        {
            await EndAsync(ping);
        }
    }

    /// <summary>drain: the pings lost while the client moves off its drained exit, and the seconds until it is on the other one.</summary>
    private static async Task<(int Lost, double Seconds)> DrainAsync(DataPlaneRun run, TestbedNetwork network, CancellationToken cancellationToken)
    {
        var (from, to) = await network.ClientExitsAsync(cancellationToken);
        var clientKey = (await network.StatusAsync(TestbedNetwork.ClientId, cancellationToken)).GetProperty("wireguardPublicKey").GetString()!;
        var ping = await PingUntilAnsweredAsync(run, network,
            FirstReplyWithin + TimeSpan.FromSeconds(DrainWaitSeconds) + ReleaseWithin + EchoWithin + Tail, cancellationToken);
        try
        {
            var firstAnswered = ping.RepliesSoFar()[0].Sequence;
            var drainedAt = DateTimeOffset.UtcNow;
            var drained = await network.Admin.DrainExitAsync(new DrainExitRequest
            {
                Region = TestbedNetwork.ExitRegion,
                ExitPeerId = from.PeerId,
                WaitSeconds = DrainWaitSeconds,
            }, deadline: DateTime.UtcNow.AddSeconds(DrainWaitSeconds + 15), cancellationToken: cancellationToken);
            run.Progress($"drain: admin drain {from.PeerId} answered {drained}");
            if (!drained.Complete || drained.Clients.SingleOrDefault(c => c.ClientPeerId == TestbedNetwork.ClientId)?.ToExitPeerId != to.PeerId)
                throw new DataPlaneBenchException($"drain: the drain of {from.PeerId} did not move {TestbedNetwork.ClientId} to {to.PeerId} within {DrainWaitSeconds} s: {drained}");
            var status = await RequireClientExitAsync(network, to, "after the drain", cancellationToken);
            var rotation = status.GetProperty("lastRotation");
            if (rotation.ValueKind != JsonValueKind.Object || rotation.GetProperty("from").GetProperty("peerId").GetString() != from.PeerId
                                                           || rotation.GetProperty("to").GetProperty("peerId").GetString() != to.PeerId)
                throw new DataPlaneBenchException($"drain: the client's last rotation is not {from.PeerId} → {to.PeerId}: {rotation}");
            var movedAt = rotation.GetProperty("at").GetDateTimeOffset();

            // The window closes once the drained exit gave the client's assignment back (the last change the move makes) and a
            // second of pings after it was answered.
            await network.UntilAsync(async () =>
            {
                var shown = await network.WgShowAsync(from.Role, from.Interface, cancellationToken);
                return !shown.Succeeded || !shown.StandardOutput.Contains(clientKey, StringComparison.Ordinal);
            }, $"{from.PeerId} no longer has the client as a WireGuard peer", cancellationToken, ReleaseWithin);
            var lastInWindow = ping.RepliesSoFar().Max(r => r.Sequence) + (int)(Tail / PingInterval);
            await network.UntilAsync(() => Task.FromResult(ping.RepliesSoFar().Any(r => r.Sequence >= lastInWindow) || ping.Completion.IsCompleted),
                $"ping icmp_seq {lastInWindow} is answered", cancellationToken, Tail + EchoWithin, PingInterval);
            var answered = ping.RepliesSoFar().Select(r => r.Sequence).ToHashSet();
            if (!answered.Contains(lastInWindow))
                throw new DataPlaneBenchException($"drain: ping ended before icmp_seq {lastInWindow} was answered: {await PingOutputAsync(ping)}");
            var lost = Enumerable.Range(firstAnswered, lastInWindow - firstAnswered + 1).Where(seq => !answered.Contains(seq)).ToList();
            run.Progress($"drain: icmp_seq {firstAnswered}..{lastInWindow}: {lost.Count} lost{(lost.Count == 0 ? "" : $" ({string.Join(", ", lost)})")}");
            await RequireEchoAsync(run, to, $"after the drain of {from.PeerId}", cancellationToken);
            return (lost.Count, (movedAt - drainedAt).TotalSeconds);
        }
        finally
        {
            await EndAsync(ping);
        }
    }

    /// <summary>first_relay_packet: seconds from the client's assignment becoming active to the first reply through the relay.</summary>
    private static async Task<double> FirstRelayPacketAsync(DataPlaneRun run, TestbedNetwork network, CancellationToken cancellationToken)
    {
        await run.Testbed.DropUdpBetweenNatsAsync(cancellationToken);
        run.Progress($"first_relay_packet: UDP between {TestbedAddresses.ExitNatPublic} and {TestbedAddresses.ClientNatPublic} dropped on the internet router");
        // Before the client holds its exit a ping would leave through the client's NAT, not the tunnel: pings start once its
        // status shows the assignment (its full tunnel is on the host before the status says so), and so does the clock.
        var status = await network.StartClientAsync(cancellationToken, PingInterval);
        var activeAt = DateTimeOffset.UtcNow;
        // exit.since: when the agent took its SetupExit, before it built the tunnel.
        run.Progress($"first_relay_packet: the client's tunnel is up {(activeAt - status.GetProperty("exit").GetProperty("since").GetDateTimeOffset()).TotalSeconds:0.000} s " +
                     "after its agent took its SetupExit; the clock starts");
        var ping = BackgroundPing.Start(run.Testbed, TestbedRoles.Client, TestbedAddresses.Router.ToString(), Count(RelayWithin), PingInterval,
            cancellationToken);
        try
        {
            await network.UntilAsync(() => Task.FromResult(ping.Replies > 0 || ping.Completion.IsCompleted),
                "the first ping through the tunnel is answered", cancellationToken, RelayWithin, PingInterval);
            if (ping.Replies == 0)
                throw new DataPlaneBenchException($"first_relay_packet: ping ended unanswered: {await PingOutputAsync(ping)}");
            var first = ping.RepliesSoFar()[0];
            if (first.Sequence == 1)
                throw new DataPlaneBenchException("first_relay_packet: the first ping through the new tunnel was answered: the relay was up before " +
                                                  "pinging began or the direct path was not blocked, so the first relayed packet cannot be timed");
            // The agent writes its state once the change is made on the host: traffic can take the relay before the
            // status says so.
            await RequireRelayPathAsync(network, "first_relay_packet: after the first ping was answered", TimeSpan.FromSeconds(15), cancellationToken);
            var endpoint = await RelayBench.ExitEndpointAsync(network, cancellationToken);
            if (!endpoint.StartsWith($"{TestbedAddresses.SnA}:", StringComparison.Ordinal))
                throw new DataPlaneBenchException($"first_relay_packet: the client's WireGuard peer for the exit has endpoint {endpoint}, not a leg on sn-eu-1 ({TestbedAddresses.SnA})");
            await RequireEchoAsync(run, network.ExitHostOf(TestbedNetwork.ExitId), "through the relay", cancellationToken);
            if (await run.Testbed.DroppedUdpBetweenNatsAsync(cancellationToken) == 0)
                throw new DataPlaneBenchException("first_relay_packet: the internet router dropped no UDP between the NATs: the client never tried the direct path");
            run.Progress($"first_relay_packet: first reply at icmp_seq {first.Sequence}, through the relay leg {endpoint}");
            return (first.At - activeAt).TotalSeconds;
        }
        finally
        {
            await EndAsync(ping);
        }
    }

    /// <summary>direct_break: seconds from UDP between the NATs being dropped under a working direct path to the first reply after the loss.</summary>
    private static async Task<double> DirectBreakAsync(DataPlaneRun run, TestbedNetwork network, CancellationToken cancellationToken)
    {
        await network.UntilAsync(async () => await RelayBench.PathAsync(network, cancellationToken) == AgentStatus.PathDirect,
            "the client's status shows the direct path", cancellationToken, RelayWithin, PingInterval);
        var ping = await PingUntilAnsweredAsync(run, network, FirstReplyWithin + RecoveryWithin + EchoWithin, cancellationToken);
        try
        {
            var brokenAt = DateTimeOffset.UtcNow;
            await run.Testbed.DropUdpBetweenNatsAsync(cancellationToken);
            run.Progress($"direct_break: UDP between {TestbedAddresses.ExitNatPublic} and {TestbedAddresses.ClientNatPublic} dropped under the direct path");
            var recovered = await FirstReplyAfterLossAsync(network, ping, brokenAt, "direct_break", "the drop", cancellationToken);
            await RequireRelayPathAsync(network, "direct_break: a ping was answered again but", TimeSpan.FromSeconds(15), cancellationToken);
            run.Progress($"direct_break: first reply at icmp_seq {recovered.Sequence}, through the relay");
            return (recovered.At - brokenAt).TotalSeconds;
        }
        finally
        {
            await EndAsync(ping);
        }
    }

    /// <summary>supernode_kill: seconds from SIGKILL of the SuperNode holding the relay chain's exit leg to the first reply after the loss.</summary>
    private static async Task<double> SuperNodeKillAsync(DataPlaneRun run, TestbedNetwork network, CancellationToken cancellationToken)
    {
        await network.StartClientAsync(cancellationToken, PingInterval);
        await RequireRelayPathAsync(network, "supernode_kill: with UDP between the NATs dropped", RelayWithin, cancellationToken);
        var before = await ExitRelayLegAsync(network, cancellationToken);
        var victim = TestbedNetwork.ExitRegionSuperNodes.SingleOrDefault(superNode => before.StartsWith($"{superNode.Address}:", StringComparison.Ordinal));
        if (victim.Id is null)
            throw new DataPlaneBenchException($"supernode_kill: the chain's exit leg {before} is on none of region {TestbedNetwork.ExitRegion}'s SuperNodes");
        var ping = await PingUntilAnsweredAsync(run, network, FirstReplyWithin + RecoveryWithin + EchoWithin, cancellationToken);
        try
        {
            var killedAt = DateTimeOffset.UtcNow;
            network.KillNode(victim.Id);
            run.Progress($"supernode_kill: SIGKILL to {victim.Id}, which held the chain's exit leg {before}");
            var recovered = await FirstReplyAfterLossAsync(network, ping, killedAt, "supernode_kill", "the kill", cancellationToken);
            var after = await ExitRelayLegAsync(network, cancellationToken);
            if (after.StartsWith($"{victim.Address}:", StringComparison.Ordinal))
                throw new DataPlaneBenchException($"supernode_kill: a ping was answered again but the chain's exit leg is still {after}, on the killed {victim.Id}");
            await RequireEchoAsync(run, network.ExitHostOf(TestbedNetwork.ExitId), $"after the kill of {victim.Id}", cancellationToken);
            run.Progress($"supernode_kill: first reply at icmp_seq {recovered.Sequence}; the chain's exit leg is now {after}");
            return (recovered.At - killedAt).TotalSeconds;
        }
        finally
        {
            await EndAsync(ping);
        }
    }

    /// <summary>The client's relay chain's exit leg as its session shows it to the admin ("" when it has none).</summary>
    private static async Task<string> ExitRelayLegAsync(TestbedNetwork network, CancellationToken cancellationToken)
    {
        var sessions = await network.Admin.ListSessionsAsync(new ListSessionsRequest { Region = TestbedNetwork.ClientRegion },
            cancellationToken: cancellationToken);
        return sessions.Sessions.SingleOrDefault(s => s.PeerId == TestbedNetwork.ClientId)?.Assignments.SingleOrDefault()?.ExitRelayLeg ?? "";
    }

    /// <summary>Pings from the client for at most <paramref name="lasting"/>; returns once the first is answered.</summary>
    private static async Task<BackgroundPing> PingUntilAnsweredAsync(DataPlaneRun run, TestbedNetwork network, TimeSpan lasting,
        CancellationToken cancellationToken)
    {
        var ping = BackgroundPing.Start(run.Testbed, TestbedRoles.Client, TestbedAddresses.Router.ToString(), Count(lasting), PingInterval, cancellationToken);
        try
        {
            await network.UntilAsync(() => Task.FromResult(ping.Replies > 0 || ping.Completion.IsCompleted), "the first ping through the tunnel is answered",
                cancellationToken, FirstReplyWithin, PingInterval);
            if (ping.Replies == 0)
                throw new DataPlaneBenchException($"ping through the tunnel ended unanswered: {await PingOutputAsync(ping)}");
            return ping;
        }
        catch
        {
            await EndAsync(ping);
            throw;
        }
    }

    /// <summary>Until a ping is answered after one the event at <paramref name="since"/> lost; fails the measurement if ping ends first.</summary>
    private static async Task<PingReply> FirstReplyAfterLossAsync(TestbedNetwork network, BackgroundPing ping, DateTimeOffset since, string measurement,
        string theEvent, CancellationToken cancellationToken)
    {
        PingReply? recovered = null;
        await network.UntilAsync(() => Task.FromResult((recovered = FirstReplyAfterLoss(ping.RepliesSoFar(), since)) is not null || ping.Completion.IsCompleted),
            $"a ping through the tunnel is answered again after {theEvent}", cancellationToken, RecoveryWithin, PingInterval);
        return recovered ?? throw new DataPlaneBenchException($"{measurement}: ping ended before a reply came after {theEvent}: {await PingOutputAsync(ping)}");
    }

    /// <summary>Until the client's status shows the relay path; fails with the path it shows instead (<paramref name="when"/> says when).</summary>
    private static async Task RequireRelayPathAsync(TestbedNetwork network, string when, TimeSpan within, CancellationToken cancellationToken)
    {
        string? path = null;
        try
        {
            await network.UntilAsync(async () => (path = await RelayBench.PathAsync(network, cancellationToken)) == AgentStatus.PathRelay,
                "the client's status shows the relay path", cancellationToken, within, PingInterval);
        }
        catch (DemoNodeFailedException) when (path is not null)
        {
            throw new DataPlaneBenchException($"{when} the client's path stayed {path}, not {AgentStatus.PathRelay}");
        }
    }

    /// <summary>
    /// The first reply after <paramref name="since"/> that came after a ping went unanswered: a ping sent before the kill and
    /// answered just after it went through the old exit.
    /// </summary>
    private static PingReply? FirstReplyAfterLoss(IReadOnlyList<PingReply> replies, DateTimeOffset since)
    {
        var before = replies.Where(r => r.At <= since).Select(r => r.Sequence).DefaultIfEmpty(0).Max();
        var answered = replies.Select(r => r.Sequence).ToHashSet();
        return replies.FirstOrDefault(r => r.At > since && Enumerable.Range(before + 1, Math.Max(0, r.Sequence - before - 1)).Any(seq => !answered.Contains(seq)));
    }

    /// <summary>Until the echo server sees the client as <paramref name="exit"/>'s NAT; fails with what it saw instead.</summary>
    private static async Task RequireEchoAsync(DataPlaneRun run, ExitHost exit, string when, CancellationToken cancellationToken)
    {
        string? seen = null;
        try
        {
            await run.Network.UntilAsync(async () => (seen = await run.EchoAsync(cancellationToken)) == exit.NatPublic.ToString(),
                $"the echo server sees the client as {exit.PeerId}'s NAT", cancellationToken, EchoWithin, PingInterval);
        }
        catch (DemoNodeFailedException) when (seen is not null)
        {
            throw new DataPlaneBenchException($"{when} the echo server sees the client as {seen}, not as {exit.PeerId}'s NAT {exit.NatPublic}: " +
                                              "the traffic does not leave through that exit");
        }
    }

    /// <summary>Until the client's status names <paramref name="exit"/>; fails with the exit it names instead.</summary>
    private static async Task<JsonElement> RequireClientExitAsync(TestbedNetwork network, ExitHost exit, string when, CancellationToken cancellationToken)
    {
        JsonElement status = default;
        string? held = null;
        var read = false;
        try
        {
            await network.UntilAsync(async () =>
            {
                status = await network.StatusAsync(TestbedNetwork.ClientId, cancellationToken);
                held = status.GetProperty("exit") is { ValueKind: JsonValueKind.Object } holding ? holding.GetProperty("peerId").GetString() : null;
                read = true;
                return held == exit.PeerId;
            }, $"the client's status names exit {exit.PeerId}", cancellationToken, EchoWithin, PingInterval);
        }
        catch (DemoNodeFailedException) when (read)
        {
            throw new DataPlaneBenchException($"{when} the client's status names exit {held ?? "(none)"}, not {exit.PeerId}");
        }
        return status;
    }

    /// <summary>Ends the ping once its replies are read or the measurement failed: what it printed no longer matters then.</summary>
    private static async Task EndAsync(BackgroundPing ping)
    {
        try
        {
            await ping.StopAsync();
        }
        catch (Exception ex) when (ex is TestbedException or TimeoutException)
        {
            // Its replies were read already, or the failure on its way up says more.
        }
    }

    private static async Task<string> PingOutputAsync(BackgroundPing ping) => (await ping.StopAsync()).Output.Trim();

    private static int Count(TimeSpan lasting) => (int)Math.Ceiling(lasting / PingInterval);

    /// <summary>Median, maximum and every run's value.</summary>
    private static Dictionary<string, object> Summary(List<double> values, int digits) => new()
    {
        ["median"] = Math.Round(DataPlaneRun.Median(values), digits),
        ["max"] = Math.Round(values.Max(), digits),
        ["values"] = values.Select(v => Math.Round(v, digits)).ToArray(),
    };
}
