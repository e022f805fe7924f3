using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using MyDvpn.Common;

namespace MyDvpn.SuperNode.Exits;

/// <summary>
/// Tunnel addresses of a region: the pool is cut into exit subnets of one prefix length; in subnet n the exit is host
/// 1 and clients are hosts 2 … (size − 2). The pool's journal stores only indexes, this turns them into addresses.
/// </summary>
public sealed class TunnelAddressing
{
    private readonly uint poolBase;
    private readonly int poolPrefix;

    private TunnelAddressing(uint poolBase, int poolPrefix, int subnetPrefix)
    {
        this.poolBase = poolBase;
        this.poolPrefix = poolPrefix;
        SubnetPrefixLength = subnetPrefix;
    }

    public int SubnetPrefixLength { get; }

    /// <summary>How many exit subnets the pool holds.</summary>
    public long SubnetCount => 1L << (SubnetPrefixLength - poolPrefix);

    /// <summary>The highest client host index of a subnet (the last address is its broadcast, left unused).</summary>
    public int LastClientHost => (int)((1L << (32 - SubnetPrefixLength)) - 2);

    /// <summary>Clients one subnet can hold.</summary>
    public int ClientsPerSubnet => LastClientHost - 1;

    private const string TunnelPoolSetting = nameof(ExitSettings.TunnelPool);

    public const int ExitHost = 1;
    public const int FirstClientHost = 2;

    /// <exception cref="ArgumentException">Not an IPv4 CIDR, one that overlaps a reserved block, or the subnets do not fit in it.</exception>
    public static TunnelAddressing Parse(string pool, int subnetPrefixLength)
    {
        if (!IPNetwork.TryParse(pool, out var network) || network.BaseAddress.AddressFamily != AddressFamily.InterNetwork)
            throw new ArgumentException($"Super:Exits:TunnelPool '{pool}' is not an IPv4 CIDR such as 100.96.0.0/12.", TunnelPoolSetting);
        if (!IPAddress.TryParse(pool.AsSpan(0, pool.IndexOf('/')), out var given) || !given.Equals(network.BaseAddress))
            throw new ArgumentException($"Super:Exits:TunnelPool '{pool}' has host bits set; did you mean {network}?", TunnelPoolSetting);
        // Agents refuse every command whose subnet touches a reserved block (TunnelRules): such a pool could serve nobody.
        if (ReservedAddresses.Overlapped(new Cidr(network.BaseAddress, network.PrefixLength)) is { } reserved)
            throw new ArgumentException(
                $"Super:Exits:TunnelPool '{pool}' overlaps {reserved}: agents refuse tunnel subnets there. Use private or CGNAT space such as 100.96.0.0/12.",
                TunnelPoolSetting);
        if (subnetPrefixLength < network.PrefixLength || subnetPrefixLength > 30)
            throw new ArgumentException(
                $"Super:Exits:SubnetPrefixLength {subnetPrefixLength} must be between the pool's prefix /{network.PrefixLength} and /30 (an exit and at least one client).",
                nameof(ExitSettings.SubnetPrefixLength));
        return new TunnelAddressing(BinaryPrimitives.ReadUInt32BigEndian(network.BaseAddress.GetAddressBytes()), network.PrefixLength, subnetPrefixLength);
    }

    public IPAddress Address(int subnet, int host)
    {
        if (host < ExitHost || host > LastClientHost)
            throw new ArgumentOutOfRangeException(nameof(host), host, $"hosts run from {ExitHost} to {LastClientHost}");
        return ToAddress(NetworkValue(subnet) + (uint)host);
    }

    private IPAddress Network(int subnet) => ToAddress(NetworkValue(subnet));

    private uint NetworkValue(int subnet)
    {
        if (subnet < 0 || subnet >= SubnetCount)
            throw new ArgumentOutOfRangeException(nameof(subnet), subnet, $"the pool holds {SubnetCount} subnets");
        return poolBase + ((uint)subnet << (32 - SubnetPrefixLength));
    }

    private static IPAddress ToAddress(uint value)
    {
        var bytes = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(bytes, value);
        return new IPAddress(bytes);
    }

    /// <summary>The subnet as CIDR, e.g. 100.96.3.0/24.</summary>
    public string Subnet(int subnet) => $"{Network(subnet)}/{SubnetPrefixLength}";

    /// <summary>The exit's own address with the subnet's prefix, e.g. 100.96.3.1/24.</summary>
    public string ExitAddress(int subnet) => $"{Address(subnet, ExitHost)}/{SubnetPrefixLength}";

    /// <summary>A client's address as a host route, e.g. 100.96.3.2/32.</summary>
    public string ClientAddress(int subnet, int host) => $"{Address(subnet, host)}/32";
}
