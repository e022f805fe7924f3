using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using MyDvpn.HostOs;

namespace MyDvpn.Testbed;

/// <summary>
/// Who owns a testbed's namespaces. Before it creates a namespace a testbed writes <c>/run/mydvpn-testbed/{id}.owner</c>
/// holding its process id and that process's start time (field 22 of /proc/PID/stat, so a recycled pid does not
/// count as alive). Namespaces named like a testbed's whose owner file is missing or names a process that is gone are
/// leftovers of a dead run: the processes in them are killed and they are deleted.
/// </summary>
internal static partial class TestbedOwnership
{
    public const string OwnerDirectory = "/run/mydvpn-testbed";
    private static readonly TimeSpan KillBound = TimeSpan.FromSeconds(10);

    public static string OwnerFile(string testbedId) => Path.Combine(OwnerDirectory, testbedId + ".owner");

    /// <summary>Claims <paramref name="testbedId"/> for this process; false when someone already holds that id.</summary>
    public static bool TryClaim(string testbedId)
    {
        Directory.CreateDirectory(OwnerDirectory);
        try
        {
            using var file = new FileStream(OwnerFile(testbedId), FileMode.CreateNew, FileAccess.Write);
            using var writer = new StreamWriter(file);
            writer.Write(FormattableString.Invariant($"{Environment.ProcessId} {StartTime(Environment.ProcessId)}\n"));
            return true;
        }
        catch (IOException) when (File.Exists(OwnerFile(testbedId)))
        {
            return false;
        }
    }

    /// <summary>Gives the id up. No owner directory (a host booted since the last testbed: /run is a tmpfs) is nothing to release.</summary>
    public static void Release(string testbedId)
    {
        try
        {
            File.Delete(OwnerFile(testbedId));
        }
        catch (DirectoryNotFoundException)
        {
            // A leftover namespace from before a reboot has no owner file to delete.
        }
    }

    /// <summary>Whether the process that wrote the owner file still runs (same pid, same start time).</summary>
    public static bool OwnerAlive(string testbedId)
    {
        string text;
        try
        {
            text = File.ReadAllText(OwnerFile(testbedId));
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            return false;
        }
        var parts = text.Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (parts.Length != 2 || !int.TryParse(parts[0], CultureInfo.InvariantCulture, out var pid)
            || !long.TryParse(parts[1], CultureInfo.InvariantCulture, out var startTime))
            return false;
        return StartTime(pid) == startTime;
    }

    /// <summary>The start time of a process in clock ticks after boot; null when it does not exist.</summary>
    public static long? StartTime(int pid)
    {
        string stat;
        try
        {
            stat = File.ReadAllText($"/proc/{pid}/stat");
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException or IOException)
        {
            return null;
        }
        // "pid (comm) state ppid …": comm may hold spaces and parentheses, so count fields after the last ')'.
        // starttime is field 22; after the ')' the fields start at 3 (state).
        var fields = stat[(stat.LastIndexOf(')') + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return fields.Length > 19 && long.TryParse(fields[19], CultureInfo.InvariantCulture, out var ticks) ? ticks : null;
    }

    /// <summary>The testbed id of a namespace name made by a testbed (<c>tb1a2b3c-sn-a</c>), or null.</summary>
    public static string? TestbedIdOf(string namespaceName)
    {
        var match = NamespaceName().Match(namespaceName);
        return match.Success && TestbedRoles.All.Contains(match.Groups["role"].Value) ? match.Groups["id"].Value : null;
    }

    [GeneratedRegex("^(?<id>tb[0-9a-f]{6})-(?<role>.+)$")]
    private static partial Regex NamespaceName();

    [GeneratedRegex("^tb[0-9a-f]{6}$")]
    public static partial Regex TestbedId();

    /// <summary>The names <c>ip netns list</c> prints.</summary>
    public static async Task<IReadOnlyList<string>> ListNamespacesAsync(CancellationToken cancellationToken)
    {
        var output = await HostCommand.Host.RunCheckedAsync("ip", ["netns", "list"], cancellationToken: cancellationToken);
        return [.. output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(line => line.Split(' ')[0])];
    }

    /// <summary>Deletes leftovers of dead testbeds; returns the ids removed.</summary>
    public static async Task<IReadOnlyList<string>> RemoveLeftoversAsync(CancellationToken cancellationToken)
    {
        var namespaces = await ListNamespacesAsync(cancellationToken);
        var byTestbed = namespaces
            .Select(name => (Name: name, Id: TestbedIdOf(name)))
            .Where(entry => entry.Id is not null)
            .GroupBy(entry => entry.Id!, entry => entry.Name)
            .ToDictionary(group => group.Key, group => group.ToList());
        var ownerFiles = Directory.Exists(OwnerDirectory)
            ? Directory.GetFiles(OwnerDirectory, "*.owner").Select(Path.GetFileNameWithoutExtension).OfType<string>()
                .Where(id => TestbedId().IsMatch(id))
            : [];

        var removed = new List<string>();
        foreach (var id in byTestbed.Keys.Union(ownerFiles).Order(StringComparer.Ordinal))
        {
            if (OwnerAlive(id))
                continue;
            await RemoveNamespacesAsync(byTestbed.GetValueOrDefault(id) ?? [], cancellationToken);
            Release(id);
            removed.Add(id);
        }
        return removed;
    }

    /// <summary>
    /// Kills every process in each namespace, then deletes it (its veths and nftables tables go with it). A namespace
    /// that is already gone is fine: another cleaner got there first.
    /// </summary>
    public static async Task RemoveNamespacesAsync(IEnumerable<string> names, CancellationToken cancellationToken)
    {
        foreach (var name in names)
        {
            await KillProcessesInAsync(name, cancellationToken);
            var deleted = await HostCommand.Host.RunAsync("ip", ["netns", "delete", name], cancellationToken: cancellationToken);
            if (!deleted.Succeeded && (await ListNamespacesAsync(cancellationToken)).Contains(name))
                deleted.EnsureSuccess();
        }
    }

    private static async Task KillProcessesInAsync(string name, CancellationToken cancellationToken)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            var listed = await HostCommand.Host.RunAsync("ip", ["netns", "pids", name], cancellationToken: cancellationToken);
            if (!listed.Succeeded)
                return; // the namespace is gone
            var pids = listed.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(line => int.TryParse(line, CultureInfo.InvariantCulture, out var pid) ? pid : 0)
                .Where(pid => pid > 0 && pid != Environment.ProcessId)
                .ToList();
            if (pids.Count == 0)
                return;
            if (deadline.Elapsed > KillBound)
                throw new TestbedException(
                    $"processes {string.Join(", ", pids)} in network namespace {name} still run {KillBound.TotalSeconds:0} s after SIGKILL");
            foreach (var pid in pids)
                Kill(pid);
            await Task.Delay(TimeSpan.FromMilliseconds(20), cancellationToken);
        }
    }

    private static void Kill(int pid)
    {
        try
        {
            using var process = Process.GetProcessById(pid);
            process.Kill(entireProcessTree: true);
        }
        catch (Exception ex) when (ex is ArgumentException or InvalidOperationException or System.ComponentModel.Win32Exception)
        {
            // Gone already, or exiting.
        }
    }
}
