using System.Net;
using MyDvpn.DataPlane.Devices;
using MyDvpn.Security;

namespace MyDvpn.DataPlane.Tests.Unit;

/// <summary>The kernel backend's texts. The kernel path itself cannot run on this host (no WireGuard module), so its
/// config and dump handling are checked here and the backend choice falls back to wireguard-go in the netns tests.</summary>
public sealed class WgConfigTextTests
{
    [Fact]
    public void Config_for_wg_syncconf_spells_out_every_setting()
    {
        var key = WireGuardKey.Generate();
        var peer = WireGuardKey.Generate();
        var other = WireGuardKey.Generate();
        var config = new DeviceConfig(key.PrivateKey, 51820, 0,
        [
            new DevicePeerConfig(peer.PublicKey, new IPEndPoint(IPAddress.Parse("192.0.2.1"), 51821), ["10.0.0.2/32", "fd00::2/128"], 25),
            new DevicePeerConfig(other.PublicKey, null, [], 0),
        ]);

        var text = WgConfigText.Format(config);

        Assert.Equal(
            "[Interface]\n" +
            $"PrivateKey = {Convert.ToBase64String(key.PrivateKey)}\n" +
            "ListenPort = 51820\n" +
            "FwMark = off\n" +
            "\n[Peer]\n" +
            $"PublicKey = {peer.PublicKeyBase64}\n" +
            "Endpoint = 192.0.2.1:51821\n" +
            "AllowedIPs = 10.0.0.2/32, fd00::2/128\n" +
            "PersistentKeepalive = 25\n" +
            "\n[Peer]\n" +
            $"PublicKey = {other.PublicKeyBase64}\n" +
            "PersistentKeepalive = off\n",
            text);
    }

    [Fact]
    public void Peers_kept_for_a_first_syncconf_are_named_by_key_only_before_the_others()
    {
        var key = WireGuardKey.Generate();
        var leaving = WireGuardKey.Generate();
        var taking = WireGuardKey.Generate();
        var config = new DeviceConfig(key.PrivateKey, 0, 0, [new DevicePeerConfig(taking.PublicKey, null, ["0.0.0.0/0"], 25)]);

        var text = WgConfigText.Format(config, keeping: [leaving.PublicKey]);

        Assert.Equal(
            "[Interface]\n" +
            $"PrivateKey = {Convert.ToBase64String(key.PrivateKey)}\n" +
            "FwMark = off\n" +
            "\n[Peer]\n" +
            $"PublicKey = {leaving.PublicKeyBase64}\n" +
            "\n[Peer]\n" +
            $"PublicKey = {taking.PublicKeyBase64}\n" +
            "AllowedIPs = 0.0.0.0/0\n" +
            "PersistentKeepalive = 25\n",
            text);
    }

    [Fact]
    public void Config_sets_the_fwmark_of_a_full_tunnel_and_leaves_out_an_unset_port()
    {
        var text = WgConfigText.Format(new DeviceConfig(WireGuardKey.Generate().PrivateKey, 0, 51820, []));

        Assert.Contains("FwMark = 51820\n", text);
        Assert.DoesNotContain("ListenPort", text);
    }

    [Fact]
    public void Dump_is_parsed_into_device_and_peers()
    {
        var key = WireGuardKey.Generate();
        var peer = WireGuardKey.Generate();
        var fresh = WireGuardKey.Generate();
        var dump =
            $"{Convert.ToBase64String(key.PrivateKey)}\t{key.PublicKeyBase64}\t51820\t0xca6c\n" +
            $"{peer.PublicKeyBase64}\t(none)\t192.0.2.1:51821\t10.0.0.2/32,fd00::2/128\t1700000000\t5678\t1234\t25\n" +
            $"{fresh.PublicKeyBase64}\t(none)\t(none)\t(none)\t0\t0\t0\toff\n";

        var state = WgConfigText.ParseDump(dump);

        Assert.Equal(key.PrivateKey, state.PrivateKey);
        Assert.Equal(key.PublicKey, state.PublicKey);
        Assert.Equal(51820, state.ListenPort);
        Assert.Equal(51820, state.FirewallMark);
        var first = state.Peers[0];
        Assert.Equal(peer.PublicKey, first.PublicKey);
        Assert.Equal("192.0.2.1:51821", first.Endpoint);
        Assert.Equal(["10.0.0.2/32", "fd00::2/128"], first.AllowedIps.AsEnumerable());
        Assert.Equal(DateTimeOffset.FromUnixTimeSeconds(1700000000), first.LastHandshake);
        Assert.Equal(5678UL, first.RxBytes);
        Assert.Equal(1234UL, first.TxBytes);
        Assert.Equal(25, first.PersistentKeepalive);
        var second = state.Peers[1];
        Assert.Null(second.Endpoint);
        Assert.Null(second.LastHandshake);
        Assert.Empty(second.AllowedIps);
        Assert.Equal(0, second.PersistentKeepalive);
    }

    [Fact]
    public void Dump_of_a_device_without_key_or_mark_is_parsed()
    {
        // What `wg show NAME dump` printed here for a fresh wireguard-go device with one peer.
        var state = WgConfigText.ParseDump("(none)\t(none)\t51000\t0xca6c\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE=\t(none)\t(none)\t10.0.0.2/32\t0\t0\t0\toff\n");

        Assert.Null(state.PrivateKey);
        Assert.Null(state.PublicKey);
        Assert.Equal(51820, state.FirewallMark);
        Assert.Single(state.Peers);
        Assert.Equal(0, WgConfigText.ParseDump("(none)\t(none)\t0\toff\n").FirewallMark);
    }

    [Fact]
    public void Malformed_dump_is_refused()
    {
        Assert.Throws<FormatException>(() => WgConfigText.ParseDump(""));
        Assert.Throws<FormatException>(() => WgConfigText.ParseDump("a\tb\n"));
    }
}
