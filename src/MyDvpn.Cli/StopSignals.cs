using System.Runtime.InteropServices;

namespace MyDvpn.Cli;

/// <summary>
/// SIGINT and SIGTERM while a long-running command runs. The first cancels <see cref="Token"/>: the command stops cleanly
/// and exits with its own code (0). A second SIGINT (Ctrl-C again) or SIGTERM while it stops, or no stop within the time
/// it is given, ends the process at once, skipping what is left of the clean stop, with 130 (SIGINT) or 143 (SIGTERM),
/// the codes a shell gives a process a signal ended. From a terminal Ctrl-C reaches the whole foreground process group,
/// so the demo's node processes are forced with it.
/// </summary>
internal sealed class StopSignals : IDisposable
{
    private readonly CancellationTokenSource stop = new();
    private readonly TextWriter error;
    private readonly TimeSpan within;
    private readonly PosixSignalRegistration interrupt;
    private readonly PosixSignalRegistration terminate;
    private Timer? deadline;
    private int received;

    public StopSignals(TextWriter error, TimeSpan within)
    {
        this.error = error;
        this.within = within;
        interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
    }

    /// <summary>Cancelled by the first signal.</summary>
    public CancellationToken Token => stop.Token;

    /// <summary>The exit code of a process ended by <paramref name="signal"/>: 128 + its number.</summary>
    public static int ExitCodeOf(PosixSignal signal) => signal == PosixSignal.SIGINT ? 130 : 143;

    private void OnSignal(PosixSignalContext context)
    {
        // Handled here: the runtime's default would end the process on the spot.
        context.Cancel = true;
        var code = ExitCodeOf(context.Signal);
        if (Interlocked.Increment(ref received) > 1)
        {
            Force(code, $"{context.Signal} again while stopping");
            return;
        }
        Say($"Stopping ({context.Signal}); Ctrl-C again forces it.");
        deadline = new Timer(_ => Force(code, $"not stopped within {within.TotalSeconds:0} s"), null, within, Timeout.InfiniteTimeSpan);
        stop.Cancel();
    }

    private void Force(int code, string why)
    {
        Say($"Forced to stop ({why}): exiting with {code}; what the clean stop had not done yet is left as it is.");
        if (OperatingSystem.IsLinux() || OperatingSystem.IsMacOS())
            ExitAtOnce(code);
        Environment.Exit(code);
    }

    private void Say(string line)
    {
        lock (error)
        {
            error.WriteLine(line);
            error.Flush();
        }
    }

    /// <summary>
    /// <c>_exit(2)</c>: no exit handlers. <see cref="Environment.Exit"/> would run Akka's process-exit hook, which waits for
    /// the very stop being cut short.
    /// </summary>
    [DllImport("libc", EntryPoint = "_exit")]
    private static extern void ExitAtOnce(int status);

    public void Dispose()
    {
        interrupt.Dispose();
        terminate.Dispose();
        deadline?.Dispose();
        stop.Dispose();
    }
}
