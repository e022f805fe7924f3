using System.Net;

namespace MyDvpn.Testbed;

/// <summary>The roles of a testbed's namespaces. A namespace is named <c>{testbed id}-{role}</c>, e.g. <c>tb1a2b3c-sn-a</c>.</summary>
public static class TestbedRoles
{
    /// <summary>The router: a bridge holding 198.51.100.1/24 that every public host is plugged into, and the HTTP echo server.</summary>
    public const string Internet = "internet";
    public const string Base = "base";
    public const string SnA = "sn-a";
    public const string SnB = "sn-b";

    /// <summary>A second SuperNode host of the exit's region, for a region of two or three SuperNodes (sharing a PostgreSQL journal).</summary>
    public const string SnB2 = "sn-b2";

    /// <summary>A third SuperNode host of the exit's region: a region of three survives the crash of any one.</summary>
    public const string SnB3 = "sn-b3";

    /// <summary>The NAT in front of <see cref="Exit"/>: masquerade plus a port forward of UDP 51820 to the exit.</summary>
    public const string ExitNat = "exit-nat";
    public const string Exit = "exit";

    /// <summary>The NAT in front of <see cref="Client"/>: masquerade only.</summary>
    public const string ClientNat = "client-nat";
    public const string Client = "client";

    /// <summary>The NAT in front of <see cref="Exit2"/>, like <see cref="ExitNat"/>: masquerade plus a port forward of UDP 51820.</summary>
    public const string Exit2Nat = "exit2-nat";

    /// <summary>A second exit host of the exit's region (failover tests); built only when a testbed is asked for it.</summary>
    public const string Exit2 = "exit2";

    /// <summary>The roles of every testbed.</summary>
    public static IReadOnlyList<string> Default { get; } = [Internet, Base, SnA, SnB, SnB2, SnB3, ExitNat, Exit, ClientNat, Client];

    /// <summary>The roles built only for a testbed with a second exit.</summary>
    public static IReadOnlyList<string> SecondExit { get; } = [Exit2Nat, Exit2];

    /// <summary>Every role a testbed's namespace may have (how leftovers are recognised).</summary>
    public static IReadOnlyList<string> All { get; } = [.. Default, .. SecondExit];
}

/// <summary>The fixed addressing of every testbed (each testbed lives in namespaces of its own, so they never clash).</summary>
public static class TestbedAddresses
{
    /// <summary>The "internet" 198.51.100.0/24 (TEST-NET-2).</summary>
    public const int PublicPrefixLength = 24;

    /// <summary>The router on the internet bridge, default gateway of every public host, and the HTTP echo server.</summary>
    public static readonly IPAddress Router = IPAddress.Parse("198.51.100.1");
    public static readonly IPAddress Base = IPAddress.Parse("198.51.100.10");
    public static readonly IPAddress SnA = IPAddress.Parse("198.51.100.11");
    public static readonly IPAddress SnB = IPAddress.Parse("198.51.100.12");
    public static readonly IPAddress SnB2 = IPAddress.Parse("198.51.100.13");
    public static readonly IPAddress SnB3 = IPAddress.Parse("198.51.100.14");
    public static readonly IPAddress ExitNatPublic = IPAddress.Parse("198.51.100.20");
    public static readonly IPAddress ClientNatPublic = IPAddress.Parse("198.51.100.21");
    public static readonly IPAddress Exit2NatPublic = IPAddress.Parse("198.51.100.22");

    /// <summary>The LANs behind the NATs are /24s.</summary>
    public const int LanPrefixLength = 24;

    /// <summary>10.1.0.0/24: the exit NAT's LAN side.</summary>
    public static readonly IPAddress ExitNatLan = IPAddress.Parse("10.1.0.1");
    public static readonly IPAddress Exit = IPAddress.Parse("10.1.0.2");
    public static readonly IPAddress ExitLanNetwork = IPAddress.Parse("10.1.0.0");

    /// <summary>10.2.0.0/24: the client NAT's LAN side.</summary>
    public static readonly IPAddress ClientNatLan = IPAddress.Parse("10.2.0.1");
    public static readonly IPAddress Client = IPAddress.Parse("10.2.0.2");
    public static readonly IPAddress ClientLanNetwork = IPAddress.Parse("10.2.0.0");

    /// <summary>10.3.0.0/24: the second exit NAT's LAN side (a testbed with a second exit only).</summary>
    public static readonly IPAddress Exit2NatLan = IPAddress.Parse("10.3.0.1");
    public static readonly IPAddress Exit2 = IPAddress.Parse("10.3.0.2");
    public static readonly IPAddress Exit2LanNetwork = IPAddress.Parse("10.3.0.0");

    /// <summary>The HTTP echo server's port on <see cref="Router"/>.</summary>
    public const int EchoPort = 80;

    /// <summary>The exit's WireGuard port; the exit NAT forwards UDP to this port on its public address to the exit.</summary>
    public const int ExitWireGuardPort = 51820;
}

/// <summary>The namespace names of one testbed.</summary>
/// <param name="SecondExit">The testbed also has <see cref="TestbedRoles.SecondExit"/>'s namespaces.</param>
public sealed record TestbedNamespaces(string TestbedId, bool SecondExit = false)
{
    public string Internet => Name(TestbedRoles.Internet);
    public string Base => Name(TestbedRoles.Base);
    public string SnA => Name(TestbedRoles.SnA);
    public string SnB => Name(TestbedRoles.SnB);
    public string SnB2 => Name(TestbedRoles.SnB2);
    public string SnB3 => Name(TestbedRoles.SnB3);
    public string ExitNat => Name(TestbedRoles.ExitNat);
    public string Exit => Name(TestbedRoles.Exit);
    public string ClientNat => Name(TestbedRoles.ClientNat);
    public string Client => Name(TestbedRoles.Client);
    public string Exit2Nat => Name(TestbedRoles.Exit2Nat);
    public string Exit2 => Name(TestbedRoles.Exit2);

    /// <summary>The roles this testbed has: <see cref="TestbedRoles.Default"/>, and <see cref="TestbedRoles.SecondExit"/> with a second exit.</summary>
    public IReadOnlyList<string> Roles => SecondExit ? TestbedRoles.All : TestbedRoles.Default;

    /// <summary>Every namespace of this testbed, in <see cref="Roles"/> order.</summary>
    public IReadOnlyList<string> All => [.. Roles.Select(Name)];

    /// <summary>The namespace of a role (<see cref="TestbedRoles"/>) this testbed has.</summary>
    public string Name(string role) =>
        Roles.Contains(role)
            ? $"{TestbedId}-{role}"
            : TestbedRoles.All.Contains(role)
                ? throw new ArgumentException($"testbed {TestbedId} has no '{role}': that role is built only for a testbed with a second exit", nameof(role))
                : throw new ArgumentException($"'{role}' is not a testbed role (roles: {string.Join(", ", TestbedRoles.All)})", nameof(role));

    /// <summary>A role ("sn-a") or one of this testbed's namespace names ("tb1a2b3c-sn-a") → the namespace name.</summary>
    public string Resolve(string roleOrNamespace)
    {
        ArgumentException.ThrowIfNullOrEmpty(roleOrNamespace);
        if (TestbedRoles.All.Contains(roleOrNamespace))
            return Name(roleOrNamespace);
        if (All.Contains(roleOrNamespace))
            return roleOrNamespace;
        throw new ArgumentException(
            $"'{roleOrNamespace}' is neither a testbed role ({string.Join(", ", Roles)}) nor a namespace of testbed {TestbedId}",
            nameof(roleOrNamespace));
    }

    /// <summary>The role of one of this testbed's namespaces (or the role itself).</summary>
    public string RoleOf(string roleOrNamespace) => Resolve(roleOrNamespace)[(TestbedId.Length + 1)..];
}
