using System.CommandLine;
using MyDvpn.Logging;
using MyDvpn.Peer;

namespace MyDvpn.Cli.Commands;

/// <summary><c>mydvpn peer</c>: the peer agent (ARCHITECTURE §1, §7).</summary>
public static class PeerCommand
{
    public static Command Build()
    {
        var config = new NodeConfiguration("Peer");
        config.Flag<string>("--role", nameof(PeerOptions.Role), "client, exit or both", required: true);
        config.Flag<string>("--id", nameof(PeerOptions.Id), "This peer's id (1-64 letters, digits, '.', '_', '-')", required: true);
        config.Flag<string>("--region", nameof(PeerOptions.Region), "The region this peer belongs to (e.g. eu-west)", required: true);
        config.Flag<string>("--key", nameof(PeerOptions.Key), "The peer's Ed25519 identity key file (`mydvpn keygen --out FILE`)", required: true);
        config.Flag<string>("--ca", nameof(PeerOptions.Ca), "The operator CA certificate (ca.crt) SuperNodes' TLS certificates are checked against", required: true);
        config.Flag<string>("--crl", nameof(PeerOptions.Crl),
            "The operator CA's revocation list (ca.crl from `mydvpn ca revoke`): SuperNodes it revokes are refused from the start; " +
            "newer lists come from the SuperNodes and are kept in STATE_DIR/" + PeerOptions.CrlFileName);
        config.Flag<string[]>("--supernode", nameof(PeerOptions.Supernode),
            "SuperNodes of the region to dial, HOST:PORT[,HOST:PORT...]; the region's full list is learned on connecting", required: true);
        config.Flag<string>("--token", nameof(PeerOptions.Token),
            "Enrollment token (`mydvpn admin token create`); presented until the first successful authentication, then no more");
        config.Flag<string>("--exit-region", nameof(PeerOptions.ExitRegion), "Region to take an exit in (client): asked for on every connect until one is held; `mydvpn status` shows it");
        config.Flag<string>("--state-dir", nameof(PeerOptions.StateDir),
            "Directory for applied command ids, the enrollment record, the command log, the WireGuard key, the tunnel state and the status socket (default ~/.local/state/mydvpn/ID, /var/lib/mydvpn/ID as root)");
        config.Flag<string>("--data-plane", nameof(PeerOptions.DataPlane),
            "wireguard (default, needs root): make a WireGuard interface, routes and NAT match what the SuperNode asks; " +
            "none: keep only the tunnel state (tests, several agents on one host)");
        config.Flag<string>("--wg-interface", nameof(PeerOptions.WgInterface),
            $"WireGuard interface name (default {PeerOptions.DefaultWireGuardInterface})");
        config.Flag<string>("--uplink", nameof(PeerOptions.Uplink), "Interface an exit forwards client traffic out of (default: the default route's)");
        config.Flag<string>("--public-endpoint", nameof(PeerOptions.PublicEndpoint), "HOST:PORT clients reach this exit's WireGuard on (exit; default: the address its control stream comes from, and --wg-port)");
        config.Flag<int>("--max-clients", nameof(PeerOptions.MaxClients),
            $"Clients an exit serves at once (default {PeerOptions.DefaultMaxClients}); the region's exit pool gives it no more");
        config.Flag<int>("--wg-port", nameof(PeerOptions.WgPort), $"WireGuard UDP port (default {PeerOptions.DefaultWireGuardPort}), announced to clients");
        config.Flag<string>("--metrics", nameof(PeerOptions.Metrics),
            "HOST:PORT for plain-HTTP /metrics: the control stream, the tunnel, its handshakes and bytes, reconnects and commands (off unless given)");
        config.Flag<string>("--otlp", nameof(PeerOptions.Otlp),
            "http(s)://HOST:PORT of an OpenTelemetry collector (OTLP over HTTP) the agent's traces are exported to (off unless given)");

        var command = new LongRunningCommand("peer",
            "Run a peer agent: keeps an authenticated control stream to a SuperNode of its region and applies the commands it " +
            "receives, each at most once; a client asks for an exit and routes all its traffic through it, an exit accepts clients " +
            "and forwards their traffic out of its uplink. The tunnel is kept in STATE_DIR/tunnel.json and applied to the " +
            "WireGuard interface (--data-plane); commands are logged in STATE_DIR/commands.jsonl.");
        config.AddTo(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var settings = config.Bind<PeerOptions>(parse).Validate();
            var format = command.LogFormatOf(parse);
            await using var agent = PeerHost.Build(settings, logging: logging => ConsoleLogging.Use(logging, format));
            var exitCode = await agent.RunAsync(cancellationToken);
            // The agent gave up by itself (a permanent refusal): why and the fix, where a person or a script looks.
            if (agent.Stopped.IsCompletedSuccessfully)
                await parse.InvocationConfiguration.Error.WriteLineAsync($"error: {agent.Stopped.Result.Reason}");
            return exitCode;
        });
        return command;
    }
}
