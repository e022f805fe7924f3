using MyDvpn.DataPlane.Os;
using MyDvpn.HostOs;

namespace MyDvpn.DataPlane.Devices;

/// <summary>
/// A kernel WireGuard interface (<c>ip link add NAME type wireguard</c>), configured with <c>wg syncconf NAME
/// /dev/stdin</c> — the whole config on stdin, never in a file or on a command line — and read with <c>wg show NAME
/// dump</c>. <c>wg syncconf</c> itself changes only the peers that differ, so unchanged peers keep their sessions.
/// </summary>
internal sealed class KernelDevice : IWireGuardDevice
{
    public const string BackendName = "kernel";

    private static int nextId;
    private readonly HostCommand runner;

    private KernelDevice(HostCommand runner, string name)
    {
        this.runner = runner;
        Name = name;
        Id = Interlocked.Increment(ref nextId) | 0x4000_0000;
    }

    public int Id { get; }

    public string Name { get; }

    public string Backend => BackendName;

    public bool HasExited => false;

    /// <summary>The device, or null and ip's error when this host has no WireGuard kernel module.</summary>
    public static async Task<(KernelDevice? Device, string Error)> TryCreateAsync(HostCommand runner, string name, CancellationToken cancellationToken)
    {
        var result = await runner.RunAsync("ip", ["link", "add", "dev", name, "type", "wireguard"], cancellationToken: cancellationToken);
        return result.Succeeded
            ? (new KernelDevice(runner, name), "")
            : (null, $"`{result.CommandLine}`: {result.StandardError.Trim()}");
    }

    public async Task<DeviceState> ReadAsync(CancellationToken cancellationToken) =>
        WgConfigText.ParseDump(await runner.RunCheckedAsync("wg", ["show", Name, "dump"], cancellationToken: cancellationToken));

    /// <summary>
    /// <c>wg syncconf</c> removes the peers the config does not name before it sets the others, so a peer that takes over
    /// the allowed IPs of one that goes (a client moving to another exit: 0.0.0.0/0) would leave a moment with no peer for
    /// them. Such a change is made in two steps, make-before-break: first the config with the leaving peers still named
    /// (kept as they are, while the new ones take their allowed IPs), then the config itself, which removes them.
    /// </summary>
    public async Task ApplyAsync(DeviceConfig desired, DeviceChange change, CancellationToken cancellationToken)
    {
        if (change.IsEmpty)
            return;
        // A restarted peer goes first; the sync below adds it anew.
        foreach (var peer in change.RestartedPeers)
            await runner.RunCheckedAsync("wg", ["set", Name, "peer", peer.Key, "remove"], cancellationToken: cancellationToken);
        if (!change.RemovedPeers.IsEmpty && (!change.AddedPeers.IsEmpty || !change.ChangedPeers.IsEmpty))
            await SyncAsync(WgConfigText.Format(desired, keeping: change.RemovedPeers), cancellationToken);
        await SyncAsync(WgConfigText.Format(desired), cancellationToken);
    }

    private Task<string> SyncAsync(string config, CancellationToken cancellationToken) =>
        runner.RunCheckedAsync("wg", ["syncconf", Name, "/dev/stdin"], config, cancellationToken);

    public Task DestroyAsync(CancellationToken cancellationToken) => IpLinks.DeleteIfPresentAsync(runner, Name, cancellationToken);

    public void Dispose()
    {
    }
}
