using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace MyDvpn.Cli.Demo;

/// <summary>How to start <c>mydvpn</c> as a child process: its apphost, or <c>dotnet mydvpn.dll</c>.</summary>
public sealed record MydvpnExecutable(string FileName, IReadOnlyList<string> PrefixArguments)
{
    /// <summary>The executable this process runs from.</summary>
    public static MydvpnExecutable Current
    {
        get
        {
            var processPath = Environment.ProcessPath ?? throw new InvalidOperationException("cannot tell this process's executable");
            return Path.GetFileNameWithoutExtension(processPath) == "dotnet"
                ? new MydvpnExecutable(processPath, [typeof(Program).Assembly.Location])
                : new MydvpnExecutable(processPath, []);
        }
    }

    /// <summary>
    /// How a person at a shell runs this executable: <c>mydvpn</c> where PATH finds this one (an installed package), else
    /// its path (after <c>dotnet run</c>, the build output's apphost).
    /// </summary>
    public string ShellCommand
    {
        get
        {
            if (PrefixArguments.Count == 0 && MyDvpn.HostOs.HostCommand.FindOnPath("mydvpn") is { } onPath
                && (new FileInfo(onPath).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? onPath) == Path.GetFullPath(FileName))
                return "mydvpn";
            return string.Join(' ', PrefixArguments.Prepend(FileName).Select(word => word.Any(c => char.IsWhiteSpace(c) || c == '\'') ? $"'{word.Replace("'", "'\\''", StringComparison.Ordinal)}'" : word));
        }
    }

    /// <summary><c>mydvpn.dll</c> in a build output directory, run by the same <c>dotnet</c> host.</summary>
    public static MydvpnExecutable InDirectory(string directory)
    {
        var dll = Path.Combine(directory, "mydvpn.dll");
        if (!File.Exists(dll))
            throw new FileNotFoundException("mydvpn.dll is not in the build output", dll);
        var host = Environment.ProcessPath is { } path && Path.GetFileNameWithoutExtension(path) == "dotnet" ? path : "dotnet";
        return new MydvpnExecutable(host, [dll]);
    }
}

/// <summary>
/// A <c>mydvpn</c> child process with its output in a log file. Disposing it kills the process,
/// so a failing test or an interrupted demo leaves nothing running.
/// </summary>
public sealed class NodeProcess : IDisposable
{
    private readonly Process process;

    public string Name { get; }
    public string LogFile { get; }
    public int Id => process.Id;
    public bool HasExited => process.HasExited;
    public int ExitCode => process.ExitCode;

    private NodeProcess(string name, Process process, string logFile)
    {
        Name = name;
        this.process = process;
        LogFile = logFile;
    }

    /// <param name="networkNamespace">Run inside this network namespace (<c>ip netns exec</c>, which execs the program: the
    /// process is <c>mydvpn</c> itself and gets the signals); null: this process's namespace.</param>
    public static NodeProcess Start(MydvpnExecutable executable, string name, string logFile, IEnumerable<string> arguments,
        IReadOnlyDictionary<string, string>? environment = null, string? networkNamespace = null)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(logFile))!);
        var start = new MyDvpn.HostOs.HostCommand(networkNamespace)
            .StartInfo(executable.FileName, [.. executable.PrefixArguments, .. arguments]);
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        start.RedirectStandardInput = true;
        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
            start.Environment[key] = value;
        var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {name}");
        var log = new StreamWriter(logFile, append: true) { AutoFlush = true };
        var gate = new object();
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (gate) log.WriteLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (gate) log.WriteLine(e.Data); };
        process.Exited += (_, _) => { lock (gate) log.Flush(); };
        process.EnableRaisingEvents = true;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return new NodeProcess(name, process, logFile);
    }

    /// <summary>SIGKILL: the process gets no chance to clean up (a crash).</summary>
    public void Kill()
    {
        if (!process.HasExited)
            process.Kill(entireProcessTree: true);
        process.WaitForExit();
    }

    /// <summary>SIGTERM and wait: the node leaves its cluster and the directory cleanly.</summary>
    public async Task StopAsync(TimeSpan timeout)
    {
        if (process.HasExited)
            return;
        _ = SendSigterm(process.Id);
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            Kill();
        }
    }

    public Task<bool> WaitForExitAsync(TimeSpan timeout) => process.WaitForExitAsync(new CancellationTokenSource(timeout).Token)
        .ContinueWith(t => t.IsCompletedSuccessfully, TaskScheduler.Default);

    public string ReadLog() => File.Exists(LogFile) ? ReadShared(LogFile) : "";

    private static string ReadShared(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        return new StreamReader(stream).ReadToEnd();
    }

    public void Dispose()
    {
        try
        {
            Kill();
        }
        catch (InvalidOperationException)
        {
            // Never started or already reaped.
        }
        process.Dispose();
    }

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int SendSigterm(int pid, int signal = 15);

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<int, byte> HandedOut = new();

    /// <summary>
    /// A TCP port that was free a moment ago on loopback, and never handed out before by this process (one node needs
    /// several). It is taken below the kernel's ephemeral range (<see cref="EphemeralPortsStart"/>): a port the kernel
    /// handed out for port 0 is one it may give again to any outgoing connection before the node binds it, which once
    /// made a SuperNode's --listen "already in use".
    /// </summary>
    public static int FreeTcpPort()
    {
        var high = EphemeralPortsStart() - 1;
        var low = Math.Max(1024, high - 9_999);
        for (var attempt = 0; attempt < 1000; attempt++)
        {
            var port = Random.Shared.Next(low, high + 1);
            if (!HandedOut.TryAdd(port, 0))
                continue;
            try
            {
                using var listener = new TcpListener(IPAddress.Loopback, port);
                listener.Start();
                return port;
            }
            catch (SocketException)
            {
                // Someone listens there: it stays handed out, so it is not tried again.
            }
        }
        throw new InvalidOperationException($"no free loopback port in {low}-{high} that was not handed out already");
    }

    /// <summary>The first port of the kernel's ephemeral range (<c>net.ipv4.ip_local_port_range</c>; 32768 where it cannot be read).</summary>
    private static int EphemeralPortsStart()
    {
        string text;
        try
        {
            text = File.ReadAllText("/proc/sys/net/ipv4/ip_local_port_range");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return 32768;
        }
        var first = text.Split((char[])['\t', ' ', '\n'], StringSplitOptions.RemoveEmptyEntries).FirstOrDefault();
        return int.TryParse(first, System.Globalization.CultureInfo.InvariantCulture, out var start) && start > 2048 ? start : 32768;
    }
}
