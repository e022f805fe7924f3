using Akka.Actor;
using Akka.Cluster;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Prometheus;

namespace MyDvpn.Hosting;

/// <summary>Ready once this node is an Up member of its cluster.</summary>
public sealed class ClusterMemberHealthCheck(ActorSystem system) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var self = Cluster.Get(system).SelfMember;
        return Task.FromResult(self.Status == MemberStatus.Up
            ? HealthCheckResult.Healthy($"member {self.Address} is up")
            : HealthCheckResult.Unhealthy($"member {self.Address} is {self.Status}"));
    }
}

/// <summary>
/// Logs joining and leaving the cluster, exposes membership as metrics, and sets the exit code when
/// the cluster ends the node: 2 when it could not join (the seeds are wrong or unreachable), 1 when
/// it was downed or removed. Akka.Hosting stops the host once coordinated shutdown runs.
/// </summary>
public sealed class ClusterMembershipMonitor(
    ActorSystem system,
    ClusterNodeSettings settings,
    ILogger<ClusterMembershipMonitor> logger) : IHostedService
{
    private static readonly Gauge Members = Metrics.CreateGauge(
        "mydvpn_cluster_members", "Members of this node's cluster as this node sees them.", "status");
    private static readonly Gauge SelfUp = Metrics.CreateGauge(
        "mydvpn_cluster_self_up", "1 while this node is an Up member of its cluster.");

    public Task StartAsync(CancellationToken cancellationToken)
    {
        var cluster = Cluster.Get(system);
        cluster.RegisterOnMemberUp(() => logger.LogInformation("Joined cluster {System} as {Address} with roles {Roles}",
            system.Name, cluster.SelfAddress, string.Join(",", cluster.SelfRoles)));
        Metrics.DefaultRegistry.AddBeforeCollectCallback(() =>
        {
            var state = cluster.State;
            foreach (var group in state.Members.GroupBy(m => m.Status))
                Members.WithLabels(group.Key.ToString().ToLowerInvariant()).Set(group.Count());
            Members.WithLabels("unreachable").Set(state.Unreachable.Count);
            SelfUp.Set(cluster.SelfMember.Status == MemberStatus.Up ? 1 : 0);
        });
        var shutdown = CoordinatedShutdown.Get(system);
        shutdown.AddTask(CoordinatedShutdown.PhaseBeforeServiceUnbind, "report-exit-reason", () =>
        {
            ReportExitReason(shutdown.ShutdownReason);
            return Task.FromResult(Akka.Done.Instance);
        });
        return Task.CompletedTask;
    }

    private void ReportExitReason(CoordinatedShutdown.Reason? reason)
    {
        switch (reason)
        {
            case CoordinatedShutdown.ClusterJoinUnsuccessfulReason:
                logger.LogCritical(
                    "--seed: could not join the cluster through {Seeds} within {Timeout}; check that a seed runs, is reachable and uses a certificate of the same operator CA",
                    string.Join(", ", settings.SeedsOrSelf), settings.JoinTimeout);
                Environment.ExitCode = 2;
                break;
            // Akka.Remote ends a node whose own outbound TLS handshake fails: the other side refused
            // our certificate or we refused theirs. Its reason type is internal, hence the name test.
            case { } tls when tls.GetType().Name == "TlsHandshakeFailureReason":
                logger.LogCritical(
                    "--tls: TLS handshake with the cluster failed ({Detail}); every node of a cluster needs a node certificate of the same operator CA naming the role and region of that cluster",
                    tls.ToString());
                Environment.ExitCode = 2;
                break;
            case CoordinatedShutdown.ClusterDowningReason:
                logger.LogCritical("This node was downed by its cluster (unreachable too long, or the split-brain resolver chose the other side); stopping");
                Environment.ExitCode = 1;
                break;
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
