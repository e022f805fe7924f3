using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;
using MyDvpn.HostOs;

namespace MyDvpn.Testbed;

/// <summary>
/// <c>ping -n -O -D -c COUNT -i INTERVAL -W 1 -w DEADLINE</c> from inside one of a testbed's namespaces, in the background:
/// each reply is recorded as it comes (its icmp_seq and, from <c>-D</c>, the wall-clock time ping received it), so a caller
/// can change the network while it runs and time what happened on ping's own clock. With a deadline, iputils ping sends
/// until COUNT are answered or the deadline passes, so a loss shows as more sent than answered. Bounded by ping's deadline,
/// a bound of its own and the caller's token; <see cref="StopAsync"/> ends it early as Ctrl-C would (SIGINT: it still
/// prints its summary).
/// </summary>
public sealed partial class BackgroundPing
{
    private const int Sigint = 2;

    private readonly Stopwatch elapsed = new();
    private readonly StringBuilder text = new();
    private readonly List<PingReply> replies = [];
    private Process? running;

    private BackgroundPing()
    {
    }

    /// <summary>
    /// The whole run: its outcome once ping has exited; <see cref="TestbedException"/> when it printed no summary,
    /// <see cref="TimeoutException"/> when it outlived its bound.
    /// </summary>
    public Task<PingOutcome> Completion { get; private set; } = null!;

    /// <summary>How many replies came so far.</summary>
    public int Replies
    {
        get
        {
            lock (replies)
                return replies.Count;
        }
    }

    /// <summary>Since ping started.</summary>
    public TimeSpan Elapsed => elapsed.Elapsed;

    /// <summary>The replies so far, in the order they came.</summary>
    public IReadOnlyList<PingReply> RepliesSoFar()
    {
        lock (replies)
            return [.. replies];
    }

    /// <summary>
    /// Starts <paramref name="count"/> pings to <paramref name="address"/>, <paramref name="interval"/> apart (below 0.2 s needs
    /// root), each reply awaited at most 1 s; the deadline is the pings' time plus 10 s.
    /// </summary>
    /// <exception cref="TestbedPrerequisiteException">ping is not installed (Debian package iputils-ping).</exception>
    public static BackgroundPing Start(NetnsTestbed testbed, string fromNamespace, string address, int count, TimeSpan interval,
        CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        Prerequisites.RequireTool("ping", "iputils-ping");
        var deadline = (int)Math.Ceiling(count * interval.TotalSeconds) + 10;
        var start = testbed.For(fromNamespace).StartInfo("ping",
            ["-n", "-O", "-D", "-c", count.ToString(CultureInfo.InvariantCulture), "-i", interval.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture),
                "-W", "1", "-w", deadline.ToString(CultureInfo.InvariantCulture), address]);
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        var ping = new BackgroundPing();
        ping.Completion = ping.RunAsync(start, TimeSpan.FromSeconds(deadline + 10), cancellationToken);
        return ping;
    }

    /// <summary>Ends the run as Ctrl-C would (ping prints its summary) and returns its outcome; a run already over just returns it.</summary>
    public async Task<PingOutcome> StopAsync()
    {
        // `ip netns exec` execs ping: the pid is ping's. A process not reaped yet still holds its pid.
        try
        {
            if (Volatile.Read(ref running) is { HasExited: false } process)
                _ = Libc.Kill(process.Id, Sigint);
        }
        catch (InvalidOperationException)
        {
            // Exited and released meanwhile.
        }
        return await Completion;
    }

    private async Task<PingOutcome> RunAsync(ProcessStartInfo start, TimeSpan bound, CancellationToken cancellationToken)
    {
        using var process = new Process { StartInfo = start };
        process.OutputDataReceived += (_, line) => Take(line.Data);
        process.ErrorDataReceived += (_, line) => Take(line.Data);
        elapsed.Start();
        process.Start();
        Volatile.Write(ref running, process);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        using var bounded = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        bounded.CancelAfter(bound);
        try
        {
            await process.WaitForExitAsync(bounded.Token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new TimeoutException($"`{HostCommand.Describe(start.FileName, start.ArgumentList)}` did not end within {bound.TotalSeconds:0} s");
        }
        finally
        {
            Volatile.Write(ref running, null);
            if (!process.HasExited)
                process.Kill();
        }
        string all;
        lock (text)
            all = text.ToString();
        PingResult summary;
        try
        {
            summary = PingResult.Parse(all);
        }
        catch (FormatException)
        {
            throw new TestbedException($"`{HostCommand.Describe(start.FileName, start.ArgumentList)}` exited with code {process.ExitCode} " +
                                       $"and no summary: {all.Trim()}");
        }
        HashSet<int> answered;
        lock (replies)
            answered = [.. replies.Select(r => r.Sequence)];
        return new PingOutcome(summary.Transmitted, summary.Received, [.. Enumerable.Range(1, summary.Transmitted).Where(seq => !answered.Contains(seq))], all);
    }

    private void Take(string? line)
    {
        if (line is null)
            return;
        lock (text)
            text.AppendLine(line);
        if (Reply().Match(line) is { Success: true } reply)
        {
            var at = DateTimeOffset.UnixEpoch.AddTicks((long)(double.Parse(reply.Groups["at"].Value, CultureInfo.InvariantCulture) * TimeSpan.TicksPerSecond));
            lock (replies)
                replies.Add(new PingReply(int.Parse(reply.Groups["seq"].Value, CultureInfo.InvariantCulture), at));
        }
    }

    // -D: "[1712345678.123456] 64 bytes from 198.51.100.1: icmp_seq=7 ttl=63 time=0.512 ms".
    [GeneratedRegex(@"^\[(?<at>\d+\.\d+)\] \d+ bytes from .*icmp_seq=(?<seq>\d+)")]
    private static partial Regex Reply();

    private static partial class Libc
    {
        [LibraryImport("libc.so.6", EntryPoint = "kill", SetLastError = true)]
        public static partial int Kill(int pid, int signal);
    }
}

/// <summary>One echo reply: its icmp_seq and when ping received it (its <c>-D</c> timestamp).</summary>
public sealed record PingReply(int Sequence, DateTimeOffset At);

/// <summary>A finished <see cref="BackgroundPing"/>: sent, answered, the sequences never answered and all it printed.</summary>
public sealed record PingOutcome(int Transmitted, int Received, IReadOnlyList<int> LostSequences, string Output)
{
    public int Lost => Transmitted - Received;
}
