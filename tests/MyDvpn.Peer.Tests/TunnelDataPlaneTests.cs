using MyDvpn.DataPlane;
using MyDvpn.Peer.Tunnel;
using MyDvpn.Security;

namespace MyDvpn.Peer.Tests;

/// <summary>How the tunnel state becomes the WireGuard interface's desired state, and how a change the host cannot take is refused.</summary>
public sealed class TunnelDataPlaneTests : IDisposable
{
    private static readonly DataPlaneSettings Settings = new("mydvpn0", "eth9", null, 10, 51820, DataPlaneMode.WireGuard);
    private static readonly WireGuardKey Key = WireGuardKey.Generate();
    private static readonly string ExitKey = Convert.ToBase64String(WireGuardKey.Generate().PublicKey);
    private static readonly string ClientKey = Convert.ToBase64String(WireGuardKey.Generate().PublicKey);
    private readonly TempDirectory temp = new();

    private static readonly ClientExit Exit = new("a-1", "exit-1", "us-east", ExitKey, "198.51.100.20:51820", ["0.0.0.0/0"], 25,
        ["100.96.0.2/32"], DateTimeOffset.UnixEpoch);

    private static readonly ServedClient Client = new("a-2", "laptop-9", "eu-west", ClientKey, ["100.96.3.2/32"], DateTimeOffset.UnixEpoch);

    [Fact]
    public void No_exit_and_no_client_means_no_interface() =>
        Assert.Null(TunnelSpec.For(TunnelState.Empty, Settings, Key));

    [Fact]
    public void An_exit_serving_nobody_keeps_its_interface_up_with_no_peer_no_address_and_no_NAT()
    {
        var spec = TunnelSpec.For(TunnelState.Empty, Settings, Key, servesClients: true)!;

        Assert.Equal(("mydvpn0", 51820), (spec.Name, spec.ListenPort));
        Assert.Empty(spec.Peers);
        Assert.Empty(spec.Addresses);
        Assert.Null(spec.ExitNat);
        Assert.Null(spec.FullTunnel);
    }

    [Fact]
    public void A_client_routes_everything_through_its_exit_peer()
    {
        var spec = TunnelSpec.For(TunnelState.Empty with { Exit = Exit }, Settings, Key)!;

        Assert.Equal("mydvpn0", spec.Name);
        Assert.Equal(51820, spec.ListenPort);
        Assert.Equal(Key.PrivateKey, spec.PrivateKey);
        Assert.Equal(["100.96.0.2/32"], spec.Addresses.ToArray());
        var peer = Assert.Single(spec.Peers);
        Assert.Equal(Convert.FromBase64String(ExitKey), peer.PublicKey);
        Assert.Equal("198.51.100.20:51820", peer.Endpoint);
        Assert.Equal(["0.0.0.0/0"], peer.AllowedIps.ToArray());
        Assert.Equal(25, peer.PersistentKeepalive);
        Assert.Equal(new FullTunnelSpec(), spec.FullTunnel);
        Assert.Null(spec.ExitNat);
    }

    [Fact]
    public void An_exit_accepts_its_clients_and_masquerades_their_subnet_out_of_the_uplink()
    {
        var spec = TunnelSpec.For(TunnelState.Empty with { ExitAddresses = ["100.96.3.1/24"], Clients = [Client] }, Settings, Key)!;

        Assert.Equal(["100.96.3.1/24"], spec.Addresses.ToArray());
        var peer = Assert.Single(spec.Peers);
        Assert.Null(peer.Endpoint);
        Assert.Equal(["100.96.3.2/32"], peer.AllowedIps.ToArray());
        Assert.Null(spec.FullTunnel);
        Assert.Equal(["100.96.3.0/24"], spec.ExitNat!.SourceSubnets.ToArray());
        Assert.Equal("eth9", spec.ExitNat.Uplink);
    }

    [Fact]
    public void An_exit_limited_to_some_networks_gets_no_full_tunnel()
    {
        var split = Exit with { AllowedIps = ["10.20.0.0/16"] };

        Assert.Null(TunnelSpec.For(TunnelState.Empty with { Exit = split }, Settings, Key)!.FullTunnel);
    }

    [Fact]
    public async Task A_change_the_data_plane_refuses_is_not_written_and_the_host_is_put_back()
    {
        var applied = new List<TunnelState>();
        using (var store = TunnelStateStore.Open(temp.Path))
        {
            store.UseDataPlane((state, _) =>
            {
                applied.Add(state);
                return state.Exit is null ? Task.CompletedTask : throw new InvalidOperationException("no such device");
            });

            var problem = await Assert.ThrowsAsync<InvalidOperationException>(() => store.UpdateAsync(s => s with { Exit = Exit }));

            Assert.Equal("no such device", problem.Message);
            Assert.Null(store.Current.Exit);
            Assert.Equal([Exit, null], applied.Select(s => s.Exit));
        }
        using var reopened = TunnelStateStore.Open(temp.Path);
        Assert.Null(reopened.Current.Exit);
    }

    [Fact]
    public async Task A_change_the_data_plane_takes_is_applied_before_it_is_written()
    {
        using var store = TunnelStateStore.Open(temp.Path);
        var appliedBeforeWritten = false;
        store.UseDataPlane((state, _) =>
        {
            appliedBeforeWritten = !File.Exists(TunnelStateStore.PathIn(temp.Path));
            return Task.CompletedTask;
        });

        await store.UpdateAsync(s => s with { Exit = Exit });

        Assert.True(appliedBeforeWritten);
        Assert.Equal(Exit, store.Current.Exit);
        using var reopened = TunnelStateStore.Open(temp.Path);
        Assert.Equal("a-1", reopened.Current.Exit?.AssignmentId);
    }

    public void Dispose() => temp.Dispose();
}
