using System.CommandLine;
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using MyDvpn.Common;
using MyDvpn.Peer;
using MyDvpn.Peer.LocalStatus;
using Spectre.Console;

namespace MyDvpn.Cli.Commands;

/// <summary>
/// <c>mydvpn status</c>: what the local peer agent reports on its status socket (<c>STATE_DIR/agent.sock</c>): its
/// control stream, its exit, its tunnel addresses, the last time it moved to another exit and why, its exit requests and
/// the clients it serves.
/// </summary>
public static class StatusCommand
{
    /// <summary>Connecting and reading the answer, at most.</summary>
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(5);

    private const string NoDataPlane = "n/a (no data plane yet)";

    public static Command Build(TextWriter output)
    {
        var stateDir = new Option<string>("--state-dir")
        {
            Description = "The agent's state directory, as given to `mydvpn peer` (default: that of --id, or the only agent's " +
                "under ~/.local/state/mydvpn, /var/lib/mydvpn as root)",
        };
        var id = new Option<string>("--id") { Description = "The peer whose default state directory to look in" };
        id.Validators.Add(result =>
        {
            var value = result.GetValueOrDefault<string>();
            if (!NodeId.IsValid(value, out var problem))
                result.AddError($"--id '{value}' {problem}");
        });
        var json = new Option<bool>("--json") { Description = "Print the agent's JSON document as received" };
        var command = new Command("status", "Show the local peer agent's state: control stream, exit, tunnel, exit requests, served clients")
        {
            stateDir,
            id,
            json,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var error = parse.InvocationConfiguration.Error;
            var dir = ResolveStateDir(parse.GetValue(stateDir), parse.GetValue(id), out var problem);
            if (dir is null)
            {
                await error.WriteLineAsync($"error: {problem}");
                return CliApplication.RuntimeFailure;
            }
            var socketPath = StatusSocket.PathIn(dir);
            byte[] answer;
            try
            {
                if (!File.Exists(socketPath))
                    return await NoAgentAsync(error, dir, $"no socket at {socketPath}");
                answer = await StatusSocket.ReadAsync(socketPath, Timeout, cancellationToken);
            }
            catch (SocketException ex) when (ex.SocketErrorCode is SocketError.ConnectionRefused or SocketError.AddressNotAvailable)
            {
                return await NoAgentAsync(error, dir, $"nothing listens on {socketPath}");
            }
            catch (SocketException ex)
            {
                await error.WriteLineAsync($"error: cannot read {socketPath}: {ex.Message}");
                return CliApplication.RuntimeFailure;
            }
            catch (Exception ex) when (ex is TimeoutException or InvalidDataException or IOException)
            {
                await error.WriteLineAsync($"error: {ex.Message}");
                return CliApplication.RuntimeFailure;
            }

            AgentStatus? status;
            try
            {
                status = JsonSerializer.Deserialize(answer, AgentStatusJson.Default.AgentStatus);
            }
            catch (JsonException ex)
            {
                await error.WriteLineAsync($"error: the agent on {socketPath} answered something that is not a status document ({ex.Message})");
                return CliApplication.RuntimeFailure;
            }
            if (status?.Stream is null || status.ExitRequest is null)
            {
                await error.WriteLineAsync($"error: the agent on {socketPath} answered something that is not a status document");
                return CliApplication.RuntimeFailure;
            }

            if (parse.GetValue(json))
                await output.WriteAsync(Encoding.UTF8.GetString(answer));
            else
                Write(CliConsole.For(output), status);
            return CliApplication.Success;
        });
        return command;
    }

    /// <summary>The state directory to look in; null with <paramref name="problem"/> if there is none to choose.</summary>
    private static string? ResolveStateDir(string? stateDir, string? id, out string problem)
    {
        problem = "";
        if (!string.IsNullOrWhiteSpace(stateDir))
            return Path.GetFullPath(stateDir);
        if (!string.IsNullOrWhiteSpace(id))
            return PeerOptions.DefaultStateDir(id);
        var root = PeerOptions.DefaultStateRoot();
        var running = Directory.Exists(root)
            ? Directory.EnumerateDirectories(root).Where(d => File.Exists(StatusSocket.PathIn(d))).Order(StringComparer.Ordinal).ToList()
            : [];
        switch (running.Count)
        {
            case 1:
                return running[0];
            case 0:
                problem = $"no peer agent is running with a default state directory (no {Path.Combine(root, "*", StatusSocket.FileName)}): " +
                    "start `mydvpn peer …`, or give the agent's --state-dir";
                return null;
            default:
                problem = $"several peer agents run under {root} ({string.Join(", ", running.Select(Path.GetFileName))}): " +
                    "say which with --id ID or --state-dir DIR";
                return null;
        }
    }

    private static async Task<int> NoAgentAsync(TextWriter error, string stateDir, string why)
    {
        await error.WriteLineAsync($"error: no peer agent is running with state dir {stateDir} ({why}): start `mydvpn peer … --state-dir {stateDir}`");
        return CliApplication.RuntimeFailure;
    }

    private static void Write(IAnsiConsole console, AgentStatus status)
    {
        var grid = new Grid().AddColumn(new GridColumn().NoWrap()).AddColumn();
        Row(grid, "peer", $"{status.PeerId} ({status.Role}, region {status.Region})");
        Row(grid, "WireGuard key", status.WireguardPublicKey);

        var stream = status.Stream;
        var streamText = stream.State == "connected"
            ? $"connected, session {stream.SessionId}"
            : stream.State;
        Row(grid, "stream", $"{streamText} ({stream.Attempts} attempts, {stream.Authentications} authentications)");
        Row(grid, "SuperNode", stream.SuperNodeId is null ? stream.Endpoint ?? "-" : $"{stream.SuperNodeId} at {stream.Endpoint}");
        if (stream.LastProblem is { } lastProblem)
            Row(grid, "last problem", lastProblem);

        if (status.Exit is { } exit)
        {
            Row(grid, "exit", $"{exit.PeerId} (region {exit.Region}) at {exit.Endpoint}");
            Row(grid, "exit key", exit.PublicKey);
            Row(grid, "assignment", $"{exit.AssignmentId}, since {exit.Since.ToString("u", CultureInfo.InvariantCulture)}");
            Row(grid, "routed", string.Join(", ", exit.AllowedIps));
        }
        else
        {
            Row(grid, "exit", "none");
        }
        Row(grid, "tunnel address", status.TunnelAddresses.Count == 0 ? "none" : string.Join(", ", status.TunnelAddresses));
        if (status.LastRotation is { } rotation)
        {
            var from = rotation.From;
            var to = rotation.To;
            Row(grid, "last rotation", $"{rotation.At.ToString("u", CultureInfo.InvariantCulture)} from exit {from.PeerId} (region {from.Region}, " +
                $"assignment {from.AssignmentId}) to {to.PeerId} (assignment {to.AssignmentId}): {rotation.Reason}");
            if (!from.TunnelAddresses.SequenceEqual(to.TunnelAddresses))
                Row(grid, "address change", $"{AddressesOf(from)} with exit {from.PeerId}, {AddressesOf(to)} with exit {to.PeerId}");
        }
        Row(grid, "path", status.Path);
        Row(grid, "last handshake", status.LastHandshake?.ToString("u", CultureInfo.InvariantCulture) ?? NoDataPlane);
        Row(grid, "bytes", status.RxBytes is { } rx && status.TxBytes is { } tx
            ? $"{rx.ToString(CultureInfo.InvariantCulture)} received, {tx.ToString(CultureInfo.InvariantCulture)} sent"
            : NoDataPlane);

        var request = status.ExitRequest;
        var requestText = request.Region is null ? "none (no --exit-region)" : $"{request.State} (region {request.Region})";
        if (request.NextAttemptAt is { } next)
            requestText += $", next attempt at {next.ToString("u", CultureInfo.InvariantCulture)}";
        Row(grid, "exit request", requestText);
        if (request.LastError is { } error)
            Row(grid, "last refusal", $"{error.GrpcStatus} {error.Reason}: {error.Detail}");
        console.Write(grid);

        if (status.Clients.Count == 0)
            return;
        var table = new Table().Title("Served clients").AddColumns("client", "region", "assignment", "allowed IPs", "WireGuard key");
        foreach (var client in status.Clients)
        {
            table.AddRow(Markup.Escape(client.PeerId), Markup.Escape(client.Region), Markup.Escape(client.AssignmentId),
                Markup.Escape(string.Join(", ", client.AllowedIps)), Markup.Escape(client.PublicKey));
        }
        console.Write(table);
    }

    private static string AddressesOf(AgentRotationEnd end) => end.TunnelAddresses.Count == 0 ? "none" : string.Join(", ", end.TunnelAddresses);

    private static void Row(Grid grid, string label, string value) =>
        grid.AddRow(new Text(label), new Text(value));
}
