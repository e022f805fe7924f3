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

    public async Task ApplyAsync(DeviceConfig desired, DeviceChange change, CancellationToken cancellationToken)
    {
        if (change.IsEmpty)
            return;
        await runner.RunCheckedAsync("wg", ["syncconf", Name, "/dev/stdin"], WgConfigText.Format(desired), cancellationToken);
    }

    public Task DestroyAsync(CancellationToken cancellationToken) => IpLinks.DeleteIfPresentAsync(runner, Name, cancellationToken);

    public void Dispose()
    {
    }
}
