using System.Net;
using MyDvpn.DataPlane.Devices;

namespace MyDvpn.DataPlane.Tests.Unit;

public sealed class DeviceDiffTests
{
    private static readonly byte[] Private = Key(1);
    private static readonly byte[] A = Key(0xa);
    private static readonly byte[] B = Key(0xb);
    private static readonly byte[] C = Key(0xc);
    private static readonly IPEndPoint Endpoint = new(IPAddress.Parse("192.0.2.1"), 51820);
    private static readonly DateTimeOffset Handshake = DateTimeOffset.UnixEpoch.AddDays(1);

    /// <summary>The peers' sessions are live: their handshake was 10 s ago.</summary>
    private static readonly DateTimeOffset Now = Handshake + TimeSpan.FromSeconds(10);

    private static byte[] Key(byte fill) => Enumerable.Repeat(fill, 32).ToArray();

    private static DevicePeerState Have(byte[] key, string? endpoint = "192.0.2.1:51820", int keepalive = 25, params string[] allowed) =>
        new(key, endpoint, Handshake, 10, 20, keepalive, [.. allowed]);

    private static DevicePeerConfig Want(byte[] key, IPEndPoint? endpoint = null, int keepalive = 25, params string[] allowed) =>
        new(key, endpoint, [.. allowed], keepalive);

    private static DeviceState Device(params DevicePeerState[] peers) => new(Private, null, 51820, 0, [.. peers]);

    private static DeviceConfig Config(params DevicePeerConfig[] peers) => new(Private, 51820, 0, [.. peers]);

    [Fact]
    public void Unchanged_device_needs_no_change()
    {
        var change = DeviceDiff.Compute(
            Config(Want(A, Endpoint, 25, "10.0.0.2/32")),
            Device(Have(A, "192.0.2.1:51820", 25, "10.0.0.2/32")), Now);

        Assert.True(change.IsEmpty);
    }

    [Fact]
    public void Peers_are_added_removed_and_changed_individually()
    {
        var change = DeviceDiff.Compute(
            Config(Want(A, null, 25, "10.0.0.2/32"), Want(C, null, 0, "10.0.0.4/32"), Want(B, null, 25, "10.0.0.9/32")),
            Device(Have(A, allowed: "10.0.0.2/32"), Have(B, allowed: "10.0.0.3/32"), Have(Key(0xd), allowed: "10.0.0.5/32")), Now);

        Assert.Equal([Key(0xd)], change.RemovedPeers);
        Assert.Equal([C], change.AddedPeers.Select(p => p.PublicKey));
        var update = Assert.Single(change.ChangedPeers);
        Assert.Equal(B, update.PublicKey);
        Assert.Equal(["10.0.0.9/32"], update.AllowedIps!.Value.AsEnumerable());
        Assert.Null(update.Endpoint);
        Assert.Null(update.PersistentKeepalive);
        // A is untouched: not removed, not re-added, not updated.
        Assert.DoesNotContain(change.ChangedPeers, p => p.PublicKey.SequenceEqual(A));
    }

    [Fact]
    public void A_desired_endpoint_is_compared_but_an_unset_one_lets_the_peer_roam()
    {
        var roamed = Device(Have(A, "198.51.100.9:40000", 25, "10.0.0.2/32"));

        Assert.True(DeviceDiff.Compute(Config(Want(A, null, 25, "10.0.0.2/32")), roamed, Now).IsEmpty);
        var change = DeviceDiff.Compute(Config(Want(A, Endpoint, 25, "10.0.0.2/32")), roamed, Now);
        Assert.Equal(Endpoint, Assert.Single(change.ChangedPeers).Endpoint);
    }

    [Theory]
    [InlineData(null)]
    [InlineData(180)]
    [InlineData(600)]
    public void A_peer_without_a_live_session_that_gets_a_new_endpoint_is_restarted_so_its_handshake_goes_at_once(int? handshakeSecondsAgo)
    {
        var have = Have(A, "198.51.100.9:51820", 25, "0.0.0.0/0") with { LastHandshake = handshakeSecondsAgo is { } ago ? Now - TimeSpan.FromSeconds(ago) : null };

        var change = DeviceDiff.Compute(Config(Want(A, Endpoint, 25, "0.0.0.0/0")), Device(have), Now);

        var restarted = Assert.Single(change.RestartedPeers);
        Assert.Equal((Endpoint, 25), (restarted.Endpoint, restarted.PersistentKeepalive));
        Assert.Equal(["0.0.0.0/0"], restarted.AllowedIps.AsEnumerable());
        Assert.Empty(change.ChangedPeers);
        Assert.Empty(change.AddedPeers);
        Assert.Empty(change.RemovedPeers);
        Assert.Contains("restarted on endpoint 192.0.2.1:51820", change.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void A_peer_with_a_live_session_just_moves_to_its_new_endpoint()
    {
        var have = Have(A, "198.51.100.9:51820", 25, "0.0.0.0/0") with { LastHandshake = Now - TimeSpan.FromSeconds(179) };

        var change = DeviceDiff.Compute(Config(Want(A, Endpoint, 25, "0.0.0.0/0")), Device(have), Now);

        Assert.Empty(change.RestartedPeers);
        Assert.Equal(Endpoint, Assert.Single(change.ChangedPeers).Endpoint);
    }

    [Fact]
    public void A_peer_moved_back_to_direct_whose_session_predates_the_move_is_restarted_once()
    {
        var movedAt = Now - TimeSpan.FromSeconds(1);
        var relayedSession = Have(A, "198.51.100.9:40000", 25, "0.0.0.0/0") with { LastHandshake = Now - TimeSpan.FromSeconds(30) };
        var want = Want(A, Endpoint, 25, "0.0.0.0/0") with { HandshakeNotBefore = movedAt };

        var change = DeviceDiff.Compute(Config(want), Device(relayedSession), Now);

        Assert.Equal(Endpoint, Assert.Single(change.RestartedPeers).Endpoint);
        Assert.Empty(change.ChangedPeers);
        // The restarted peer has no session yet, and one made after the move is kept: neither is restarted again.
        var restartedPeer = Have(A, "192.0.2.1:51820", 25, "0.0.0.0/0") with { LastHandshake = null };
        Assert.True(DeviceDiff.Compute(Config(want), Device(restartedPeer), Now).IsEmpty);
        var directSession = restartedPeer with { LastHandshake = Now };
        Assert.True(DeviceDiff.Compute(Config(want), Device(directSession), Now).IsEmpty);
    }

    [Fact]
    public void Keepalive_change_updates_only_the_keepalive()
    {
        var change = DeviceDiff.Compute(Config(Want(A, null, 0, "10.0.0.2/32")), Device(Have(A, allowed: "10.0.0.2/32")), Now);

        var update = Assert.Single(change.ChangedPeers);
        Assert.Equal(0, update.PersistentKeepalive);
        Assert.Null(update.AllowedIps);
    }

    [Fact]
    public void Allowed_ips_are_compared_as_a_set()
    {
        var change = DeviceDiff.Compute(
            Config(Want(A, null, 25, "10.0.0.3/32", "10.0.0.2/32")),
            Device(Have(A, allowed: ["10.0.0.2/32", "10.0.0.3/32"])), Now);

        Assert.True(change.IsEmpty);
    }

    [Fact]
    public void Device_settings_differ_only_where_asked()
    {
        var fresh = new DeviceState(null, null, 40000, 0, []);

        var change = DeviceDiff.Compute(new DeviceConfig(Private, 0, 51820, []), fresh, Now);

        Assert.Equal(Private, change.PrivateKey);
        Assert.Null(change.ListenPort); // 0: any port, the one the device picked is kept
        Assert.Equal(51820, change.FirewallMark);
    }

    [Fact]
    public void Another_private_key_is_set_again()
    {
        var change = DeviceDiff.Compute(new DeviceConfig(Key(2), 51820, 0, []), Device(), Now);

        Assert.Equal(Key(2), change.PrivateKey);
        Assert.Null(change.ListenPort);
    }
}
