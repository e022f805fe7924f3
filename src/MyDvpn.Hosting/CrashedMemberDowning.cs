using System.Net.Sockets;
using Akka.Actor;
using Akka.Cluster;
using Akka.Remote;
using Microsoft.Extensions.Logging;
using Prometheus;

namespace MyDvpn.Hosting;

/// <summary>What a TCP connect to a member's cluster port found.</summary>
public enum PortProbe
{
    /// <summary>The host answered with a reset: it is up and nothing listens on the port.</summary>
    Refused,
    /// <summary>Something listens: the process is alive (hung or partitioned, perhaps), which is the split-brain resolver's call.</summary>
    Accepted,
    /// <summary>No answer in time, or another error: a partition looks like this, so it proves nothing.</summary>
    NoAnswer,
}

/// <summary>What to do about a member after a probe of its port.</summary>
public enum CrashVerdict { ProbeAgain, Down, LeaveItToTheResolver }

/// <summary>How a crashed member is told from a partitioned one (<c>mydvpn.crashed-member-downing</c> in cluster.hocon).</summary>
public sealed record CrashedMemberDowningSettings(bool Enabled, TimeSpan ProbeInterval, TimeSpan ProbeTimeout, int RefusalsToDown, int MaxProbes)
{
    public static CrashedMemberDowningSettings From(Akka.Configuration.Config config)
    {
        var section = config.GetConfig("mydvpn.crashed-member-downing");
        if (section is null || section.IsEmpty)
            return new(true, TimeSpan.FromMilliseconds(500), TimeSpan.FromSeconds(1), 2, 10);
        var settings = new CrashedMemberDowningSettings(
            section.GetBoolean("enabled", true),
            section.GetTimeSpan("probe-interval", TimeSpan.FromMilliseconds(500)),
            section.GetTimeSpan("probe-timeout", TimeSpan.FromSeconds(1)),
            section.GetInt("refusals-to-down", 2),
            section.GetInt("max-probes", 10));
        if (settings.ProbeInterval <= TimeSpan.Zero || settings.ProbeTimeout <= TimeSpan.Zero || settings.RefusalsToDown < 2 || settings.MaxProbes < settings.RefusalsToDown)
            throw new Akka.Configuration.ConfigurationException(
                "mydvpn.crashed-member-downing: probe-interval and probe-timeout must be positive, refusals-to-down at least 2 " +
                "(one refusal may be a restart in progress), and max-probes at least refusals-to-down");
        return settings;
    }
}

/// <summary>
/// The pure part of <see cref="CrashedMemberDowning"/>: from the probes of one member's cluster port, whether it crashed.
/// Only refusals in a row prove a crash (the host is up and the process gone); one accepted connect means the process
/// lives, and silence proves nothing (a partition is silent too): both leave the member to the split-brain resolver.
/// </summary>
public sealed class CrashJudge(CrashedMemberDowningSettings settings)
{
    private int _refusals;
    private int _probes;

    public CrashVerdict Observe(PortProbe probe)
    {
        _probes++;
        switch (probe)
        {
            case PortProbe.Accepted:
                return CrashVerdict.LeaveItToTheResolver;
            case PortProbe.Refused:
                _refusals++;
                if (_refusals >= settings.RefusalsToDown)
                    return CrashVerdict.Down;
                break;
            default:
                _refusals = 0;
                break;
        }
        return _probes >= settings.MaxProbes ? CrashVerdict.LeaveItToTheResolver : CrashVerdict.ProbeAgain;
    }
}

/// <summary>
/// Downs a member of this node's cluster whose process is gone, without waiting for the split-brain resolver. When the
/// association to a member drops or the failure detector marks it unreachable, its cluster port is probed: a host that
/// answers with resets, <see cref="CrashedMemberDowningSettings.RefusalsToDown"/> times in a row, has no process there
/// (kill -9, a crash, an OOM kill) and cannot be the live side of a partition, so the member is downed at once and its
/// singletons and shards move within the removal margin instead of after <c>stable-after</c> as well. Anything else
/// (accepted, no answer) is left to the resolver. A firewall that rejects with resets would pass for a crash:
/// <c>mydvpn.crashed-member-downing.enabled = off</c> turns this off for such networks.
/// </summary>
public sealed class CrashedMemberDowning : ReceiveActor, IWithTimers
{
    private static readonly Counter Downed = Metrics.CreateCounter(
        "mydvpn_cluster_crashed_members_downed_total", "Members downed because their cluster port refused connections (the process was gone).");

    private sealed record Probe(UniqueAddress Member);
    private sealed record Probed(UniqueAddress Member, PortProbe Outcome, string Detail);

    private readonly CrashedMemberDowningSettings _settings;
    private readonly ILogger _logger;
    private readonly Cluster _cluster;
    private readonly Dictionary<UniqueAddress, CrashJudge> _judging = [];
    private readonly CancellationTokenSource _stopping = new();

    public CrashedMemberDowning(CrashedMemberDowningSettings settings, ILogger logger)
    {
        _settings = settings;
        _logger = logger;
        _cluster = Cluster.Get(Context.System);

        Receive<DisassociatedEvent>(e => Suspect(_cluster.State.Members.FirstOrDefault(m => m.Address.Equals(e.RemoteAddress))));
        Receive<ClusterEvent.UnreachableMember>(e => Suspect(e.Member));
        Receive<ClusterEvent.ReachableMember>(e => Forget(e.Member.UniqueAddress));
        Receive<ClusterEvent.MemberRemoved>(e => Forget(e.Member.UniqueAddress));
        Receive<Probe>(p =>
        {
            if (Current(p.Member) is not { } member)
            {
                Forget(p.Member);
                return;
            }
            ProbeAsync(member.Address, _settings.ProbeTimeout, _stopping.Token)
                .PipeTo(Self, success: result => new Probed(p.Member, result.Outcome, result.Detail));
        });
        Receive<Probed>(Judge);
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(CrashedMemberDowningSettings settings, ILogger logger) =>
        Akka.Actor.Props.Create(() => new CrashedMemberDowning(settings, logger));

    protected override void PreStart()
    {
        Context.System.EventStream.Subscribe(Self, typeof(DisassociatedEvent));
        _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents,
            typeof(ClusterEvent.UnreachableMember), typeof(ClusterEvent.ReachableMember), typeof(ClusterEvent.MemberRemoved));
    }

    protected override void PostStop()
    {
        Context.System.EventStream.Unsubscribe(Self);
        _cluster.Unsubscribe(Self);
        _stopping.Cancel();
        _stopping.Dispose();
    }

    private void Suspect(Member? member)
    {
        if (member is null || Current(member.UniqueAddress) is null || _judging.ContainsKey(member.UniqueAddress))
            return;
        _judging[member.UniqueAddress] = new CrashJudge(_settings);
        Timers.StartSingleTimer(member.UniqueAddress, new Probe(member.UniqueAddress), _settings.ProbeInterval);
    }

    private void Judge(Probed probed)
    {
        if (!_judging.TryGetValue(probed.Member, out var judge) || Current(probed.Member) is not { } member)
        {
            Forget(probed.Member);
            return;
        }
        switch (judge.Observe(probed.Outcome))
        {
            case CrashVerdict.ProbeAgain:
                Timers.StartSingleTimer(probed.Member, new Probe(probed.Member), _settings.ProbeInterval);
                break;
            case CrashVerdict.Down:
                _logger.LogWarning(
                    "Cluster member {Member} is gone: its host refused {Refusals} connections in a row to its cluster port ({Detail}); downing it now rather than after the split-brain resolver's wait",
                    member.Address, _settings.RefusalsToDown, probed.Detail);
                Downed.Inc();
                _cluster.Down(member.Address);
                _judging.Remove(probed.Member);
                break;
            default:
                _judging.Remove(probed.Member);
                break;
        }
    }

    /// <summary>The member, while it is one this node may down: another node, still Up, joining or weakly up (one leaving hands over itself).</summary>
    private Member? Current(UniqueAddress address) =>
        address.Equals(_cluster.SelfUniqueAddress)
            ? null
            : _cluster.State.Members.FirstOrDefault(m => m.UniqueAddress.Equals(address)
                                                         && m.Status is MemberStatus.Up or MemberStatus.WeaklyUp or MemberStatus.Joining);

    private void Forget(UniqueAddress member)
    {
        _judging.Remove(member);
        Timers.Cancel(member);
    }

    /// <summary>Connects to the member's cluster port and closes at once: only whether the host resets the connect matters.</summary>
    public static async Task<(PortProbe Outcome, string Detail)> ProbeAsync(Address address, TimeSpan timeout, CancellationToken cancellationToken)
    {
        if (address.Host is not { } host || address.Port is not { } port)
            return (PortProbe.NoAnswer, $"{address} names no host and port");
        using var bounded = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        bounded.CancelAfter(timeout);
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        try
        {
            await socket.ConnectAsync(host, port, bounded.Token);
            return (PortProbe.Accepted, $"{host}:{port} accepted");
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionRefused)
        {
            return (PortProbe.Refused, $"{host}:{port} refused");
        }
        catch (SocketException ex)
        {
            return (PortProbe.NoAnswer, $"{host}:{port}: {ex.SocketErrorCode}");
        }
        catch (OperationCanceledException)
        {
            return (PortProbe.NoAnswer, $"{host}:{port}: no answer within {timeout.TotalMilliseconds:0} ms");
        }
    }
}
