using Microsoft.Extensions.Logging;
using MyDvpn.HostOs;

namespace MyDvpn.DataPlane.Devices;

/// <summary>
/// Starts the device the host supports: the kernel module when <c>ip link add NAME type wireguard</c> succeeds,
/// wireguard-go otherwise (unless <see cref="WireGuardActorOptions.Backend"/> forces one). The probe's answer is
/// remembered, so a host without the module is asked once.
/// </summary>
internal sealed class WireGuardDevices(HostCommand runner, WireGuardActorOptions options, ILogger logger) : IWireGuardDeviceFactory
{
    private volatile bool kernelUnavailable;

    public async Task<IWireGuardDevice> CreateAsync(string name, Action<DeviceExit> exited, CancellationToken cancellationToken)
    {
        if (options.Backend != WireGuardBackend.Userspace && !kernelUnavailable)
        {
            var (device, error) = await KernelDevice.TryCreateAsync(runner, name, cancellationToken);
            if (device is not null)
            {
                logger.LogInformation("WireGuard interface {Interface}: using the kernel module", name);
                return device;
            }
            if (options.Backend == WireGuardBackend.Kernel)
                throw new InvalidOperationException($"kernel WireGuard was asked for (Backend=Kernel) but is unavailable: {error}");
            kernelUnavailable = true;
            logger.LogInformation("WireGuard interface {Interface}: no kernel WireGuard here ({Error}); using wireguard-go", name, error);
        }
        else
        {
            logger.LogInformation("WireGuard interface {Interface}: using wireguard-go", name);
        }
        return await UserspaceDevice.StartAsync(runner, name, options.WireGuardGoProgram, options.SocketDirectory,
            options.DeviceStartTimeout, logger, exited, cancellationToken);
    }
}
