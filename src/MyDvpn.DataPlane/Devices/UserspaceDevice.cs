using System.Diagnostics;
using Microsoft.Extensions.Logging;
using MyDvpn.DataPlane.Os;
using MyDvpn.HostOs;

namespace MyDvpn.DataPlane.Devices;

/// <summary>
/// A wireguard-go process (<c>wireguard-go -f NAME</c>, in the runner's network namespace) and its UAPI socket. Its
/// exit — a crash, a kill -9 — is reported through the callback given at start, unless it was ended on purpose.
/// </summary>
internal sealed class UserspaceDevice : IWireGuardDevice
{
    public const string BackendName = "wireguard-go";

    private static int nextId;

    private readonly Process process;
    private readonly HostCommand runner;
    private readonly UapiClient uapi;
    private readonly ILogger logger;
    private readonly Queue<string> tail = new();
    private volatile bool ready;
    private volatile bool ending;

    private UserspaceDevice(HostCommand runner, string name, Process process, UapiClient uapi, ILogger logger)
    {
        this.runner = runner;
        this.process = process;
        this.uapi = uapi;
        this.logger = logger;
        Name = name;
        Id = Interlocked.Increment(ref nextId);
    }

    public int Id { get; }

    public string Name { get; }

    public string Backend => BackendName;

    public bool HasExited => process.HasExited;

    public int ProcessId { get; private set; }

    public static string SocketPath(string socketDirectory, string name) => Path.Combine(socketDirectory, name + ".sock");

    /// <summary>Starts wireguard-go and waits until its UAPI socket answers.</summary>
    /// <exception cref="HostCommandException">wireguard-go is not installed, exited early or did not get ready in time.</exception>
    public static async Task<UserspaceDevice> StartAsync(HostCommand runner, string name, string program, string socketDirectory,
        TimeSpan startTimeout, ILogger logger, Action<DeviceExit> exited, CancellationToken cancellationToken)
    {
        string[] arguments = ["-f", name];
        var start = runner.StartInfo(program, arguments);
        start.Environment["WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD"] = "1";
        start.Environment["LOG_LEVEL"] = "error";
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        var process = new Process { StartInfo = start, EnableRaisingEvents = true };
        var device = new UserspaceDevice(runner, name, process, new UapiClient(SocketPath(socketDirectory, name), name), logger);
        process.OutputDataReceived += (_, e) => device.Keep(e.Data);
        process.ErrorDataReceived += (_, e) => device.Keep(e.Data);
        process.Exited += (_, _) =>
        {
            if (device.ready && !device.ending)
                exited(new DeviceExit(device.Id, name, SafeExitCode(process), device.LastOutput()));
        };

        try
        {
            process.Start();
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            process.Dispose();
            throw new HostCommandException(new CommandResult(program, arguments, -1, "", $"cannot start {program}: {e.Message} (is wireguard-go installed?)"));
        }
        device.ProcessId = process.Id;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(startTimeout);
        try
        {
            while (true)
            {
                if (process.HasExited)
                {
                    await process.WaitForExitAsync(CancellationToken.None); // drains the output
                    throw new HostCommandException(new CommandResult(program, arguments, process.ExitCode, "",
                        $"{program} -f {name} exited before its UAPI socket was ready: {device.LastOutput()}"));
                }
                if (await device.uapi.IsListeningAsync(deadline.Token))
                {
                    // From here on an exit is reported; one that came just before is seen by the HasExited check above.
                    device.ready = true;
                    if (!process.HasExited)
                        break;
                }
                await Task.Delay(TimeSpan.FromMilliseconds(50), deadline.Token);
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            device.KillQuietly();
            device.Dispose();
            throw new HostCommandException(new CommandResult(program, arguments, -1, "",
                $"{program} -f {name} did not open {device.uapi.SocketPath} within {startTimeout.TotalSeconds:0.#} s: {device.LastOutput()}"));
        }
        catch
        {
            device.KillQuietly();
            device.Dispose();
            throw;
        }
        logger.LogInformation("WireGuard interface {Interface}: wireguard-go started (pid {Pid})", name, device.ProcessId);
        return device;
    }

    public Task<DeviceState> ReadAsync(CancellationToken cancellationToken) => uapi.GetAsync(cancellationToken);

    public Task ApplyAsync(DeviceConfig desired, DeviceChange change, CancellationToken cancellationToken) =>
        uapi.SetAsync(change, cancellationToken);

    /// <summary>Deletes the link (wireguard-go then exits by itself and removes its socket); kills it if it does not.</summary>
    public async Task DestroyAsync(CancellationToken cancellationToken)
    {
        ending = true;
        if (!process.HasExited)
        {
            await IpLinks.DeleteIfPresentAsync(runner, Name, cancellationToken);
            if (!await WaitForExitAsync(TimeSpan.FromSeconds(5), cancellationToken))
            {
                logger.LogWarning("WireGuard interface {Interface}: wireguard-go (pid {Pid}) did not exit after its link was deleted; killing it", Name, ProcessId);
                KillQuietly();
                await WaitForExitAsync(TimeSpan.FromSeconds(5), cancellationToken);
            }
        }
        else
        {
            // Killed from outside: its TUN link went with it, but a stale socket stays behind.
            await IpLinks.DeleteIfPresentAsync(runner, Name, cancellationToken);
        }
        TryDeleteSocket();
    }

    public void Dispose()
    {
        ending = true;
        KillQuietly();
        process.Dispose();
    }

    private async Task<bool> WaitForExitAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(timeout);
        try
        {
            await process.WaitForExitAsync(deadline.Token);
            return true;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return false;
        }
    }

    private void KillQuietly()
    {
        try
        {
            if (!process.HasExited)
                process.Kill();
        }
        catch (InvalidOperationException)
        {
            // Never started or already gone.
        }
    }

    private void TryDeleteSocket()
    {
        try
        {
            if (File.Exists(uapi.SocketPath))
                File.Delete(uapi.SocketPath);
        }
        catch (IOException e)
        {
            logger.LogWarning("Could not delete stale UAPI socket {Socket}: {Error}", uapi.SocketPath, e.Message);
        }
    }

    private void Keep(string? line)
    {
        if (string.IsNullOrWhiteSpace(line))
            return;
        lock (tail)
        {
            tail.Enqueue(line);
            while (tail.Count > 20)
                tail.Dequeue();
        }
        logger.LogDebug("wireguard-go {Interface}: {Line}", Name, line);
    }

    private string LastOutput()
    {
        lock (tail)
        {
            // The banner about the kernel module is noise; errors are what matter.
            var lines = tail.Where(l => !l.StartsWith('│') && !l.StartsWith('┌') && !l.StartsWith('└')).ToArray();
            return lines.Length == 0 ? "(no output)" : string.Join(" | ", lines);
        }
    }

    private static int? SafeExitCode(Process process)
    {
        try
        {
            return process.ExitCode;
        }
        catch (InvalidOperationException)
        {
            return null;
        }
    }
}
