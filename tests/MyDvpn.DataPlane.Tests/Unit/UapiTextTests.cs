using System.Net;
using MyDvpn.DataPlane.Devices;
using MyDvpn.Security;

namespace MyDvpn.DataPlane.Tests.Unit;

public sealed class UapiTextTests
{
    private static readonly byte[] Private = Key(0x11);
    private static readonly byte[] PeerA = Key(0xaa);
    private static readonly byte[] PeerB = Key(0xbb);
    private static readonly byte[] PeerC = Key(0xcc);

    private static byte[] Key(byte fill) => Enumerable.Repeat(fill, 32).ToArray();

    private static string Hex(byte fill) => string.Concat(Enumerable.Repeat(fill.ToString("x2"), 32));

    [Fact]
    public void Set_request_names_only_what_changes_peer_by_peer()
    {
        var change = new DeviceChange(
            Private, 51820, 51820,
            [PeerA],
            [new DevicePeerConfig(PeerB, new IPEndPoint(IPAddress.Parse("192.0.2.1"), 51821), ["10.0.0.2/32", "fd00::2/128"], 25)],
            [new PeerUpdate(PeerC, null, null, ["10.0.0.3/32"])]);

        var text = UapiText.FormatSet(change);

        Assert.Equal(
            "set=1\n" +
            $"private_key={Hex(0x11)}\n" +
            "listen_port=51820\n" +
            "fwmark=51820\n" +
            $"public_key={Hex(0xbb)}\nprotocol_version=1\nendpoint=192.0.2.1:51821\npersistent_keepalive_interval=25\n" +
            "replace_allowed_ips=true\nallowed_ip=10.0.0.2/32\nallowed_ip=fd00::2/128\n" +
            $"public_key={Hex(0xcc)}\nupdate_only=true\nreplace_allowed_ips=true\nallowed_ip=10.0.0.3/32\n" +
            $"public_key={Hex(0xaa)}\nremove=true\n" +
            "\n",
            text);
        Assert.DoesNotContain("replace_peers", text);
    }

    [Fact]
    public void A_peer_that_replaces_another_takes_its_allowed_ips_before_the_other_is_removed()
    {
        // A client moving from exit A to exit B: B gets 0.0.0.0/0 (moving it off A), then A goes.
        var text = UapiText.FormatSet(DeviceChange.None with
        {
            RemovedPeers = [PeerA],
            AddedPeers = [new DevicePeerConfig(PeerB, new IPEndPoint(IPAddress.Parse("192.0.2.2"), 51820), ["0.0.0.0/0"], 25)],
        });

        Assert.True(text.IndexOf($"public_key={Hex(0xbb)}", StringComparison.Ordinal) < text.IndexOf($"public_key={Hex(0xaa)}", StringComparison.Ordinal));
        Assert.EndsWith($"allowed_ip=0.0.0.0/0\npublic_key={Hex(0xaa)}\nremove=true\n\n", text, StringComparison.Ordinal);
    }

    [Fact]
    public void A_restarted_peer_is_removed_then_set_anew_with_its_whole_config()
    {
        var text = UapiText.FormatSet(DeviceChange.None with
        {
            RestartedPeers = [new DevicePeerConfig(PeerA, new IPEndPoint(IPAddress.Parse("192.0.2.9"), 42001), ["0.0.0.0/0"], 25)],
        });

        Assert.Equal($"set=1\npublic_key={Hex(0xaa)}\nremove=true\npublic_key={Hex(0xaa)}\nprotocol_version=1\nendpoint=192.0.2.9:42001\n"
                     + "persistent_keepalive_interval=25\nreplace_allowed_ips=true\nallowed_ip=0.0.0.0/0\n\n", text);
    }

    [Fact]
    public void An_updated_peer_sets_only_its_changed_keys()
    {
        var text = UapiText.FormatSet(DeviceChange.None with
        {
            ChangedPeers = [new PeerUpdate(PeerA, new IPEndPoint(IPAddress.Parse("2001:db8::1"), 443), 0, null)],
        });

        Assert.Equal($"set=1\npublic_key={Hex(0xaa)}\nupdate_only=true\nendpoint=[2001:db8::1]:443\npersistent_keepalive_interval=0\n\n", text);
    }

    [Fact]
    public void Get_answer_is_parsed_into_device_and_peers()
    {
        var key = WireGuardKey.Generate();
        var answer =
            $"private_key={Convert.ToHexStringLower(key.PrivateKey)}\n" +
            "listen_port=51820\n" +
            "fwmark=51820\n" +
            $"public_key={Hex(0xaa)}\n" +
            "preshared_key=0000000000000000000000000000000000000000000000000000000000000000\n" +
            "protocol_version=1\n" +
            "endpoint=192.0.2.7:40000\n" +
            "last_handshake_time_sec=1700000000\n" +
            "last_handshake_time_nsec=500000000\n" +
            "tx_bytes=1234\n" +
            "rx_bytes=5678\n" +
            "persistent_keepalive_interval=25\n" +
            "allowed_ip=10.0.0.2/32\n" +
            "allowed_ip=fd00::2/128\n" +
            $"public_key={Hex(0xbb)}\n" +
            "protocol_version=1\n" +
            "last_handshake_time_sec=0\n" +
            "last_handshake_time_nsec=0\n" +
            "tx_bytes=0\n" +
            "rx_bytes=0\n" +
            "persistent_keepalive_interval=0\n" +
            "errno=0\n\n";

        var state = UapiText.ParseGet(answer, "wg0");

        Assert.Equal(key.PrivateKey, state.PrivateKey);
        Assert.Equal(key.PublicKey, state.PublicKey);
        Assert.Equal(51820, state.ListenPort);
        Assert.Equal(51820, state.FirewallMark);
        Assert.Equal(2, state.Peers.Count);
        var a = state.Peers[0];
        Assert.Equal(PeerA, a.PublicKey);
        Assert.Equal("192.0.2.7:40000", a.Endpoint);
        Assert.Equal(DateTimeOffset.FromUnixTimeSeconds(1700000000).AddMilliseconds(500), a.LastHandshake);
        Assert.Equal(5678UL, a.RxBytes);
        Assert.Equal(1234UL, a.TxBytes);
        Assert.Equal(25, a.PersistentKeepalive);
        Assert.Equal(["10.0.0.2/32", "fd00::2/128"], a.AllowedIps.AsEnumerable());
        var b = state.Peers[1];
        Assert.Null(b.Endpoint);
        Assert.Null(b.LastHandshake);
        Assert.Empty(b.AllowedIps);
    }

    [Fact]
    public void Get_answer_of_a_fresh_device_has_no_key()
    {
        var state = UapiText.ParseGet("listen_port=51936\nerrno=0\n\n", "wg0");

        Assert.Null(state.PrivateKey);
        Assert.Null(state.PublicKey);
        Assert.Equal(51936, state.ListenPort);
        Assert.Empty(state.Peers);
    }

    [Theory]
    [InlineData("errno=-22\n\n", -22)]
    [InlineData("errno=22\n\n", 22)]
    [InlineData("listen_port=1\nerrno=-5\n\n", -5)]
    public void Nonzero_errno_is_an_error_that_carries_the_number(string answer, long errno)
    {
        var error = Assert.Throws<UapiException>(() => UapiText.ParseGet(answer, "wg0"));

        Assert.Equal(errno, error.Errno);
        Assert.Contains($"errno={errno}", error.Message);
        Assert.Contains("wg0", error.Message);
    }

    [Fact]
    public void Set_answer_errno_is_read()
    {
        Assert.Equal(0, UapiText.ParseErrno("errno=0\n\n"));
        Assert.Equal(-22, UapiText.ParseErrno("errno=-22\n\n"));
        Assert.Throws<FormatException>(() => UapiText.ParseErrno("\n"));
    }

    [Fact]
    public void Change_description_never_shows_the_private_key()
    {
        var change = DeviceChange.None with { PrivateKey = Private, RemovedPeers = [PeerA] };

        var text = change.ToString();

        Assert.Contains("private key", text);
        Assert.DoesNotContain(Convert.ToBase64String(Private), text);
        Assert.Contains("removed", text);
    }
}
