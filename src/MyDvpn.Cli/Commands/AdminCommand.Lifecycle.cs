using System.CommandLine;
using System.Globalization;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using MyDvpn.Common;
using MyDvpn.Protocol.Admin;
using Spectre.Console;
using PeerRole = MyDvpn.Protocol.Control.PeerRole;

namespace MyDvpn.Cli.Commands;

/// <summary>
/// The lifecycle of tokens, revocations and peers in <c>mydvpn admin</c> (<c>token list|revoke</c>, <c>revocations</c>,
/// <c>unrevoke</c>, <c>peers</c>) and <c>admin login</c>, which saves the BaseNode and admin certificate for the others.
/// </summary>
public static partial class AdminCommand
{
    /// <summary>
    /// <c>admin login</c>: checks that the BaseNode answers the admin certificate (flags, else the environment, else the file
    /// already saved), then saves both where the admin commands look when no flag names them.
    /// </summary>
    private static Command LoginCommand(TextWriter output, Option<string> baseNode, Option<string> tls)
    {
        var command = new Command("login",
            $"Check a BaseNode and an admin certificate and save them for the admin commands that follow "
            + $"($XDG_CONFIG_HOME/mydvpn/admin.json, else ~/.config/mydvpn/admin.json); flags and ${AdminSettings.BaseVariable} / "
            + $"${AdminSettings.TlsVariable} still win over it");
        command.SetAction((parse, ct) =>
        {
            var target = Target(parse, baseNode, tls);
            var path = AdminSettings.FilePath(Environment.GetEnvironmentVariable)
                       ?? throw new ConfigurationException("HOME", "is not set, nor XDG_CONFIG_HOME: `admin login` has nowhere to save; set one of them");
            // Saved absolute, so the commands find it from any directory.
            target = target with { Tls = Path.GetFullPath(target.Tls) };
            return WithClient(target, parse.InvocationConfiguration.Error, async (client, _) =>
            {
                var cluster = await client.GetClusterAsync(new GetClusterRequest(), Deadline(ct));
                AdminSettings.Save(path, new AdminSettings.Saved(target.Base, target.Tls));
                await output.WriteLineAsync(
                    $"BaseNode {target.Base} answers (cluster of {cluster.Members.Count}); saved it and the admin certificate {target.Tls} to {path}.");
                await output.WriteLineAsync("The admin commands use them when --base and --tls are not given.");
            });
        });
        return command;
    }

    private static Command TokenListCommand(TextWriter output, Option<string> baseNode, Option<string> tls, Option<bool> json) =>
        ListCommand("list", "Every enrollment token: id, role, region, uses left, expiry and state (never the secret)", output, baseNode, tls, json,
            (client, options) => client.ListTokensAsync(new ListTokensRequest(), options),
            list => list.Tokens.Count == 0 ? "No enrollment tokens; `mydvpn admin token create` makes one." : null, TokensTable);

    /// <summary>A command that shows one list: as JSON, as <paramref name="empty"/>'s line when it has nothing, else as a table.</summary>
    private static Command ListCommand<T>(string name, string description, TextWriter output, Option<string> baseNode, Option<string> tls,
        Option<bool> json, Func<Admin.AdminClient, CallOptions, AsyncUnaryCall<T>> call, Func<T, string?> empty, Func<T, Table> table)
        where T : Google.Protobuf.IMessage
    {
        var command = new Command(name, description);
        command.SetAction((parse, ct) => WithClient(parse, baseNode, tls, async client =>
        {
            var list = await call(client, Deadline(ct));
            if (parse.GetValue(json))
                await output.WriteLineAsync(AdminJson.Format(list));
            else if (empty(list) is { } nothing)
                await output.WriteLineAsync(nothing);
            else
                CliConsole.For(output).Write(table(list));
        }));
        return command;
    }

    private static Command TokenRevokeCommand(TextWriter output, Option<string> baseNode, Option<string> tls, Option<bool> json)
    {
        var tokenId = new Argument<string>("TOKEN_ID") { Description = "The token's id: the part before the dot, as `admin token list` shows it" };
        tokenId.Validators.Add(result =>
        {
            var value = result.GetValueOrDefault<string>();
            if (value is not { Length: 16 } || !value.All(char.IsAsciiHexDigitLower))
                result.AddError($"TOKEN_ID '{value}' is not a token id: 16 lowercase hex characters, the part of a token before the dot (`mydvpn admin token list`)");
        });
        var command = new Command("revoke", "Revoke an enrollment token: nobody enrolls with it any more (the peers it enrolled stay enrolled)") { tokenId };
        command.SetAction((parse, ct) => WithClient(parse, baseNode, tls, async client =>
        {
            var token = await RefusalIsUsage("TOKEN_ID", StatusCode.NotFound,
                () => client.RevokeTokenAsync(new RevokeTokenRequest { TokenId = parse.GetRequiredValue(tokenId) }, Deadline(ct)).ResponseAsync);
            if (parse.GetValue(json))
            {
                await output.WriteLineAsync(AdminJson.Format(token));
                return;
            }
            await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                $"Token {token.TokenId} ({RoleName(token.Role)}, region {token.Region}) is revoked: nobody enrolls with it any more."));
            if (token.EnrolledPeers.Count > 0)
                await output.WriteLineAsync($"The peers it enrolled stay enrolled ({string.Join(", ", token.EnrolledPeers)}); `mydvpn admin revoke PEER_ID` removes one.");
        }));
        return command;
    }

    private static Command RevocationsCommand(TextWriter output, Option<string> baseNode, Option<string> tls, Option<bool> json) =>
        ListCommand("revocations", "The revoked peers, in the order they were revoked", output, baseNode, tls, json,
            (client, options) => client.ListRevocationsAsync(new ListRevocationsRequest(), options),
            list => list.Peers.Count == 0 ? "No peer is revoked." : null, RevocationsTable);

    private static Command UnrevokeCommand(TextWriter output, Option<string> baseNode, Option<string> tls, Option<bool> json)
    {
        var peerId = PeerIdArgument("PEER_ID", "The revoked peer to let back in");
        var command = new Command("unrevoke",
            "Take a peer's revocation back: it may connect again with its enrolled key (logged at the BaseNode as a security event, with your name)") { peerId };
        command.SetAction((parse, ct) => WithClient(parse, baseNode, tls, async client =>
        {
            var id = parse.GetRequiredValue(peerId);
            var unrevoked = await RefusalIsUsage("PEER_ID", StatusCode.FailedPrecondition,
                () => client.UnrevokePeerAsync(new UnrevokePeerRequest { PeerId = id }, Deadline(ct)).ResponseAsync);
            if (parse.GetValue(json))
                await output.WriteLineAsync(AdminJson.Format(unrevoked));
            else
                await output.WriteAsync(SuperNodesToldText($"Peer {id} may connect again (revocation version {unrevoked.Version}).", unrevoked));
        }));
        return command;
    }

    private static Command PeersCommand(TextWriter output, Option<string> baseNode, Option<string> tls, Option<bool> json)
    {
        var region = new Option<string>("--region") { Description = "Only the peers of this region" };
        region.Validators.Add(RegionValidator);
        var command = new Command("peers", "Enrolled peers, online or not, with when a SuperNode last saw them") { region };
        command.SetAction((parse, ct) => WithClient(parse, baseNode, tls, async client =>
        {
            var list = await client.ListPeersAsync(new ListPeersRequest { Region = parse.GetValue(region) ?? "" }, Deadline(ct));
            if (parse.GetValue(json))
            {
                await output.WriteLineAsync(AdminJson.Format(list));
                return;
            }
            var console = CliConsole.For(output);
            if (list.Peers.Count == 0)
                await output.WriteLineAsync("No enrolled peers.");
            else
                console.Write(PeersTable(list, DateTimeOffset.UtcNow));
            if (list.UnreachableSupernodes.Count > 0)
                console.MarkupLine($"[yellow]Did not answer, their peers may show offline:[/] {Markup.Escape(string.Join(", ", list.UnreachableSupernodes))}");
        }));
        return command;
    }

    public static string UnknownRegionWarning(string region) =>
        $"warning: the directory knows no region '{region}' (no SuperNode of it ever registered; `mydvpn admin regions` lists them). "
        + "The token is made and enrolls peers of that region once its SuperNodes run; if it is a typo, revoke it with `mydvpn admin token revoke ID`.";

    /// <summary>A revocation's or unrevocation's first line, then which SuperNodes were told at once and which catch up.</summary>
    public static string SuperNodesToldText(string done, RevokePeerResponse told)
    {
        var text = new System.Text.StringBuilder();
        text.AppendLine(done);
        text.AppendLine(told.NotifiedSupernodes.Count > 0
            ? $"Told at once: {string.Join(", ", told.NotifiedSupernodes)}"
            : "No SuperNode was told at once.");
        if (told.UnreachableSupernodes.Count > 0)
            text.AppendLine($"Unreachable, they follow from their next report on: {string.Join(", ", told.UnreachableSupernodes)}");
        return text.ToString();
    }

    /// <summary>
    /// The call's answer; a refusal with <paramref name="code"/> is the operator's input at fault: a usage error (exit 2)
    /// naming <paramref name="setting"/>, with the BaseNode's words, which say how to fix it.
    /// </summary>
    private static async Task<T> RefusalIsUsage<T>(string setting, StatusCode code, Func<Task<T>> call)
    {
        try
        {
            return await call();
        }
        catch (RpcException ex) when (ex.StatusCode == code)
        {
            throw new ConfigurationException(setting, ex.Status.Detail, ex);
        }
    }

    public static Table TokensTable(TokenList list)
    {
        var table = new Table().Title("Enrollment tokens")
            .AddColumns("token id", "role", "region", "uses left", "created", "expires", "state", "enrolled peers");
        foreach (var token in list.Tokens)
            table.AddRow(
                Markup.Escape(token.TokenId), RoleName(token.Role), Markup.Escape(token.Region),
                string.Create(CultureInfo.InvariantCulture, $"{token.UsesLeft}/{token.Uses}"), TimeText(token.CreatedAt), TimeText(token.ExpiresAt),
                TokenStateText(token), Markup.Escape(token.EnrolledPeers.Count == 0 ? "-" : string.Join(", ", token.EnrolledPeers)));
        return table;
    }

    private static string TokenStateText(Protocol.Admin.TokenView token) => token.State switch
    {
        TokenState.Active => "[green]active[/]",
        TokenState.Revoked => $"[red]revoked[/] by {Markup.Escape(token.RevokedBy)} at {TimeText(token.RevokedAt)}",
        TokenState.UsedUp => "[grey]used up[/]",
        TokenState.Expired => "[grey]expired[/]",
        _ => "?",
    };

    public static Table RevocationsTable(RevokedPeerList list)
    {
        var table = new Table().Title("Revoked peers").AddColumns("peer id", "revoked at", "version");
        foreach (var peer in list.Peers)
            table.AddRow(Markup.Escape(peer.PeerId), TimeText(peer.RevokedAt), peer.Version.ToString(CultureInfo.InvariantCulture));
        return table;
    }

    public static Table PeersTable(PeerList list, DateTimeOffset now)
    {
        var table = new Table().Title("Enrolled peers").AddColumns("peer id", "region", "role", "status", "SuperNode", "last seen", "enrolled", "token");
        foreach (var peer in list.Peers)
            table.AddRow(
                Markup.Escape(peer.PeerId), Markup.Escape(peer.Region), RoleName(peer.Role),
                peer.Revoked ? "[red]revoked[/]" : peer.Online ? "[green]online[/]" : "offline",
                Markup.Escape(OrDash(peer.SupernodeId)), LastSeenText(peer, now), TimeText(peer.EnrolledAt), Markup.Escape(OrDash(peer.TokenId)));
        return table;
    }

    /// <summary><c>now</c> for a peer online, else when it was last seen and how long ago: <c>2030-01-01 00:00:00Z (3h ago)</c>.</summary>
    public static string LastSeenText(Protocol.Admin.EnrolledPeer peer, DateTimeOffset now)
    {
        if (peer.Online)
            return "now";
        if (peer.LastSeen is null)
            return "never";
        var seen = peer.LastSeen.ToDateTimeOffset();
        var ago = now - seen;
        var agoText = ago < TimeSpan.FromMinutes(1) ? $"{Math.Max(0, (int)ago.TotalSeconds)}s"
            : ago < TimeSpan.FromHours(1) ? $"{(int)ago.TotalMinutes}m"
            : ago < TimeSpan.FromDays(1) ? $"{(int)ago.TotalHours}h"
            : $"{(int)ago.TotalDays}d";
        return string.Create(CultureInfo.InvariantCulture, $"{seen:u} ({agoText} ago)");
    }

    private static string TimeText(Timestamp? at) => at is null ? "-" : at.ToDateTimeOffset().ToString("u", CultureInfo.InvariantCulture);
}
