using System.Globalization;
using System.Runtime.InteropServices;

namespace MyDvpn.Testbed;

/// <summary>What a machine needs to host a testbed, checked up front so a failure says how to fix it.</summary>
public static class Prerequisites
{
    private const int CapNetAdmin = 12;
    private const int CapSysAdmin = 21;

    /// <summary>The programs every testbed runs, with the Debian package that has each.</summary>
    public static IReadOnlyList<(string Program, string Package)> Tools { get; } =
        [("ip", "iproute2"), ("nft", "nftables"), ("sysctl", "procps")];

    /// <exception cref="TestbedPrerequisiteException">Not Linux, not privileged, or a program is missing.</exception>
    public static void Check()
    {
        if (!OperatingSystem.IsLinux())
            throw new TestbedPrerequisiteException(
                $"the testbed needs Linux network namespaces, veth pairs and nftables; this is {RuntimeInformation.OSDescription}");

        var missing = MissingCapabilities(File.ReadAllText("/proc/self/status"));
        if (missing.Count > 0)
            throw new TestbedPrerequisiteException(
                $"the testbed needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN): it creates network namespaces, veth pairs, a bridge "
                + $"and nftables rules, and enters namespaces with setns(2) to open sockets in them. This process "
                + $"({(Environment.IsPrivilegedProcess ? "root" : "not root")}) lacks {string.Join(" and ", missing)}; "
                + "run it as root, e.g. `sudo dotnet test tests/MyDvpn.NetnsTests`");

        foreach (var (program, package) in Tools)
            RequireTool(program, package);
    }

    /// <exception cref="TestbedPrerequisiteException"><paramref name="program"/> is not on PATH.</exception>
    public static void RequireTool(string program, string package)
    {
        if (FindOnPath(program) is null)
            throw new TestbedPrerequisiteException(
                $"the testbed needs `{program}`, which is not on PATH ({Environment.GetEnvironmentVariable("PATH")}): "
                + $"install the Debian package {package} (apt-get install {package})");
    }

    /// <summary>The capabilities a testbed needs that the effective set in a /proc/PID/status text lacks.</summary>
    public static IReadOnlyList<string> MissingCapabilities(string procStatus)
    {
        var line = procStatus.Split('\n').FirstOrDefault(l => l.StartsWith("CapEff:", StringComparison.Ordinal));
        if (line is null || !ulong.TryParse(line["CapEff:".Length..].Trim(), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var effective))
            return ["CAP_NET_ADMIN", "CAP_SYS_ADMIN"];
        var missing = new List<string>();
        if ((effective & (1UL << CapNetAdmin)) == 0)
            missing.Add("CAP_NET_ADMIN");
        if ((effective & (1UL << CapSysAdmin)) == 0)
            missing.Add("CAP_SYS_ADMIN");
        return missing;
    }

    /// <summary>The Debian packages that hold the programs of <paramref name="tools"/> not on PATH, each once.</summary>
    public static IReadOnlyList<string> MissingPackages(IEnumerable<(string Program, string Package)> tools) =>
        [.. tools.Where(t => FindOnPath(t.Program) is null).Select(t => t.Package).Distinct(StringComparer.Ordinal)];

    /// <summary>Whether this process has what a testbed needs of the kernel (CAP_NET_ADMIN and CAP_SYS_ADMIN).</summary>
    public static bool IsPrivileged() => MissingCapabilities(File.ReadAllText("/proc/self/status")).Count == 0;

    public static string? FindOnPath(string program) => MyDvpn.HostOs.HostCommand.FindOnPath(program);
}
