using System.Runtime.InteropServices;

namespace MyDvpn.Hosting;

/// <summary>How many files and sockets this process may hold open (<c>ulimit -n</c>).</summary>
public static class FileDescriptorLimit
{
    private const int RlimitNofile = 7;

    [StructLayout(LayoutKind.Sequential)]
    private struct ResourceLimit
    {
        public ulong Current;
        public ulong Maximum;
    }

    /// <summary>
    /// Descriptors kept free beyond those a node counts (its streams, its connections to other nodes, its relay sockets):
    /// the runtime's own (epoll, eventfd, signal pipes), the journal (SQLite and its WAL) or PostgreSQL connections, the
    /// certificate and cache files it reads and writes, the host programs it runs (pipes), and slack for a burst of streams
    /// opening before old ones are closed. About 5% of the 20,000 a process gets on our machines.
    /// </summary>
    public const int Headroom = 1024;

    /// <summary>
    /// How many streams fit in a process that may open <paramref name="limit"/> descriptors, when <paramref name="others"/>
    /// are needed for everything the node counts besides them and <see cref="Headroom"/> stays free: at most
    /// <paramref name="cap"/>, at least 1 (a limit too low for any headroom then shows in <see cref="Needed"/>).
    /// </summary>
    public static int StreamsThatFit(ulong limit, int others, int cap) =>
        (int)Math.Clamp((long)Math.Min(limit, int.MaxValue) - others - Headroom, 1, cap);

    /// <summary>The descriptors <paramref name="streams"/> streams need with <paramref name="others"/> and the <see cref="Headroom"/>.</summary>
    public static ulong Needed(int streams, int others) => (ulong)streams + (ulong)others + Headroom;

    /// <summary>The soft limit, or null where it cannot be read (not Linux).</summary>
    public static ulong? Current()
    {
        if (!OperatingSystem.IsLinux())
            return null;
        return GetResourceLimit(RlimitNofile, out var limit) == 0 ? limit.Current : null;
    }

    [DllImport("libc", EntryPoint = "getrlimit", SetLastError = true)]
    private static extern int GetResourceLimit(int resource, out ResourceLimit limit);
}
