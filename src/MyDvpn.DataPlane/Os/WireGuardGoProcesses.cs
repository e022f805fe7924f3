using System.Collections.Immutable;
using System.Diagnostics;
using System.Globalization;
using MyDvpn.DataPlane.Devices;
using MyDvpn.HostOs;

namespace MyDvpn.DataPlane.Os;

/// <summary>wireguard-go processes found through <c>/proc</c>: by the interface they serve and their network namespace.</summary>
internal static class WireGuardGoProcesses
{
    /// <summary>The network namespace commands of <paramref name="runner"/> run in, as <c>net:[inode]</c>.</summary>
    public static async Task<string> NamespaceIdAsync(HostCommand runner, CancellationToken cancellationToken) =>
        (await runner.RunCheckedAsync("readlink", ["/proc/self/ns/net"], cancellationToken: cancellationToken)).Trim();

    /// <summary>Live wireguard-go processes whose last argument is <paramref name="name"/>, in the runner's namespace.</summary>
    public static async Task<ImmutableArray<int>> FindAsync(HostCommand runner, string name, CancellationToken cancellationToken)
    {
        var ns = await NamespaceIdAsync(runner, cancellationToken);
        return [.. FindAll(n => n == name).Where(p => p.Namespace == ns).Select(p => p.Pid)];
    }

    /// <summary>Every live wireguard-go process whose interface name passes <paramref name="filter"/>, in any namespace.</summary>
    public static ImmutableArray<(int Pid, string Interface, string? Namespace)> FindAll(Func<string, bool> filter)
    {
        var found = ImmutableArray.CreateBuilder<(int, string, string?)>();
        foreach (var directory in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(directory), NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
                continue;
            try
            {
                var arguments = File.ReadAllText(Path.Combine(directory, "cmdline")).Split('\0', StringSplitOptions.RemoveEmptyEntries);
                if (arguments.Length < 2 || Path.GetFileName(arguments[0]) != "wireguard-go" || !filter(arguments[^1]) || !IsAlive(pid))
                    continue;
                found.Add((pid, arguments[^1], new FileInfo(Path.Combine(directory, "ns", "net")).LinkTarget));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // The process ended while we looked.
            }
        }
        return found.ToImmutable();
    }

    /// <summary>Whether the process exists and is not a zombie.</summary>
    public static bool IsAlive(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var state = stat[(stat.LastIndexOf(')') + 2)..].TrimStart();
            return state.Length > 0 && state[0] != 'Z' && state[0] != 'X';
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>Removes a device a crashed agent left behind: the link (wireguard-go exits when its link goes), any
    /// wireguard-go still serving the name in this namespace (killed after a grace), a stale UAPI socket. A link of that
    /// name that is not a WireGuard or TUN device is not ours and is never deleted: refused with an exception when
    /// <paramref name="refuseForeignLink"/>, otherwise left alone.</summary>
    /// <exception cref="InvalidOperationException">The name belongs to another kind of link (and <paramref name="refuseForeignLink"/>).</exception>
    public static async Task<ImmutableArray<string>> RemoveLeftoverDeviceAsync(HostCommand runner, string name, string socketDirectory,
        bool refuseForeignLink, CancellationToken cancellationToken)
    {
        var removed = ImmutableArray.CreateBuilder<string>();
        var kind = await IpLinks.KindAsync(runner, name, cancellationToken);
        if (kind is not (null or "tun" or "wireguard"))
        {
            return refuseForeignLink
                ? throw new InvalidOperationException($"interface {name} already exists as a {(kind.Length == 0 ? "plain" : kind)} link, not a WireGuard one: refusing to touch it")
                : [];
        }
        var pids = await FindAsync(runner, name, cancellationToken);
        if (kind is not null && await IpLinks.DeleteIfPresentAsync(runner, name, cancellationToken))
            removed.Add($"link {name}");
        foreach (var pid in pids)
        {
            if (!await WaitGoneAsync(pid, TimeSpan.FromSeconds(3), cancellationToken))
            {
                try
                {
                    using var process = Process.GetProcessById(pid);
                    process.Kill();
                }
                catch (Exception e) when (e is ArgumentException or InvalidOperationException)
                {
                    // Gone in the meantime.
                }
                await WaitGoneAsync(pid, TimeSpan.FromSeconds(3), cancellationToken);
            }
            removed.Add($"wireguard-go pid {pid}");
        }
        var socket = UserspaceDevice.SocketPath(socketDirectory, name);
        if (File.Exists(socket) && !await new UapiClient(socket, name).IsListeningAsync(cancellationToken))
        {
            File.Delete(socket);
            removed.Add($"stale socket {socket}");
        }
        return removed.ToImmutable();
    }

    private static async Task<bool> WaitGoneAsync(int pid, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var deadline = Stopwatch.StartNew();
        while (IsAlive(pid))
        {
            if (deadline.Elapsed > timeout)
                return false;
            await Task.Delay(TimeSpan.FromMilliseconds(50), cancellationToken);
        }
        return true;
    }
}
