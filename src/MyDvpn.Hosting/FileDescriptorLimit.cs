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
