namespace MyDvpn.Common;

/// <summary>
/// IPv4 blocks no tunnel subnet may touch: "this network", loopback, link-local, multicast and the reserved block with
/// the broadcast address. The SuperNode refuses a tunnel pool that overlaps one at startup; agents refuse a command
/// whose exit subnet does (both ask <see cref="Overlapped"/>).
/// </summary>
public static class ReservedAddresses
{
    public static readonly IReadOnlyList<(Cidr Block, string Name)> Ipv4 =
    [
        (Cidr.Parse("0.0.0.0/8"), "'this network' (0.0.0.0/8)"),
        (Cidr.Parse("127.0.0.0/8"), "loopback (127.0.0.0/8)"),
        (Cidr.Parse("169.254.0.0/16"), "link-local (169.254.0.0/16)"),
        (Cidr.Parse("224.0.0.0/4"), "multicast (224.0.0.0/4)"),
        (Cidr.Parse("240.0.0.0/4"), "reserved and broadcast (240.0.0.0/4)"),
    ];

    /// <summary>The name of the first reserved block <paramref name="network"/> overlaps (inside it or holding it); null: none.</summary>
    public static string? Overlapped(Cidr network)
    {
        foreach (var (block, name) in Ipv4)
        {
            if (block.Contains(network) || network.Contains(block))
                return name;
        }
        return null;
    }
}
