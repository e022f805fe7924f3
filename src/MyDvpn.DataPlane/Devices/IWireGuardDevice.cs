namespace MyDvpn.DataPlane.Devices;

/// <summary>
/// One running WireGuard device, whatever implements it: the kernel module (<see cref="KernelDevice"/>) or a
/// wireguard-go process (<see cref="UserspaceDevice"/>). Owned by one <see cref="WireGuardActor"/>, used by one
/// operation at a time.
/// </summary>
internal interface IWireGuardDevice : IDisposable
{
    /// <summary>Tells this instance apart from the one started after it (exit notices carry it).</summary>
    int Id { get; }

    string Name { get; }

    /// <summary><c>"wireguard-go"</c> or <c>"kernel"</c>.</summary>
    string Backend { get; }

    /// <summary>The device is gone for good (its process exited); a new one must be started.</summary>
    bool HasExited { get; }

    Task<DeviceState> ReadAsync(CancellationToken cancellationToken);

    /// <summary>Applies <paramref name="change"/> (computed against the last reading); <paramref name="desired"/> is the
    /// whole config for a backend that syncs whole configs (<c>wg syncconf</c>).</summary>
    Task ApplyAsync(DeviceConfig desired, DeviceChange change, CancellationToken cancellationToken);

    /// <summary>Removes the interface (and ends its process); nothing of it is left afterwards.</summary>
    Task DestroyAsync(CancellationToken cancellationToken);
}

/// <summary>Starts devices. <paramref name="exited"/> is called (on any thread) when a device ends by itself.</summary>
internal interface IWireGuardDeviceFactory
{
    Task<IWireGuardDevice> CreateAsync(string name, Action<DeviceExit> exited, CancellationToken cancellationToken);
}

/// <summary>A device ended by itself (wireguard-go crashed or was killed).</summary>
internal sealed record DeviceExit(int DeviceId, string Name, int? ExitCode, string LastOutput);
