using System.CommandLine;
using Microsoft.AspNetCore.Builder;
using MyDvpn.BaseNode;
using MyDvpn.Hosting;
using MyDvpn.SuperNode;

namespace MyDvpn.Cli.Commands;

/// <summary><c>mydvpn base</c> and <c>mydvpn super</c>: the clustered nodes.</summary>
public static class NodeCommands
{
    public static Command BuildBase()
    {
        var config = new NodeConfiguration("Base");
        AddClusterNodeFlags(config, "other BaseNodes' cluster addresses (none: this node starts the BaseNode cluster)");
        config.Flag<string>("--web", nameof(BaseNodeOptions.Web),
            "HOST:PORT for the read-only web topology page and its JSON (/api/topology), over TLS with the node's certificate (off unless given); "
            + "it takes an admin credential: a login token from `mydvpn admin web-token` or an admin certificate (docs/web-topology.md)");
        var command = new LongRunningCommand("base", "Run a BaseNode: the global directory of regions and SuperNodes, and the admin API");
        config.AddTo(command);
        command.SetAction((parse, cancellationToken) =>
        {
            var (settings, web) = config.Bind<BaseNodeOptions>(parse).ValidateBase();
            var limits = config.Bind<MyDvpn.BaseNode.Enrollment.BaseNodeLimits>(parse);
            try
            {
                limits.Redemptions.Validate();
            }
            catch (ArgumentException ex)
            {
                throw new MyDvpn.Common.ConfigurationException($"Base:Redemptions:{ex.ParamName}", ex.Message);
            }
            return RunAsync(BaseNodeHost.Build(settings, redemptions: limits.Redemptions, logFormat: command.LogFormatOf(parse), webSettings: web),
                cancellationToken);
        });
        return command;
    }

    public static Command BuildSuper()
    {
        var config = new NodeConfiguration("Super");
        AddClusterNodeFlags(config, "cluster addresses of SuperNodes of the same region (none: this node starts the region's cluster)");
        config.Flag<string>("--region", nameof(SuperNodeOptions.Region), "Region this SuperNode serves (e.g. eu-west)", required: true);
        config.Flag<string>("--id", nameof(SuperNodeOptions.Id), "This SuperNode's id, unique in its region", required: true);
        config.Flag<string[]>("--base", nameof(SuperNodeOptions.Base), "BaseNodes' gRPC addresses, HOST:PORT[,HOST:PORT...]", required: true);
        config.Flag<string>("--public-ip", nameof(SuperNodeOptions.PublicIp), "The IP peers reach this SuperNode on", required: true);
        config.Flag<string>("--relay-ports", nameof(SuperNodeOptions.RelayPorts), "UDP port range for relay legs, LOW-HIGH", required: true);
        config.Flag<int>("--max-streams", nameof(SuperNodeOptions.MaxStreams), "Peer streams this SuperNode holds at most (its capacity; default: what the descriptor limit, ulimit -n, leaves " +
            $"beside {SuperNodeOptions.ConnectionsBesidePeers} other connections, a socket per relay port and {FileDescriptorLimit.Headroom} spare, at most {SuperNodeOptions.MaxStreamsCap}; " +
            "a larger value is cut to what that limit fits, and the start says so)");
        var command = new LongRunningCommand("super", "Run a SuperNode: a region's control plane and relay");
        config.AddTo(command);
        command.SetAction((parse, cancellationToken) =>
        {
            var settings = config.Bind<SuperNodeOptions>(parse).Validate();
            return RunAsync(SuperNodeHost.Build(settings, command.LogFormatOf(parse)), cancellationToken);
        });
        return command;
    }

    private static void AddClusterNodeFlags(NodeConfiguration config, string seedDescription)
    {
        config.Flag<string>("--data-dir", nameof(ClusterNodeOptions.DataDir), "Directory for the journal (SQLite) and caches; created if missing", required: true);
        config.Flag<string>("--cluster", nameof(ClusterNodeOptions.Cluster), "HOST:PORT of this node's cluster (Akka.Remote, TLS) endpoint", required: true);
        config.Flag<string[]>("--seed", nameof(ClusterNodeOptions.Seeds), $"HOST:PORT, repeatable: {seedDescription}");
        config.Flag<string>("--listen", nameof(ClusterNodeOptions.Listen), "HOST:PORT of the gRPC (TLS) listener", required: true);
        config.Flag<string>("--tls", nameof(ClusterNodeOptions.Tls), "Directory with this node's tls.crt, tls.key and ca.crt (`mydvpn ca issue`)", required: true);
        config.Flag<string>("--crl", nameof(ClusterNodeOptions.Crl), "The operator CA's revocation list (ca.crl from `mydvpn ca revoke`): enforced from the start, before any directory answers");
        config.Flag<string>("--metrics", nameof(ClusterNodeOptions.Metrics), "HOST:PORT for plain-HTTP /metrics, /healthz and /readyz (off unless given)");
        config.Flag<string>("--otlp", nameof(ClusterNodeOptions.Otlp),
            "http(s)://HOST:PORT of an OpenTelemetry collector (OTLP over HTTP) the node's traces are exported to (off unless given)");
        config.Flag<string>("--postgres", nameof(ClusterNodeOptions.Postgres), "PostgreSQL connection string, needed when several nodes share a cluster (default: SQLite in --data-dir)");
    }

    private static async Task<int> RunAsync(WebApplication app, CancellationToken cancellationToken)
    {
        await using (app)
        {
            await ClusterNodeHost.RunAsync(app, cancellationToken);
        }
        return Environment.ExitCode;
    }
}
