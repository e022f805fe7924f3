using System.CommandLine;
using MyDvpn.Peer;

namespace MyDvpn.Cli.Commands;

/// <summary><c>mydvpn peer</c>: the peer agent (ARCHITECTURE §1, §7).</summary>
public static class PeerCommand
{
    private const string DataPlaneNote = " (data plane: validated now, used once the data-plane issue lands)";
    private const string NoInterfaceYet = " (no WireGuard interface is configured yet)";

    public static Command Build()
    {
        var config = new NodeConfiguration("Peer");
        config.Flag<string>("--role", nameof(PeerOptions.Role), "client, exit or both");
        config.Flag<string>("--id", nameof(PeerOptions.Id), "This peer's id (1-64 letters, digits, '.', '_', '-')");
        config.Flag<string>("--region", nameof(PeerOptions.Region), "The region this peer belongs to (e.g. eu-west)");
        config.Flag<string>("--key", nameof(PeerOptions.Key), "The peer's Ed25519 identity key file (`mydvpn keygen --out FILE`)");
        config.Flag<string>("--ca", nameof(PeerOptions.Ca), "The operator CA certificate (ca.crt) SuperNodes' TLS certificates are checked against");
        config.Flag<string[]>("--supernode", nameof(PeerOptions.Supernode),
            "SuperNodes of the region to dial, HOST:PORT[,HOST:PORT...]; the region's full list is learned on connecting");
        config.Flag<string>("--token", nameof(PeerOptions.Token),
            "Enrollment token (`mydvpn admin token create`); presented until the first successful authentication, then no more");
        config.Flag<string>("--exit-region", nameof(PeerOptions.ExitRegion), "Region to take an exit in (client): asked for on every connect until one is held; `mydvpn status` shows it");
        config.Flag<string>("--state-dir", nameof(PeerOptions.StateDir),
            "Directory for applied command ids, the enrollment record, the command log, the WireGuard key, the tunnel state and the status socket (default ~/.local/state/mydvpn/ID, /var/lib/mydvpn/ID as root)");
        config.Flag<string>("--wg-interface", nameof(PeerOptions.WgInterface),
            $"WireGuard interface name (default {PeerOptions.DefaultWireGuardInterface})" + DataPlaneNote);
        config.Flag<string>("--uplink", nameof(PeerOptions.Uplink), "Interface an exit forwards client traffic out of (default: detected)" + DataPlaneNote);
        config.Flag<string>("--public-endpoint", nameof(PeerOptions.PublicEndpoint), "HOST:PORT clients reach this exit's WireGuard on (exit; default: the address its control stream comes from, and --wg-port)");
        config.Flag<int>("--max-clients", nameof(PeerOptions.MaxClients),
            $"Clients an exit serves at once (default {PeerOptions.DefaultMaxClients}); the region's exit pool gives it no more");
        config.Flag<int>("--wg-port", nameof(PeerOptions.WgPort), $"WireGuard UDP port (default {PeerOptions.DefaultWireGuardPort}), announced to clients" + NoInterfaceYet);

        var command = new Command("peer",
            "Run a peer agent: keeps an authenticated control stream to a SuperNode of its region and applies the commands it " +
            "receives, each at most once; a client asks for an exit, an exit accepts clients. Until the data-plane issue lands, " +
            "the tunnel the commands describe is kept in STATE_DIR/tunnel.json (and commands logged in STATE_DIR/commands.jsonl), " +
            "not applied to a WireGuard interface.");
        config.AddTo(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var settings = config.Bind<PeerOptions>(parse).Validate();
            await using var agent = PeerHost.Build(settings);
            return await agent.RunAsync(cancellationToken);
        });
        return command;
    }
}
