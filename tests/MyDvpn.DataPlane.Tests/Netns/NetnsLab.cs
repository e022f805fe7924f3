using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.Json;
using MyDvpn.DataPlane.Os;
using MyDvpn.HostOs;

namespace MyDvpn.DataPlane.Tests.Netns;

/// <summary>
/// Network namespaces for one test: named <c>dp-&lt;id&gt;-&lt;role&gt;</c>, joined by veth pairs, with WireGuard
/// interfaces named <c>dpw&lt;id&gt;&lt;role&gt;</c> (interface names are global through wireguard-go's socket path).
/// <see cref="DisposeAsync"/> removes everything — wireguard-go processes, namespaces — even when the test failed, then
/// checks that nothing of it is left.
/// </summary>
internal sealed class NetnsLab : IAsyncDisposable
{
    public const string NamespacePrefix = "dp-";
    public const string InterfacePrefix = "dpw";
    public const string SocketDirectory = "/var/run/wireguard";

    private readonly List<string> namespaces = [];
    private readonly List<string> interfaces = [];
    private readonly HashSet<string> foreign = [];
    private int veths;

    public string Id { get; } = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(3));

    /// <summary>A new namespace with loopback up.</summary>
    public async Task<HostCommand> NamespaceAsync(string role)
    {
        var name = $"{NamespacePrefix}{Id}-{role}";
        await HostCommand.Host.RunCheckedAsync("ip", ["netns", "add", name]);
        namespaces.Add(name);
        var runner = HostCommand.Host.In(name);
        await runner.RunCheckedAsync("ip", ["link", "set", "lo", "up"]);
        return runner;
    }

    /// <summary>An interface name of this lab (up to 10 characters).</summary>
    public string Interface(string role)
    {
        var name = $"{InterfacePrefix}{Id}{role}";
        interfaces.Add(name);
        return name;
    }

    /// <summary>A veth pair between two namespaces, each end with an address and up; returns the two end names.</summary>
    public async Task<(string A, string B)> VethAsync(HostCommand a, string addressA, HostCommand b, string addressB)
    {
        var index = veths++;
        var (endA, endB) = ($"dpv{Id}{index}a", $"dpv{Id}{index}b");
        await HostCommand.Host.RunCheckedAsync("ip", ["link", "add", endA, "netns", a.Namespace!, "type", "veth", "peer", "name", endB, "netns", b.Namespace!]);
        await a.RunCheckedAsync("ip", ["addr", "add", addressA, "dev", endA]);
        await b.RunCheckedAsync("ip", ["addr", "add", addressB, "dev", endB]);
        await a.RunCheckedAsync("ip", ["link", "set", endA, "up"]);
        await b.RunCheckedAsync("ip", ["link", "set", endB, "up"]);
        return (endA, endB);
    }

    /// <summary>Pings until a reply comes or the deadline passes (the first packets may wait for a handshake).</summary>
    public static async Task<bool> PingAsync(HostCommand from, string address, TimeSpan within)
    {
        var clock = Stopwatch.StartNew();
        do
        {
            if ((await from.RunAsync("ping", ["-c", "2", "-W", "2", address])).Succeeded)
                return true;
        }
        while (clock.Elapsed < within);
        return false;
    }

    /// <summary>Polls <paramref name="condition"/> until it holds or the deadline passes.</summary>
    public static async Task<bool> EventuallyAsync(Func<Task<bool>> condition, TimeSpan within)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            if (await condition())
                return true;
            if (clock.Elapsed > within)
                return false;
            await Task.Delay(TimeSpan.FromMilliseconds(100));
        }
    }

    /// <summary>A link a test made under one of this lab's interface names on purpose (not a leftover of the data plane).</summary>
    public void Foreign(string name) => foreign.Add(name);

    /// <summary>What the data plane left in the lab's namespaces: links of the lab's interface names, mydvpn nft tables,
    /// rules at the full tunnel's priorities, wireguard-go processes.</summary>
    public async Task<List<string>> DataPlaneLeftoversAsync()
    {
        var left = new List<string>();
        foreach (var ns in namespaces)
        {
            var runner = HostCommand.Host.In(ns);
            using (var links = JsonDocument.Parse(await runner.RunCheckedAsync("ip", ["-j", "link", "show"])))
            {
                left.AddRange(links.RootElement.EnumerateArray().Select(l => l.GetProperty("ifname").GetString()!)
                    .Where(n => n.StartsWith(InterfacePrefix + Id, StringComparison.Ordinal) && !foreign.Contains(n)).Select(n => $"link {n} in {ns}"));
            }
            left.AddRange(IpJson.ParseNftTables(await runner.RunCheckedAsync("nft", ["-j", "list", "tables"]))
                .Where(t => t.Name.StartsWith("mydvpn_", StringComparison.Ordinal)).Select(t => $"nft table {t.Family} {t.Name} in {ns}"));
            left.AddRange(IpJson.ParseRules(await runner.RunCheckedAsync("ip", ["-j", "-4", "rule", "show"]))
                .Where(r => r.Priority is FullTunnelSpec.SuppressRulePriority or FullTunnelSpec.TunnelRulePriority).Select(r => $"rule {r} in {ns}"));
        }
        left.AddRange(WireGuardGoProcesses.FindAll(n => n.StartsWith(InterfacePrefix + Id, StringComparison.Ordinal)).Select(p => $"wireguard-go pid {p.Pid} ({p.Interface})"));
        return left;
    }

    /// <summary>Fails when the data plane left anything (checked before the safety-net cleanup), then removes
    /// everything of the lab and fails when even that left something.</summary>
    public async ValueTask DisposeAsync()
    {
        var problems = new List<string>();
        try
        {
            problems.AddRange(await DataPlaneLeftoversAsync());
        }
        catch (Exception e)
        {
            problems.Add($"inspecting the namespaces: {e.Message}");
        }
        foreach (var ns in namespaces)
        {
            var runner = HostCommand.Host.In(ns);
            foreach (var name in interfaces)
            {
                try
                {
                    await DataPlaneCleanup.RemoveLeftoversAsync(runner, name, new FullTunnelSpec(), SocketDirectory);
                }
                catch (Exception e)
                {
                    problems.Add($"cleanup of {name} in {ns}: {e.Message}");
                }
            }
        }
        KillWireGuardGo(p => p.StartsWith(InterfacePrefix + Id, StringComparison.Ordinal));
        DeleteSockets(InterfacePrefix + Id);
        foreach (var ns in namespaces)
        {
            var result = await HostCommand.Host.RunAsync("ip", ["netns", "del", ns]);
            if (!result.Succeeded)
                problems.Add($"ip netns del {ns}: {result.StandardError.Trim()}");
        }

        // Nothing of this lab may be left.
        var left = await LeftoversAsync(NamespacePrefix + Id, InterfacePrefix + Id);
        problems.AddRange(left);
        if (problems.Count > 0)
            throw new InvalidOperationException("the test left things behind: " + string.Join("; ", problems));
    }

    /// <summary>Namespaces, wireguard-go processes and UAPI sockets whose names start with the prefixes.</summary>
    public static async Task<List<string>> LeftoversAsync(string namespacePrefix, string interfacePrefix)
    {
        var left = new List<string>();
        var namespaceList = await HostCommand.Host.RunCheckedAsync("ip", ["netns", "list"]);
        left.AddRange(namespaceList.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Split(' ')[0]).Where(n => n.StartsWith(namespacePrefix, StringComparison.Ordinal)).Select(n => $"namespace {n}"));
        left.AddRange(WireGuardGoProcesses.FindAll(n => n.StartsWith(interfacePrefix, StringComparison.Ordinal)).Select(p => $"wireguard-go pid {p.Pid} ({p.Interface})"));
        if (Directory.Exists(SocketDirectory))
            left.AddRange(Directory.EnumerateFiles(SocketDirectory, interfacePrefix + "*").Select(f => $"socket {f}"));
        return left;
    }

    /// <summary>How old a lab's namespace must be to count as left by an earlier run: older than any test of it runs.</summary>
    private static readonly TimeSpan LeftoverAge = TimeSpan.FromMinutes(30);

    /// <summary>
    /// Removes namespaces, wireguard-go processes and sockets left by earlier runs of these tests. A lab whose namespace
    /// was made within <see cref="LeftoverAge"/> (its file in <c>/var/run/netns</c> is written then) belongs to a suite
    /// still running on this host and is left alone.
    /// </summary>
    public static async Task RemoveLeftoversOfEarlierRunsAsync()
    {
        var namespaceList = await HostCommand.Host.RunCheckedAsync("ip", ["netns", "list"]);
        var labNamespaces = namespaceList.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split(' ')[0])
            .Where(n => n.StartsWith(NamespacePrefix, StringComparison.Ordinal)).ToList();
        var running = labNamespaces
            .Where(n => DateTime.UtcNow - File.GetLastWriteTimeUtc(Path.Combine("/var/run/netns", n)) < LeftoverAge)
            .Select(n => n[NamespacePrefix.Length..].Split('-')[0])
            .ToHashSet(StringComparer.Ordinal);
        bool Left(string interfaceName) =>
            interfaceName.StartsWith(InterfacePrefix, StringComparison.Ordinal) && !running.Any(id => interfaceName.StartsWith(InterfacePrefix + id, StringComparison.Ordinal));

        KillWireGuardGo(Left);
        foreach (var ns in labNamespaces.Where(n => !running.Contains(n[NamespacePrefix.Length..].Split('-')[0])))
            await HostCommand.Host.RunCheckedAsync("ip", ["netns", "del", ns]);
        if (Directory.Exists(SocketDirectory))
        {
            foreach (var socket in Directory.EnumerateFiles(SocketDirectory, InterfacePrefix + "*").Where(f => Left(Path.GetFileName(f))))
                File.Delete(socket);
        }
    }

    private static void DeleteSockets(string prefix)
    {
        if (!Directory.Exists(SocketDirectory))
            return;
        foreach (var socket in Directory.EnumerateFiles(SocketDirectory, prefix + "*"))
            File.Delete(socket);
    }

    private static void KillWireGuardGo(Func<string, bool> filter)
    {
        foreach (var (pid, _, _) in WireGuardGoProcesses.FindAll(filter))
        {
            try
            {
                using var process = Process.GetProcessById(pid);
                process.Kill();
                process.WaitForExit(TimeSpan.FromSeconds(5));
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException)
            {
                // Already gone.
            }
        }
    }
}
