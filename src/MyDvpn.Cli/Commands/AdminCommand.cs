using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using Grpc.Core;
using Grpc.Core.Interceptors;
using MyDvpn.Common;
using MyDvpn.Hosting;
using MyDvpn.Protocol.Admin;
using MyDvpn.Protocol.Directory;
using MyDvpn.Protocol.SuperNode;
using MyDvpn.Security;
using MyDvpn.SuperNode.Commands;
using Spectre.Console;
using PeerRole = MyDvpn.Protocol.Control.PeerRole;

namespace MyDvpn.Cli.Commands;

/// <summary><c>mydvpn admin</c>: inspection and operations over the BaseNode's admin API.</summary>
public static partial class AdminCommand
{
    /// <summary>In the sessions table, an exit serving more clients than this shows how many instead of who.</summary>
    private const int MaxClientsListed = 3;

    public static Command Build(TextWriter output)
    {
        var baseNode = new Option<string>("--base")
        {
            Description = $"BaseNodes' gRPC addresses, HOST:PORT[,HOST:PORT...]: the next is tried when one takes no connection " +
                $"[default: ${AdminSettings.BaseVariable}, else the file `admin login` writes]",
            Recursive = true,
        };
        var tls = new Option<string>("--tls")
        {
            Description = $"Directory with an admin certificate (`mydvpn ca issue --role admin`) [default: ${AdminSettings.TlsVariable}, else the file `admin login` writes]",
            Recursive = true,
        };
        var json = new Option<bool>("--json") { Description = "Machine-readable JSON output", Recursive = true };

        var cluster = new Command("cluster", "Members of the BaseNode cluster");
        cluster.SetAction((parse, ct) => WithClient(parse, baseNode, tls, async client =>
        {
            var state = await client.GetClusterAsync(new GetClusterRequest(), Deadline(ct));
            if (parse.GetValue(json))
                await output.WriteLineAsync(AdminJson.Format(state));
            else
                CliConsole.For(output).Write(ClusterTable(state));
        }));

        var regions = new Command("regions", "Regions and their SuperNodes, as the directory knows them");
        regions.SetAction((parse, ct) => WithClient(parse, baseNode, tls, async client =>
        {
            var list = await client.ListRegionsAsync(new ListRegionsRequest(), Deadline(ct));
            if (parse.GetValue(json))
                await output.WriteLineAsync(AdminJson.Format(list));
            else
                CliConsole.For(output).Write(RegionsTable(list));
        }));

        var sessionsRegion = new Option<string>("--region") { Description = "Only the sessions of this region" };
        sessionsRegion.Validators.Add(RegionValidator);
        var sessions = new Command("sessions", "Open peer streams, gathered from the SuperNodes that are up") { sessionsRegion };
        sessions.SetAction((parse, ct) => WithClient(parse, baseNode, tls, async client =>
        {
            var list = await client.ListSessionsAsync(new ListSessionsRequest { Region = parse.GetValue(sessionsRegion) ?? "" }, Deadline(ct));
            if (parse.GetValue(json))
            {
                await output.WriteLineAsync(AdminJson.Format(list));
                return;
            }
            var console = CliConsole.For(output);
            console.Write(SessionsTable(list));
            if (list.UnreachableSupernodes.Count > 0)
                console.MarkupLine($"[yellow]Not included, did not answer:[/] {Markup.Escape(string.Join(", ", list.UnreachableSupernodes))}");
        }));

        var exitsRegion = new Option<string>("--region") { Description = "The region whose exit pool to show", Required = true };
        exitsRegion.Validators.Add(RegionValidator);
        var exits = new Command("exits", "A region's exits and the clients assigned to them, from its exit pool (through a SuperNode of the region)") { exitsRegion };
        exits.SetAction((parse, ct) => WithClient(parse, baseNode, tls, async client =>
        {
            var pool = await client.ListExitsAsync(new ListExitsRequest { Region = parse.GetRequiredValue(exitsRegion) }, Deadline(ct));
            if (parse.GetValue(json))
            {
                await output.WriteLineAsync(AdminJson.Format(pool));
                return;
            }
            var console = CliConsole.For(output);
            console.Write(ExitsTable(pool));
            console.Write(AssignmentsTable(pool));
        }));

        var peerId = PeerIdArgument("PEER_ID", "The peer to revoke");
        var force = new Option<bool>("--force") { Description = "Revoke even an id the directory knows no enrollment of (it can never enroll then)" };
        var revoke = new Command("revoke",
            "Revoke a peer: its stream is closed and every SuperNode refuses it until an operator takes it back (`admin unrevoke`)") { peerId, force };
        revoke.SetAction((parse, ct) => WithClient(parse, baseNode, tls, async client =>
        {
            // A peer never enrolled is refused without --force: a usage error (exit 2) that names the fix.
            var revoked = await RefusalIsUsage("PEER_ID", StatusCode.FailedPrecondition, () => client.RevokePeerAsync(
                new RevokePeerRequest { PeerId = parse.GetRequiredValue(peerId), Force = parse.GetValue(force) }, Deadline(ct)).ResponseAsync);
            if (parse.GetValue(json))
                await output.WriteLineAsync(AdminJson.Format(revoked));
            else
                await output.WriteAsync(RevocationText(parse.GetRequiredValue(peerId), revoked));
        }));

        return new Command("admin", "Inspect and operate the network through a BaseNode's admin API")
        {
            baseNode, tls, json, LoginCommand(output, baseNode, tls), cluster, regions, sessions, exits, PeersCommand(output, baseNode, tls, json),
            TokenCommand(output, baseNode, tls, json), revoke, RevocationsCommand(output, baseNode, tls, json), UnrevokeCommand(output, baseNode, tls, json),
            CrlCommand(output, baseNode, tls, json),
            DisconnectCommand(output, baseNode, tls, json),
            DrainCommand(output, baseNode, tls, json), UndrainCommand(output, baseNode, tls, json), RotateCommand(output, baseNode, tls, json),
            WebTokenCommand(output, baseNode, tls, json),
        };
    }

    /// <summary><c>admin disconnect PEER_ID --region R</c>: a Disconnect command through the peer's session.</summary>
    private static Command DisconnectCommand(TextWriter output, Option<string> baseNode, Option<string> tls, Option<bool> json)
    {
        var peerId = PeerIdArgument("PEER_ID", "The peer to disconnect");
        var region = new Option<string>("--region") { Description = "The peer's region", Required = true };
        region.Validators.Add(RegionValidator);
        var reason = new Option<string>("--reason") { Description = "Why, for the peer's log", DefaultValueFactory = _ => "disconnected by an operator" };
        var noWait = new Option<bool>("--no-wait") { Description = "Return once the command is persisted instead of waiting for the peer's answer" };
        var command = new Command("disconnect",
            "Tell a peer to disconnect (a DISCONNECT command: persisted, delivered, retried, answered); "
            + "a client's disconnect also releases its exit, on the client's side and on the exit's") { peerId, region, reason, noWait };
        command.SetAction((parse, ct) => WithClient(parse, baseNode, tls, async client =>
        {
            var wait = !parse.GetValue(noWait);
            var answer = await client.IssueCommandAsync(new AdminCommandRequest
            {
                Region = parse.GetRequiredValue(region),
                Request = new IssueCommandRequest
                {
                    PeerId = parse.GetRequiredValue(peerId),
                    Command = PeerCommands.Disconnect(parse.GetValue(reason) ?? ""),
                    Wait = wait,
                },
            }, new CallOptions(deadline: DateTime.UtcNow.AddSeconds(wait ? 75 : 20), cancellationToken: ct));
            if (parse.GetValue(json))
                await output.WriteLineAsync(AdminJson.Format(answer));
            else
                await output.WriteLineAsync(CommandText(parse.GetRequiredValue(peerId), answer));
            if (answer.OutcomeCase == IssueCommandResponse.OutcomeOneofCase.FailureReason
                || answer.Response?.OutcomeCase == Protocol.Control.CommandResponse.OutcomeOneofCase.Failure)
                throw new RpcException(new Grpc.Core.Status(StatusCode.Aborted, $"command {answer.CommandId} failed"));
        }));
        return command;
    }

    private static Argument<string> ExitArgument() => PeerIdArgument("EXIT_ID", "The exit peer");

    private static Argument<string> PeerIdArgument(string name, string description)
    {
        var argument = new Argument<string>(name) { Description = description };
        argument.Validators.Add(result =>
        {
            var value = result.GetValueOrDefault<string>();
            if (!NodeId.IsValid(value, out var problem))
                result.AddError($"{name} '{value}' {problem}");
        });
        return argument;
    }

    /// <summary><c>admin drain EXIT_ID [--region R] [--wait SECONDS]</c>: no new clients, its clients moved away; waits and reports.</summary>
    private static Command DrainCommand(TextWriter output, Option<string> baseNode, Option<string> tls, Option<bool> json)
    {
        var exit = ExitArgument();
        var region = new Option<string>("--region") { Description = "The exit's region (default: the region whose exit pool knows it)" };
        region.Validators.Add(RegionValidator);
        var wait = new Option<int>("--wait") { Description = "Seconds to wait for its clients to move", DefaultValueFactory = _ => 60 };
        wait.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<int>() is < 1 or > 3600)
                result.AddError("--wait must be 1 to 3600 seconds");
        });
        var command = new Command("drain",
            "Drain an exit: it takes no new clients and each client it serves is moved to another exit of its region, make-before-break; "
            + "waits for them and reports where each went") { exit, region, wait };
        command.SetAction((parse, ct) => WithClient(parse, baseNode, tls, async client =>
        {
            var seconds = parse.GetValue(wait);
            var drained = await client.DrainExitAsync(new DrainExitRequest
            {
                Region = parse.GetValue(region) ?? "",
                ExitPeerId = parse.GetRequiredValue(exit),
                WaitSeconds = (uint)seconds,
            }, new CallOptions(deadline: DateTime.UtcNow.AddSeconds(seconds + 30), cancellationToken: ct));
            if (parse.GetValue(json))
                await output.WriteLineAsync(AdminJson.Format(drained));
            else
                await output.WriteAsync(DrainText(drained));
            if (!drained.Complete)
                throw new RpcException(new Grpc.Core.Status(StatusCode.DeadlineExceeded, $"not every client of exit {drained.ExitPeerId} moved within {seconds} s"));
        }));
        return command;
    }

    public static string DrainText(DrainExitResponse drained)
    {
        var text = new System.Text.StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"Exit {drained.ExitPeerId} is drained: it takes no new clients.");
        if (!drained.Known)
            text.Append(" (No exit pool knows it yet; the drain holds should it come.)");
        text.AppendLine();
        foreach (var moved in drained.Clients)
        {
            text.AppendLine(moved.ToExitPeerId.Length > 0
                ? $"  {moved.ClientPeerId}@{moved.ClientRegion}: moved to exit {moved.ToExitPeerId} (assignment {moved.ToAssignmentId})"
                : $"  {moved.ClientPeerId}@{moved.ClientRegion}: {(drained.Complete ? "left the region's exits" : "not moved yet")} (assignment {moved.FromAssignmentId})");
        }
        text.AppendLine(drained.Clients.Count == 0
            ? "It served no clients."
            : drained.Complete ? $"All {drained.Clients.Count} clients moved." : "Not every client moved; their sessions go on trying.");
        return text.ToString();
    }

    private static Command UndrainCommand(TextWriter output, Option<string> baseNode, Option<string> tls, Option<bool> json)
    {
        var exit = ExitArgument();
        var region = new Option<string>("--region") { Description = "The exit's region (default: the region whose exit pool knows it)" };
        region.Validators.Add(RegionValidator);
        var command = new Command("undrain", "Take an exit's drain back: it takes new clients again") { exit, region };
        command.SetAction((parse, ct) => WithClient(parse, baseNode, tls, async client =>
        {
            var undrained = await client.UndrainExitAsync(new UndrainExitRequest { Region = parse.GetValue(region) ?? "", ExitPeerId = parse.GetRequiredValue(exit) },
                Deadline(ct));
            if (parse.GetValue(json))
                await output.WriteLineAsync(AdminJson.Format(undrained));
            else
                await output.WriteLineAsync(undrained.WasDrained
                    ? $"Exit {parse.GetRequiredValue(exit)} takes new clients again."
                    : $"Exit {parse.GetRequiredValue(exit)} was not drained; nothing changed.");
        }));
        return command;
    }

    /// <summary><c>admin rotate CLIENT_ID --region R</c>: the client moves to another exit of its exit's region; waits.</summary>
    private static Command RotateCommand(TextWriter output, Option<string> baseNode, Option<string> tls, Option<bool> json)
    {
        var clientId = PeerIdArgument("CLIENT_ID", "The client to move");
        var region = new Option<string>("--region") { Description = "The client's region", Required = true };
        region.Validators.Add(RegionValidator);
        var reason = new Option<string>("--reason") { Description = "Why, for the logs", DefaultValueFactory = _ => "moved by the operator" };
        var command = new Command("rotate", "Move a client to another exit of its exit's region, make-before-break; waits and reports where it went")
        {
            clientId, region, reason,
        };
        command.SetAction((parse, ct) => WithClient(parse, baseNode, tls, async client =>
        {
            var result = await client.RotateClientAsync(new RotateOneClientRequest
            {
                PeerId = parse.GetRequiredValue(clientId),
                Region = parse.GetRequiredValue(region),
                Reason = parse.GetValue(reason) ?? "",
            }, new CallOptions(deadline: DateTime.UtcNow.AddSeconds(90), cancellationToken: ct));
            if (parse.GetValue(json))
                await output.WriteLineAsync(AdminJson.Format(result));
            else
                await output.WriteLineAsync(RotationText(result));
            if (!result.Moved)
                throw new RpcException(new Grpc.Core.Status(StatusCode.Aborted, $"client {result.PeerId} did not move"));
        }));
        return command;
    }

    public static string RotationText(RotationResult result) => result.Moved
        ? $"Client {result.PeerId} moved from exit {result.FromExitPeerId} to exit {result.ToExitPeerId} (assignment {result.ToAssignmentId})."
        : $"Client {result.PeerId} did not move: {result.Failure}";

    public static string CommandText(string peerId, IssueCommandResponse answer) => answer.OutcomeCase switch
    {
        IssueCommandResponse.OutcomeOneofCase.Response when answer.Response.OutcomeCase == Protocol.Control.CommandResponse.OutcomeOneofCase.Failure =>
            $"Peer {peerId} refused command {answer.CommandId}: {answer.Response.Failure.Code} {answer.Response.Failure.Reason}",
        IssueCommandResponse.OutcomeOneofCase.Response => $"Peer {peerId} applied command {answer.CommandId}.",
        IssueCommandResponse.OutcomeOneofCase.FailureReason => $"Command {answer.CommandId} to peer {peerId} failed: {answer.FailureReason}",
        _ => $"Command {answer.CommandId} to peer {peerId} is persisted; its session delivers it when the peer is connected.",
    };

    /// <summary>
    /// <c>admin crl publish FILE</c>: uploads the operator CA's revocation list (checked here against the admin's CA first,
    /// so a wrong file is a usage error); <c>admin crl show</c>: the list the directory holds.
    /// </summary>
    private static Command CrlCommand(TextWriter output, Option<string> baseNode, Option<string> tls, Option<bool> json)
    {
        var file = new Argument<string>("FILE") { Description = "The revocation list `mydvpn ca revoke` wrote (ca.crl in the CA directory)" };
        var publish = new Command("publish",
            "Publish the CA's certificate revocation list: the directory enforces it at once, SuperNodes from their next report") { file };
        publish.SetAction((parse, ct) =>
        {
            var path = parse.GetRequiredValue(file);
            using (var adminTls = LoadTls(Target(parse, baseNode, tls)))
            {
                try
                {
                    CertificateRevocationList.Load(path, adminTls.CaCertificate);
                }
                catch (CertificateException ex)
                {
                    throw new ConfigurationException("FILE", $"{ex.Message}; publish the ca.crl that `mydvpn ca revoke` or `mydvpn ca crl` wrote", ex);
                }
            }

            return WithClient(parse, baseNode, tls, async client =>
            {
                var published = await client.PublishCrlAsync(
                    new PublishCrlRequest { Crl = Google.Protobuf.ByteString.CopyFrom(await File.ReadAllBytesAsync(path, ct)) }, Deadline(ct));
                if (parse.GetValue(json))
                    await output.WriteLineAsync(AdminJson.Format(published));
                else
                    await output.WriteLineAsync(
                        $"Published CRL number {published.Number} ({published.Revoked} revoked): the directory enforces it now, SuperNodes from their next report.");
            });
        });
        var show = new Command("show", "The certificate revocation list the directory holds");
        show.SetAction((parse, ct) => WithClient(parse, baseNode, tls, async client =>
        {
            var view = await client.GetCrlAsync(new GetCrlRequest(), Deadline(ct));
            if (parse.GetValue(json))
            {
                await output.WriteLineAsync(AdminJson.Format(view));
                return;
            }
            if (view.Number == 0)
            {
                await output.WriteLineAsync("The directory holds no certificate revocation list.");
                return;
            }
            await output.WriteLineAsync($"CRL number {view.Number}, written {view.ThisUpdate.ToDateTimeOffset():u}, {view.Revoked.Count} revoked");
            foreach (var revoked in view.Revoked)
                await output.WriteLineAsync($"  {revoked.Serial}  {revoked.RevokedAt.ToDateTimeOffset():u}  {revoked.Reason}");
        }));
        return new Command("crl", "The operator CA's certificate revocation list in the directory") { publish, show };
    }

    private static Command TokenCommand(TextWriter output, Option<string> baseNode, Option<string> tls, Option<bool> json)
    {
        var role = new Option<PeerRole>("--role")
        {
            Description = "What the token enrolls",
            HelpName = "client|exit|both",
            Required = true,
            CustomParser = ParseRole,
        };
        var region = new Option<string>("--region") { Description = "The region its peers enroll in", Required = true };
        region.Validators.Add(RegionValidator);
        var uses = new Option<int>("--uses")
        {
            Description = "How many peers may enroll with it",
            DefaultValueFactory = _ => 1,
            CustomParser = ParseUses,
        };
        var ttl = new Option<TimeSpan>("--ttl")
        {
            Description = "How long it stays valid, e.g. 90s, 30m, 24h, 7d [default: 24h]",
            HelpName = "DURATION",
            CustomParser = ParseTtl,
        };

        var create = new Command("create", "Create an enrollment token; its secret is shown this once") { role, region, uses, ttl };
        create.SetAction((parse, ct) => WithClient(parse, baseNode, tls, async client =>
        {
            var request = new CreateTokenRequest
            {
                Role = (int)parse.GetValue(role),
                Region = parse.GetRequiredValue(region),
                Uses = (uint)parse.GetValue(uses),
                // Zero (no --ttl) lets the BaseNode apply its default.
                TtlSeconds = (uint)parse.GetValue(ttl).TotalSeconds,
            };
            var token = await client.CreateTokenAsync(request, Deadline(ct));
            // On stderr, so that neither the token on the first line nor the JSON changes; the JSON has region_unknown too.
            if (token.RegionUnknown)
                await parse.InvocationConfiguration.Error.WriteLineAsync(UnknownRegionWarning(request.Region));
            if (parse.GetValue(json))
            {
                await output.WriteLineAsync(AdminJson.Format(token));
                return;
            }
            await output.WriteLineAsync(token.Token);
            await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                $"token {token.TokenId}: {RoleName(parse.GetValue(role))}, region {request.Region}, {token.Uses} use(s), expires {token.ExpiresAt.ToDateTimeOffset():u}"));
            await output.WriteLineAsync("The secret is not stored and cannot be shown again; give the token to the peer (`mydvpn peer --token`).");
        }));

        return new Command("token", "Enrollment tokens, with which new peers join")
        {
            create, TokenListCommand(output, baseNode, tls, json), TokenRevokeCommand(output, baseNode, tls, json),
        };
    }

    /// <summary>
    /// A whole number and a unit: <c>90s</c>, <c>30m</c>, <c>24h</c>, <c>7d</c>.
    /// </summary>
    /// <param name="problem">Why the text is not a duration; empty when it is one.</param>
    public static bool TryParseDuration(string? text, out TimeSpan duration, out string problem)
    {
        duration = TimeSpan.Zero;
        problem = $"'{text}' is not a duration; write a whole number and a unit: 90s, 30m, 24h or 7d";
        if (string.IsNullOrEmpty(text) || text.Length < 2)
            return false;
        TimeSpan? unit = text[^1] switch
        {
            's' => TimeSpan.FromSeconds(1),
            'm' => TimeSpan.FromMinutes(1),
            'h' => TimeSpan.FromHours(1),
            'd' => TimeSpan.FromDays(1),
            _ => null,
        };
        if (unit is null || !long.TryParse(text.AsSpan(0, text.Length - 1), NumberStyles.None, CultureInfo.InvariantCulture, out var count))
            return false;
        if (count == 0)
        {
            problem = $"'{text}' is not a positive duration";
            return false;
        }
        if (count > TimeSpan.MaxValue.Ticks / unit.Value.Ticks)
        {
            problem = $"'{text}' is too long a duration";
            return false;
        }
        duration = unit.Value * count;
        problem = "";
        return true;
    }

    private static TimeSpan ParseTtl(ArgumentResult result)
    {
        var text = result.Tokens.Count == 1 ? result.Tokens[0].Value : null;
        if (!TryParseDuration(text, out var ttl, out var problem))
        {
            result.AddError($"--ttl: {problem}");
            return default;
        }
        // The admin API carries it as whole seconds in 32 bits.
        if (ttl.TotalSeconds > uint.MaxValue)
        {
            result.AddError($"--ttl: '{text}' is longer than the longest a token may live ({uint.MaxValue} s)");
            return default;
        }
        return ttl;
    }

    private static int ParseUses(ArgumentResult result)
    {
        var text = result.Tokens.Count == 1 ? result.Tokens[0].Value : "";
        if (int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var uses) && uses >= 1)
            return uses;
        result.AddError($"--uses: '{text}' is not a whole number of at least 1");
        return default;
    }

    private static PeerRole ParseRole(ArgumentResult result)
    {
        var text = result.Tokens.Count == 1 ? result.Tokens[0].Value : "";
        switch (text.ToLowerInvariant())
        {
            case "client":
                return PeerRole.Client;
            case "exit":
                return PeerRole.Exit;
            case "both":
                return PeerRole.Both;
            default:
                result.AddError($"--role: '{text}' is not a role a token grants; use client, exit or both");
                return default;
        }
    }

    private static void RegionValidator(OptionResult result)
    {
        var value = result.GetValueOrDefault<string>();
        if (!RegionName.IsValid(value, out var problem))
            result.AddError($"--region: {problem}");
    }

    private static string RoleName(PeerRole role) => role switch
    {
        PeerRole.Client => "client",
        PeerRole.Exit => "exit",
        PeerRole.Both => "both",
        _ => role.ToString(),
    };

    public static string RevocationText(string peerId, RevokePeerResponse revoked) =>
        SuperNodesToldText(string.Create(CultureInfo.InvariantCulture, $"Peer {peerId} is revoked (revocation version {revoked.Version})."), revoked);

    private static CallOptions Deadline(CancellationToken cancellationToken) =>
        new(deadline: DateTime.UtcNow.AddSeconds(15), cancellationToken: cancellationToken);

    /// <summary>The BaseNode and admin certificate of this call: flags, else the environment, else the file <c>admin login</c> wrote.</summary>
    private static AdminTarget Target(ParseResult parse, Option<string> baseNode, Option<string> tls) =>
        AdminSettings.Resolve(parse.GetValue(baseNode), parse.GetValue(tls), Environment.GetEnvironmentVariable);

    /// <summary>The admin certificate; a problem with it names where its directory came from (a flag, a variable, the saved file).</summary>
    private static TlsMaterial LoadTls(AdminTarget target)
    {
        try
        {
            return TlsMaterial.Load(target.Tls);
        }
        catch (CertificateException ex)
        {
            throw new ConfigurationException(target.TlsFrom, ex.Message, ex);
        }
    }

    private static Task<int> WithClient(ParseResult parse, Option<string> baseNode, Option<string> tlsDir, Func<Admin.AdminClient, Task> action) =>
        WithClient(Target(parse, baseNode, tlsDir), parse.InvocationConfiguration.Error, (client, _) => action(client));

    /// <summary>As <see cref="WithClient(AdminTarget, TextWriter, Func{Admin.AdminClient, HostPort, Task})"/>; the action learns which BaseNode answers.</summary>
    private static Task<int> WithClient(ParseResult parse, Option<string> baseNode, Option<string> tlsDir, Func<Admin.AdminClient, HostPort, Task> action) =>
        WithClient(Target(parse, baseNode, tlsDir), parse.InvocationConfiguration.Error, action);

    /// <summary>
    /// Runs <paramref name="action"/> against the first of the target's BaseNodes that takes a connection. The next one
    /// is tried only when no call of the action was answered yet and the last one never reached its BaseNode (no
    /// connection: refused, timed out, no route), so nothing the action did is done twice.
    /// </summary>
    /// <param name="error">Where a BaseNode that takes no connection is said, before the next is tried.</param>
    private static async Task<int> WithClient(AdminTarget target, TextWriter error, Func<Admin.AdminClient, HostPort, Task> action)
    {
        var servers = target.BaseNodes;
        using var tls = LoadTls(target);
        if (tls.Kind != CertificateKind.Admin)
            throw new ConfigurationException(target.TlsFrom, "holds a node certificate; the admin API takes an admin one (`mydvpn ca issue --role admin`)");
        var unreachable = new List<string>();
        foreach (var server in servers)
        {
            using var channel = GrpcChannels.MutualTls(server, tls, ExpectedServer.BaseNode);
            var answers = new AnswerTracker();
            try
            {
                await action(new Admin.AdminClient(channel.Intercept(answers)), server);
                return CliApplication.Success;
            }
            catch (RpcException ex) when (!answers.Answered && ConnectFailure(ex) is { } why && server != servers[^1])
            {
                unreachable.Add($"{server}: {why}");
                await error.WriteLineAsync($"warning: BaseNode {server} takes no connection ({why}); trying the next");
            }
            // Only a call that never reached the BaseNode carries the transport's exception; an UNAVAILABLE the BaseNode
            // answered with (e.g. no SuperNode of a region up) is its own message.
            catch (RpcException ex) when (ex.StatusCode == StatusCode.Unavailable && ex.Status.DebugException is not null)
            {
                var others = unreachable.Count == 0 ? "" : $" (before it: {string.Join("; ", unreachable)})";
                var why = ConnectFailure(ex) is { } failure ? $"{ex.Status.Detail} ({failure})" : ex.Status.Detail;
                throw new RpcException(new Grpc.Core.Status(ex.StatusCode, $"BaseNode {server} is unreachable: {why}{others}"));
            }
        }
        throw new InvalidOperationException("the loop returns or throws at its last BaseNode");
    }

    /// <summary>
    /// Whether the call failed before any connection to the server was made: the socket's connect failed (refused, no
    /// route, timed out, no such host), as gRPC's connection or the HTTP handler reports it.
    /// </summary>
    /// <returns>Why, in the socket's words (e.g. "Connection refused"); null when the call got further.</returns>
    private static string? ConnectFailure(RpcException ex)
    {
        if (ex.StatusCode != StatusCode.Unavailable)
            return null;
        for (var cause = ex.Status.DebugException; cause is not null; cause = cause.InnerException)
        {
            if (cause is HttpRequestException { HttpRequestError: HttpRequestError.ConnectionError }
                || cause is System.Net.Sockets.SocketException
                {
                    SocketErrorCode: System.Net.Sockets.SocketError.ConnectionRefused or System.Net.Sockets.SocketError.HostUnreachable
                        or System.Net.Sockets.SocketError.NetworkUnreachable or System.Net.Sockets.SocketError.TimedOut
                        or System.Net.Sockets.SocketError.HostNotFound,
                })
            {
                return cause.Message;
            }
        }
        return null;
    }

    /// <summary>Notes whether any call through it was answered (a unary reply, or a stream's response headers).</summary>
    private sealed class AnswerTracker : Interceptor
    {
        private int answered;

        public bool Answered => Volatile.Read(ref answered) == 1;

        public override AsyncUnaryCall<TResponse> AsyncUnaryCall<TRequest, TResponse>(TRequest request,
            ClientInterceptorContext<TRequest, TResponse> context,
            Interceptor.AsyncUnaryCallContinuation<TRequest, TResponse> continuation)
        {
            var call = continuation(request, context);
            return new AsyncUnaryCall<TResponse>(Noting(call.ResponseAsync), call.ResponseHeadersAsync, call.GetStatus, call.GetTrailers, call.Dispose);
        }

        public override AsyncServerStreamingCall<TResponse> AsyncServerStreamingCall<TRequest, TResponse>(TRequest request,
            ClientInterceptorContext<TRequest, TResponse> context,
            Interceptor.AsyncServerStreamingCallContinuation<TRequest, TResponse> continuation)
        {
            var call = continuation(request, context);
            return new AsyncServerStreamingCall<TResponse>(call.ResponseStream, Noting(call.ResponseHeadersAsync), call.GetStatus, call.GetTrailers, call.Dispose);
        }

        private async Task<T> Noting<T>(Task<T> response)
        {
            var value = await response;
            Volatile.Write(ref answered, 1);
            return value;
        }
    }

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

    public static Table SessionsTable(SessionList list)
    {
        var table = new Table().Title("Sessions")
            .AddColumns("peer id", "role", "region", "SuperNode", "connected since", "RTT ms", "state", "commands in flight", "exit / clients");
        foreach (var session in list.Sessions)
            table.AddRow(
                Markup.Escape(session.PeerId), Markup.Escape(session.Role), Markup.Escape(session.Region),
                Markup.Escape(session.SupernodeId), session.ConnectedSince?.ToDateTimeOffset().ToString("u") ?? "-",
                RttText(session.RttMicros), Markup.Escape(session.State), session.CommandsInFlight.ToString(CultureInfo.InvariantCulture),
                Markup.Escape(ExitOrClientsText(session)));
        return table;
    }

    /// <summary>
    /// A session's assignments in a line: its own exit (<c>exit-1@eu-west 100.96.0.2 active</c>, and how it came to it when
    /// it was moved there: <c>moved from exit-0 to exit-1 at 2030-01-01 00:00:00Z (exit lost)</c>), then the clients it
    /// serves as an exit (their ids while few, else how many); <c>-</c> when it has neither.
    /// </summary>
    public static string ExitOrClientsText(Session session)
    {
        // A peer of role "both" may hold its own exit and serve clients at once.
        var own = session.Assignments.Where(a => a.ClientPeerId == session.PeerId).ToList();
        var served = session.Assignments.Where(a => a.ClientPeerId != session.PeerId).ToList();
        var parts = own.Select(a => $"{a.ExitPeerId}@{a.Region} {AddressText(a.ClientAddress)} {a.State}"
                                    + (a.Path == "relay" ? $" via relay {a.ClientRelayLeg} → {a.ExitRelayLeg}" : "")
                                    + (a.LastRotation is { } moved ? ", " + RotationText(moved, a.ExitPeerId) : "")).ToList();
        if (served.Count > 0)
        {
            var count = served.Count == 1 ? "1 client" : $"{served.Count} clients";
            parts.Add(served.Count <= MaxClientsListed
                ? $"{count}: {string.Join(", ", served.Select(a => $"{a.ClientPeerId}@{a.ClientRegion}"))}"
                : count);
        }
        return parts.Count == 0 ? "-" : string.Join("; ", parts);
    }

    /// <summary>A client's last move: <c>moved from exit-0 to exit-1 at 2030-01-01 00:00:00Z (exit lost)</c>.</summary>
    public static string RotationText(ExitRotationView rotation, string toExitPeerId) =>
        $"moved from {rotation.FromExitPeerId} to {toExitPeerId} at {rotation.At?.ToDateTimeOffset().ToString("u", CultureInfo.InvariantCulture) ?? "?"} "
        + $"({RotationReasonText(rotation.Reason)})";

    private static string RotationReasonText(RotationReason reason) => reason switch
    {
        RotationReason.ExitLost => "exit lost",
        RotationReason.ExitDrained => "exit drained",
        RotationReason.Operator => "by the operator",
        RotationReason.ExitStale => "exit stale",
        _ => "reason not given",
    };

    public static Table ExitsTable(ExitPoolView pool)
    {
        var table = new Table().Title($"Exits of region {Markup.Escape(pool.Region)}")
            .AddColumns("peer id", "online", "state", "clients/capacity", "subnet", "RTT ms", "recent failures", "public address");
        foreach (var exit in pool.Exits)
            table.AddRow(
                Markup.Escape(exit.PeerId), exit.Online ? "[green]yes[/]" : "[red]no[/]", ExitStateText(exit.State),
                string.Create(CultureInfo.InvariantCulture, $"{exit.Clients}/{exit.Capacity}"), Markup.Escape(OrDash(exit.Subnet)),
                RttText(exit.RttMicros), exit.RecentFailures.ToString(CultureInfo.InvariantCulture), Markup.Escape(OrDash(exit.PublicAddress)));
        return table;
    }

    private static string ExitStateText(string state) => state switch
    {
        "online" => "[green]online[/]",
        "disconnected" or "drained" => $"[yellow]{state}[/]",
        "" => "-",
        _ => $"[red]{Markup.Escape(state)}[/]",
    };

    public static Table AssignmentsTable(ExitPoolView pool)
    {
        var table = new Table().Title($"Assignments in region {Markup.Escape(pool.Region)}")
            .AddColumns("assignment id", "client", "exit peer id", "client address", "endpoint", "state");
        foreach (var assignment in pool.Assignments)
            table.AddRow(
                Markup.Escape(assignment.AssignmentId), Markup.Escape($"{assignment.ClientPeerId}@{assignment.ClientRegion}"),
                Markup.Escape(assignment.ExitPeerId), Markup.Escape(OrDash(assignment.ClientAddress)),
                Markup.Escape(OrDash(assignment.ExitEndpoint)), Markup.Escape(assignment.State));
        return table;
    }

    // 0: no heartbeat or probe has come back yet.
    private static string RttText(uint micros) =>
        micros == 0 ? "-" : (micros / 1000.0).ToString("0.0", CultureInfo.InvariantCulture);

    /// <summary>A tunnel address without its /32: the address is what an operator looks for.</summary>
    private static string AddressText(string cidr) =>
        cidr.Length == 0 ? "-" : cidr.EndsWith("/32", StringComparison.Ordinal) ? cidr[..^3] : cidr;

    private static string OrDash(string text) => text.Length == 0 ? "-" : text;

    private static string StatusText(MyDvpn.Protocol.Directory.SuperNodeStatus status) => status switch
    {
        MyDvpn.Protocol.Directory.SuperNodeStatus.Up => "[green]up[/]",
        MyDvpn.Protocol.Directory.SuperNodeStatus.Down => "[red]down[/]",
        MyDvpn.Protocol.Directory.SuperNodeStatus.Left => "[grey]left[/]",
        _ => "?",
    };
}
