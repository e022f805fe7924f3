using MyDvpn.Common;
using MyDvpn.Peer.Control;

namespace MyDvpn.Peer.Tests;

public sealed class SuperNodeRotationTests
{
    private static readonly HostPort A = new("10.0.0.1", 7443), B = new("10.0.0.2", 7443), C = new("10.0.0.3", 7443), D = new("10.0.0.4", 7443);

    [Fact]
    public void First_configured_supernode_is_dialled_first_and_failures_move_on_in_turn()
    {
        var rotation = new SuperNodeRotation([A, B]);

        Assert.Equal(A, rotation.Current);
        rotation = rotation.MoveNext();
        Assert.Equal(B, rotation.Current);
        rotation = rotation.MoveNext();
        Assert.Equal(A, rotation.Current);
    }

    [Fact]
    public void Region_supernodes_are_added_after_the_configured_ones_and_the_current_one_stays_current()
    {
        var rotation = new SuperNodeRotation([A, B]);
        rotation = rotation.MoveNext();

        rotation = rotation.Learn([C, A]);

        Assert.Equal([A, B, C], rotation.Endpoints);
        Assert.Equal(B, rotation.Current);
        rotation = rotation.MoveNext();
        Assert.Equal(C, rotation.Current);
    }

    [Fact]
    public void Latest_region_list_replaces_the_learned_one_but_never_drops_the_configured_or_current_supernode()
    {
        var rotation = new SuperNodeRotation([A]);
        rotation = rotation.Learn([B, C]);
        rotation = rotation.MoveNext();
        rotation = rotation.MoveNext();
        Assert.Equal(C, rotation.Current);

        rotation = rotation.Learn([D]);

        Assert.Equal(C, rotation.Current);
        Assert.Equal([C, A, D], rotation.Endpoints);
    }
}
