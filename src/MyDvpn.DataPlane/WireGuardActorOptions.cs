namespace MyDvpn.DataPlane;

/// <summary>Which WireGuard implementation a <see cref="WireGuardActor"/> uses.</summary>
public enum WireGuardBackend
{
    /// <summary>The kernel module when <c>ip link add … type wireguard</c> works, wireguard-go otherwise.</summary>
    Auto,
    Kernel,
    Userspace,
}

/// <summary>Tuning of a <see cref="WireGuardActor"/>; the defaults suit a peer agent.</summary>
public sealed record WireGuardActorOptions
{
    public static readonly WireGuardActorOptions Default = new();

    /// <summary>How often the actor re-reconciles on its own (repairing drift).</summary>
    public TimeSpan ReconcileInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>The first wait before wireguard-go is started again after it exited; doubled on every exit in a row.</summary>
    public TimeSpan RestartBackoffMin { get; init; } = TimeSpan.FromMilliseconds(500);

    public TimeSpan RestartBackoffMax { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>A device that ran this long before it exited starts the backoff over from <see cref="RestartBackoffMin"/>.</summary>
    public TimeSpan RestartBackoffResetAfter { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>The longest one reconciliation (or teardown) may take before it is cancelled and reported failed.</summary>
    public TimeSpan OperationTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>How long wireguard-go may take to open its UAPI socket.</summary>
    public TimeSpan DeviceStartTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>How long PostStop may block to remove what the actor created when it is stopped without <see cref="Teardown"/>.</summary>
    public TimeSpan StopCleanupTimeout { get; init; } = TimeSpan.FromSeconds(15);

    public WireGuardBackend Backend { get; init; } = WireGuardBackend.Auto;

    /// <summary>The wireguard-go program (looked up in PATH).</summary>
    public string WireGuardGoProgram { get; init; } = "wireguard-go";

    /// <summary>Where wireguard-go puts its UAPI sockets (wireguard-go and wg agree on <c>/var/run/wireguard</c>).</summary>
    public string SocketDirectory { get; init; } = "/var/run/wireguard";

    /// <summary>What is wrong with the options, or null.</summary>
    public string? Problem()
    {
        if (ReconcileInterval <= TimeSpan.Zero)
            return "ReconcileInterval must be positive";
        if (RestartBackoffMin <= TimeSpan.Zero || RestartBackoffMax < RestartBackoffMin)
            return "RestartBackoffMin must be positive and RestartBackoffMax at least RestartBackoffMin";
        if (OperationTimeout <= TimeSpan.Zero || DeviceStartTimeout <= TimeSpan.Zero || StopCleanupTimeout <= TimeSpan.Zero)
            return "OperationTimeout, DeviceStartTimeout and StopCleanupTimeout must be positive";
        if (string.IsNullOrWhiteSpace(WireGuardGoProgram) || string.IsNullOrWhiteSpace(SocketDirectory))
            return "WireGuardGoProgram and SocketDirectory must be set";
        return null;
    }
}
