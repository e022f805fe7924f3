using System.Net.Sockets;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;

namespace MyDvpn.Testbed;

/// <summary>
/// Sockets that live in a named network namespace (<c>/run/netns/NAME</c>) while this process stays where it is.
/// A socket belongs to the namespace its creating thread was in at <c>socket(2)</c> time, for its whole life; so a
/// dedicated, throwaway thread (never a pool thread) enters the namespace with <c>setns(2)</c>, creates the socket and
/// goes back. Bind, connect, send and receive then work from any thread. Dispose the socket: an open socket keeps its
/// namespace (and the interfaces in it) alive after <c>ip netns del</c>.
/// </summary>
public static partial class NetnsSockets
{
    private const string NetnsDirectory = "/run/netns";
    private static readonly TimeSpan ThreadBound = TimeSpan.FromSeconds(10);

    /// <summary>An IPv4 TCP socket in <paramref name="networkNamespace"/> (a name under /run/netns).</summary>
    public static Socket CreateTcp(string networkNamespace) =>
        Create(networkNamespace, AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);

    /// <summary>An IPv4 UDP socket in <paramref name="networkNamespace"/> (a name under /run/netns).</summary>
    public static Socket CreateUdp(string networkNamespace) =>
        Create(networkNamespace, AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);

    /// <exception cref="TestbedException">The namespace does not exist, or entering it failed.</exception>
    public static Socket Create(string networkNamespace, AddressFamily family, SocketType type, ProtocolType protocol)
    {
        ArgumentException.ThrowIfNullOrEmpty(networkNamespace);
        if (networkNamespace.Contains('/') || networkNamespace is "." or "..")
            throw new ArgumentException($"'{networkNamespace}' is not a namespace name", nameof(networkNamespace));
        if (!OperatingSystem.IsLinux())
            throw new TestbedPrerequisiteException("sockets in network namespaces need Linux (setns)");

        var path = Path.Combine(NetnsDirectory, networkNamespace);
        Socket? socket = null;
        ExceptionDispatchInfo? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                socket = CreateOnThisThread(networkNamespace, path, family, type, protocol);
            }
            catch (Exception ex)
            {
                failure = ExceptionDispatchInfo.Capture(ex);
            }
        })
        {
            IsBackground = true,
            Name = "netns-socket " + networkNamespace,
        };
        thread.Start();
        if (!thread.Join(ThreadBound))
            throw new TestbedException($"creating a socket in network namespace {networkNamespace} did not finish within {ThreadBound.TotalSeconds:0} s");
        failure?.Throw();
        return socket!;
    }

    private static Socket CreateOnThisThread(string name, string path, AddressFamily family, SocketType type, ProtocolType protocol)
    {
        var original = Open("/proc/thread-self/ns/net", "this thread's network namespace");
        try
        {
            var target = Open(path, $"network namespace {name} (does it exist? `ip netns list`)");
            try
            {
                if (Libc.SetNs(target, Libc.CloneNewNet) != 0)
                    throw Errno($"setns into network namespace {name}");
            }
            finally
            {
                Libc.Close(target);
            }

            try
            {
                return new Socket(family, type, protocol);
            }
            finally
            {
                // Back to where the thread started. Should this fail, only this throwaway thread is affected: it ends
                // right after, and the socket is already made in the right namespace.
                _ = Libc.SetNs(original, Libc.CloneNewNet);
            }
        }
        finally
        {
            Libc.Close(original);
        }
    }

    private static int Open(string path, string what)
    {
        var fd = Libc.Open(path, Libc.ReadOnly | Libc.CloseOnExec);
        return fd >= 0 ? fd : throw Errno($"opening {path} ({what})");
    }

    private static TestbedException Errno(string what)
    {
        var errno = Marshal.GetLastPInvokeError();
        return new TestbedException($"{what} failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})");
    }

    private static partial class Libc
    {
        public const int CloneNewNet = 0x40000000;
        public const int ReadOnly = 0;
        public const int CloseOnExec = 0x80000;

        [LibraryImport("libc.so.6", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        public static partial int Open(string path, int flags);

        [LibraryImport("libc.so.6", EntryPoint = "setns", SetLastError = true)]
        public static partial int SetNs(int fd, int namespaceType);

        [LibraryImport("libc.so.6", EntryPoint = "close", SetLastError = true)]
        public static partial int Close(int fd);
    }
}
