using MyDvpn.HostOs;

namespace MyDvpn.DataPlane.Tests.Netns;

/// <summary>The tests that drive real wireguard-go in network namespaces: one at a time (they share the host's
/// process table and /var/run/wireguard), after one sweep of what earlier runs left.</summary>
[CollectionDefinition(Name)]
public sealed class NetnsCollection : ICollectionFixture<NetnsRequirements>
{
    public const string Name = "network namespaces";
}

/// <summary>
/// Checks once that these tests can run here — root, wireguard-go, wg, nft, ip, ping, /dev/net/tun — and fails every one
/// of them with the reason when not (never a silent pass or skip). Then removes leftovers of earlier runs (namespaces
/// <c>dp-*</c>, wireguard-go for <c>dpw*</c>).
/// </summary>
public sealed class NetnsRequirements
{
    public NetnsRequirements()
    {
        var problems = new List<string>();
        if (!OperatingSystem.IsLinux())
            problems.Add("they need Linux");
        else
        {
            var uid = Run("id", "-u");
            if (uid?.Trim() != "0")
                problems.Add($"they need root (running as uid {uid?.Trim() ?? "?"}): network namespaces, TUN devices and nftables need CAP_NET_ADMIN");
            foreach (var (program, argument) in new[] { ("wireguard-go", "--version"), ("wg", "--version"), ("nft", "--version"), ("ip", "-V"), ("ping", "-V"), ("sysctl", "--version") })
            {
                if (Run(program, argument) is null)
                    problems.Add($"`{program}` is missing or does not run (install wireguard-go, wireguard-tools, nftables, iproute2, iputils-ping, procps)");
            }
            if (!File.Exists("/dev/net/tun"))
                problems.Add("/dev/net/tun does not exist (wireguard-go needs TUN)");
        }
        if (problems.Count > 0)
            throw new InvalidOperationException("The network-namespace data-plane tests cannot run here: " + string.Join("; ", problems));

        NetnsLab.RemoveLeftoversOfEarlierRunsAsync().GetAwaiter().GetResult();
    }

    private static string? Run(string program, string argument)
    {
        try
        {
            var result = HostCommand.Host.RunAsync(program, [argument]).GetAwaiter().GetResult();
            return result.Succeeded ? result.StandardOutput : null;
        }
        catch (HostCommandException)
        {
            return null;
        }
    }
}
