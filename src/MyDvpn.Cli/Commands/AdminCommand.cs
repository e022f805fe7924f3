using System.CommandLine;
using Google.Protobuf;
using Grpc.Core;
using MyDvpn.Hosting;
using MyDvpn.Protocol.Admin;
using MyDvpn.Protocol.Directory;
using MyDvpn.Security;
using Spectre.Console;

namespace MyDvpn.Cli.Commands;

/// <summary><c>mydvpn admin</c>: inspection and operations over the BaseNode's admin API.</summary>
public static class AdminCommand
{
    private static readonly JsonFormatter Json = new(JsonFormatter.Settings.Default.WithFormatDefaultValues(true));

    public static Command Build(TextWriter output)
    {
        var baseNode = new Option<string>("--base") { Description = "A BaseNode's gRPC address, HOST:PORT", Required = true, Recursive = true };
        var tls = new Option<string>("--tls") { Description = "Directory with an admin certificate (`mydvpn ca issue --kind admin`)", Required = true, Recursive = true };
        var json = new Option<bool>("--json") { Description = "Machine-readable JSON output", Recursive = true };

        var cluster = new Command("cluster", "Members of the BaseNode cluster");
        cluster.SetAction((parse, ct) => WithClient(parse, baseNode, tls, async client =>
        {
            var state = await client.GetClusterAsync(new GetClusterRequest(), Deadline(ct));
            if (parse.GetValue(json))
                await output.WriteLineAsync(Json.Format(state));
            else
                ConsoleFor(output).Write(ClusterTable(state));
        }));

        var regions = new Command("regions", "Regions and their SuperNodes, as the directory knows them");
        regions.SetAction((parse, ct) => WithClient(parse, baseNode, tls, async client =>
        {
            var list = await client.ListRegionsAsync(new ListRegionsRequest(), Deadline(ct));
            if (parse.GetValue(json))
                await output.WriteLineAsync(Json.Format(list));
            else
                ConsoleFor(output).Write(RegionsTable(list));
        }));

        return new Command("admin", "Inspect and operate the network through a BaseNode's admin API")
        {
            baseNode, tls, json, cluster, regions,
        };
    }

    private static CallOptions Deadline(CancellationToken cancellationToken) =>
        new(deadline: DateTime.UtcNow.AddSeconds(15), cancellationToken: cancellationToken);

    private static async Task<int> WithClient(ParseResult parse, Option<string> baseNode, Option<string> tlsDir, Func<Admin.AdminClient, Task> action)
    {
        var server = HostPort.Parse(parse.GetValue(baseNode), "--base");
        using var tls = TlsMaterial.Load(parse.GetRequiredValue(tlsDir));
        if (tls.Kind != CertificateKind.Admin)
            throw new ConfigurationException("--tls", "holds a node certificate; the admin API takes an admin one (`mydvpn ca issue --kind admin`)");
        using var channel = GrpcChannels.MutualTls(server, tls);
        try
        {
            await action(new Admin.AdminClient(channel));
        }
        catch (RpcException ex) when (ex.StatusCode == StatusCode.Unavailable)
        {
            throw new RpcException(new Grpc.Core.Status(ex.StatusCode, $"BaseNode {server} is unreachable: {ex.Status.Detail}"));
        }
        return CliApplication.Success;
    }

    private static IAnsiConsole ConsoleFor(TextWriter output) => AnsiConsole.Create(new AnsiConsoleSettings
    {
        Out = new AnsiConsoleOutput(output),
        Ansi = ReferenceEquals(output, Console.Out) ? AnsiSupport.Detect : AnsiSupport.No,
        ColorSystem = ReferenceEquals(output, Console.Out) ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
    });

    public static Table ClusterTable(ClusterState state)
    {
        var table = new Table().Title("BaseNode cluster").AddColumns("member", "status", "roles", "reachable", "leader");
        foreach (var member in state.Members)
            table.AddRow(
                Markup.Escape(member.Address + (member.Address == state.SelfAddress ? " (answering)" : "")),
                member.Status, Markup.Escape(string.Join(",", member.Roles)), member.Reachable ? "yes" : "NO", member.Leader ? "*" : "");
        return table;
    }

    public static Table RegionsTable(RegionList list)
    {
        var table = new Table().Title("Regions").AddColumns("region", "supernode", "status", "gRPC endpoint", "relay ports", "peers/capacity", "last report");
        foreach (var region in list.Regions)
        {
            foreach (var node in region.Supernodes)
            {
                var registration = node.Registration;
                table.AddRow(
                    Markup.Escape(region.Region), Markup.Escape(registration.SupernodeId), StatusText(node.Status),
                    Markup.Escape(registration.GrpcEndpoint), $"{registration.RelayPortLow}-{registration.RelayPortHigh}",
                    $"{node.Load?.ConnectedPeers ?? 0}/{registration.Capacity}", node.LastReportAt?.ToDateTimeOffset().ToString("u") ?? "-");
            }
            if (region.Supernodes.Count == 0)
                table.AddRow(Markup.Escape(region.Region), "-", "-", "-", "-", "-", "-");
        }
        return table;
    }

    private static string StatusText(MyDvpn.Protocol.Directory.SuperNodeStatus status) => status switch
    {
        MyDvpn.Protocol.Directory.SuperNodeStatus.Up => "[green]up[/]",
        MyDvpn.Protocol.Directory.SuperNodeStatus.Down => "[red]down[/]",
        MyDvpn.Protocol.Directory.SuperNodeStatus.Left => "[grey]left[/]",
        _ => "?",
    };
}
