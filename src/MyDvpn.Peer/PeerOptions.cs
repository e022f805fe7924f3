using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using MyDvpn.Common;
using MyDvpn.Protocol.Control;
using MyDvpn.Security;

namespace MyDvpn.Peer;

/// <summary>
/// <c>mydvpn peer</c> settings as bound from flags, <c>--config</c> JSON or <c>MYDVPN__PEER__…</c>
/// environment variables. <see cref="Validate"/> turns them into <see cref="PeerSettings"/> or says
/// which setting is wrong.
/// </summary>
public sealed class PeerOptions
{
    public const int DefaultWireGuardPort = 51820;
    public const int DefaultMaxClients = 100;
    public const string DefaultWireGuardInterface = "mydvpn0";

    /// <summary>The file in the state directory that keeps the newest revocation list the peer was given.</summary>
    public const string CrlFileName = "revocations.crl";

    public string? Role { get; set; }
    public string? Id { get; set; }
    public string? Region { get; set; }
    public string? Key { get; set; }
    public string? Ca { get; set; }
    public string? Crl { get; set; }
    public List<string> Supernode { get; set; } = [];
    public string? Token { get; set; }
    public string? ExitRegion { get; set; }
    public string? StateDir { get; set; }

    // The data plane's settings. --max-clients, --wg-port and --public-endpoint shape the answers to exit commands.
    /// <summary>wireguard (default): drive a WireGuard interface; none: keep the tunnel state only.</summary>
    public string? DataPlane { get; set; }

    public string? WgInterface { get; set; }
    public string? Uplink { get; set; }
    public string? PublicEndpoint { get; set; }
    public int? MaxClients { get; set; }
    public int? WgPort { get; set; }

    /// <summary>HOST:PORT for plain-HTTP <c>/metrics</c>; off when not given.</summary>
    public string? Metrics { get; set; }
    /// <summary>The OTLP/HTTP collector spans are exported to, <c>http(s)://HOST:PORT</c>; no tracing unless given.</summary>
    public string? Otlp { get; set; }

    /// <param name="isRoot">Whether the default state directory is the system one; the process's privilege if null.</param>
    /// <param name="home">The home directory for a non-root default state directory; the user's if null.</param>
    public PeerSettings Validate(bool? isRoot = null, string? home = null)
    {
        var role = ParseRole(Role);
        if (!NodeId.IsValid(Id, out var idProblem))
            throw new ConfigurationException("--id", $"'{Id}' {idProblem}");
        if (!RegionName.IsValid(Region, out var regionProblem))
            throw new ConfigurationException("--region", regionProblem);
        var supernodes = HostPort.ParseList(Supernode, "--supernode");
        if (supernodes.Count == 0)
            throw new ConfigurationException("--supernode", "is required: the gRPC addresses of SuperNodes of the peer's region, HOST:PORT[,HOST:PORT...]");
        var key = LoadKey(Key);
        var ca = LoadCa(Ca);
        var token = Token is null ? null : Token.Trim();
        if (token is { Length: 0 })
            throw new ConfigurationException("--token", "is empty: give the enrollment token from `mydvpn admin token create`, or leave the flag out once enrolled");

        string? exitRegion = null;
        if (!string.IsNullOrWhiteSpace(ExitRegion))
        {
            if (role == PeerRole.Exit)
                throw new ConfigurationException("--exit-region", "only a client (role client or both) asks for an exit; an exit serves its own region");
            if (!RegionName.IsValid(ExitRegion, out var exitRegionProblem))
                throw new ConfigurationException("--exit-region", exitRegionProblem);
            exitRegion = ExitRegion;
        }

        var dataPlane = ValidateDataPlane(role, isRoot ?? Environment.IsPrivilegedProcess);
        var stateDir = ValidateStateDir(StateDir, Id!, isRoot ?? Environment.IsPrivilegedProcess,
            home ?? Environment.GetFolderPath(Environment.SpecialFolder.UserProfile));
        var metrics = string.IsNullOrWhiteSpace(Metrics) ? null : HostPort.Parse(Metrics, "--metrics");
        var otlp = Telemetry.Tracing.ParseOtlp(Otlp);
        var crl = CrlStore.Open(Path.Combine(stateDir, CrlFileName), Crl, ca, new CertificateRevocations(ca), "--state-dir");
        return new PeerSettings(role, Id!, Region, key, ca, supernodes, token, exitRegion, stateDir, dataPlane) { Metrics = metrics, Crl = crl, Otlp = otlp };
    }

    private static PeerRole ParseRole(string? role) => role?.Trim().ToLowerInvariant() switch
    {
        "client" => PeerRole.Client,
        "exit" => PeerRole.Exit,
        "both" => PeerRole.Both,
        null or "" => throw new ConfigurationException("--role", "is required: client, exit or both"),
        _ => throw new ConfigurationException("--role", $"'{role}' is not a peer role: use client, exit or both"),
    };

    private static IdentityKey LoadKey(string? path)
    {
        if (string.IsNullOrWhiteSpace(path))
            throw new ConfigurationException("--key", "is required: the peer's Ed25519 identity key file (make one with `mydvpn keygen --out FILE`)");
        if (!File.Exists(path))
            throw new ConfigurationException("--key", $"'{path}' does not exist: make the peer's identity key with `mydvpn keygen --out {path}`");
        try
        {
            return IdentityKey.Load(path);
        }
        catch (CertificateException ex)
        {
            throw new ConfigurationException("--key", ex.Message, ex);
        }
    }

    private static X509Certificate2 LoadCa(string? path)
    {
        if (string.IsNullOrWhiteSpace(path))
            throw new ConfigurationException("--ca", "is required: the operator CA certificate (ca.crt from `mydvpn ca init`) the SuperNodes' certificates are checked against");
        if (!File.Exists(path))
            throw new ConfigurationException("--ca", $"'{path}' does not exist: give the operator's ca.crt (made by `mydvpn ca init`, copied by `mydvpn ca issue`)");
        X509Certificate2 ca;
        try
        {
            ca = X509Certificate2.CreateFromPem(File.ReadAllText(path));
        }
        catch (Exception ex) when (ex is CryptographicException or ArgumentException or IOException or UnauthorizedAccessException)
        {
            throw new ConfigurationException("--ca", $"'{path}' is not a readable PEM certificate ({ex.Message})", ex);
        }
        var constraints = ca.Extensions.OfType<X509BasicConstraintsExtension>().FirstOrDefault();
        if (constraints is not { CertificateAuthority: true })
        {
            ca.Dispose();
            throw new ConfigurationException("--ca", $"'{path}' is not a CA certificate: give the operator's ca.crt, not a node's tls.crt");
        }
        return ca;
    }

    private DataPlaneSettings ValidateDataPlane(PeerRole role, bool isRoot)
    {
        var mode = DataPlane?.Trim().ToLowerInvariant() switch
        {
            null or "" or "wireguard" => DataPlaneMode.WireGuard,
            "none" => DataPlaneMode.None,
            _ => throw new ConfigurationException("--data-plane", $"'{DataPlane}' is not a data plane: use wireguard (the default) or none"),
        };
        if (mode == DataPlaneMode.WireGuard && !isRoot)
        {
            throw new ConfigurationException("--data-plane",
                "driving a WireGuard interface needs root (CAP_NET_ADMIN): run the agent as root, or pass --data-plane none to keep only the tunnel state (tests, several agents on one host)");
        }

        var wgInterface = string.IsNullOrWhiteSpace(WgInterface) ? DefaultWireGuardInterface : WgInterface.Trim();
        if (!InterfaceName.IsValid(wgInterface, out var interfaceProblem))
            throw new ConfigurationException("--wg-interface", $"'{WgInterface}' {interfaceProblem}");
        string? uplink = null;
        if (!string.IsNullOrWhiteSpace(Uplink))
        {
            if (!InterfaceName.IsValid(Uplink.Trim(), out var uplinkProblem))
                throw new ConfigurationException("--uplink", $"'{Uplink}' {uplinkProblem}");
            uplink = Uplink.Trim();
        }

        HostPort? publicEndpoint = null;
        if (!string.IsNullOrWhiteSpace(PublicEndpoint))
        {
            if (role == PeerRole.Client)
                throw new ConfigurationException("--public-endpoint", "only an exit (role exit or both) is reached by clients; a client needs no public endpoint");
            publicEndpoint = HostPort.Parse(PublicEndpoint, "--public-endpoint");
        }

        if (MaxClients is { } maxClients)
        {
            if (role == PeerRole.Client)
                throw new ConfigurationException("--max-clients", "only an exit (role exit or both) serves clients");
            if (maxClients < 1)
                throw new ConfigurationException("--max-clients", $"{maxClients} is not a number of clients: give at least 1");
        }

        var wgPort = WgPort ?? DefaultWireGuardPort;
        if (wgPort is < 1 or > 65535)
            throw new ConfigurationException("--wg-port", $"{wgPort} is not a UDP port (1-65535)");
        return new DataPlaneSettings(wgInterface, uplink, publicEndpoint, MaxClients ?? DefaultMaxClients, wgPort, mode);
    }

    /// <summary>Where a peer keeps its state unless told: <c>/var/lib/mydvpn/ID</c> as root, <c>~/.local/state/mydvpn/ID</c> otherwise.</summary>
    public static string DefaultStateDir(string id, bool isRoot, string home) => Path.Combine(DefaultStateRoot(isRoot, home), id);

    /// <summary>The directory holding every peer's default state directory: <c>/var/lib/mydvpn</c> as root, <c>~/.local/state/mydvpn</c> otherwise.</summary>
    public static string DefaultStateRoot(bool isRoot, string home) =>
        isRoot ? "/var/lib/mydvpn" : Path.Combine(home, ".local", "state", "mydvpn");

    /// <summary><see cref="DefaultStateRoot(bool, string)"/> for this process: its privilege and its user's home.</summary>
    public static string DefaultStateRoot() =>
        DefaultStateRoot(Environment.IsPrivilegedProcess, Environment.GetFolderPath(Environment.SpecialFolder.UserProfile));

    /// <summary><see cref="DefaultStateDir(string, bool, string)"/> for this process: where <c>mydvpn peer --id ID</c> keeps its state unless told.</summary>
    public static string DefaultStateDir(string id) => Path.Combine(DefaultStateRoot(), id);

    private static string ValidateStateDir(string? stateDir, string id, bool isRoot, string home)
    {
        var dir = stateDir;
        if (string.IsNullOrWhiteSpace(dir))
        {
            if (!isRoot && string.IsNullOrEmpty(home))
                throw new ConfigurationException("--state-dir", "is required: this user has no home directory for the default ~/.local/state/mydvpn/<id>");
            dir = DefaultStateDir(id, isRoot, home);
        }
        try
        {
            var full = Path.GetFullPath(dir);
            OwnerOnly.CreateDirectory(full);
            var probe = Path.Combine(full, $".write-test-{Environment.ProcessId}");
            File.WriteAllText(probe, "");
            File.Delete(probe);
            return full;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new ConfigurationException("--state-dir", $"'{dir}' is not a writable directory ({ex.Message})", ex);
        }
    }
}

/// <summary>Validated settings of a peer agent.</summary>
/// <param name="Token">The enrollment token; sent only until the peer has enrolled once.</param>
/// <param name="StateDir">Where applied command ids, the enrollment record, the command log, the WireGuard key, the tunnel state and the status socket live.</param>
public sealed record PeerSettings(
    PeerRole Role,
    string Id,
    string Region,
    IdentityKey Key,
    X509Certificate2 Ca,
    IReadOnlyList<HostPort> SuperNodes,
    string? Token,
    string? ExitRegion,
    string StateDir,
    DataPlaneSettings DataPlane)
{
    public PeerTimings Timings { get; init; } = new();

    /// <summary>Where <c>/metrics</c> is served (<c>--metrics</c>); null: not served.</summary>
    public HostPort? Metrics { get; init; }

    /// <summary>The OTLP collector the agent's spans go to (<c>--otlp</c>); null: no tracing.</summary>
    public Uri? Otlp { get; init; }

    /// <summary>
    /// The operator CA's revocation list the peer holds (<c>--crl</c>, then the newest a SuperNode's challenge carried):
    /// SuperNodes whose certificates it revokes are refused. Null: the peer keeps none (settings built by tests).
    /// </summary>
    public CrlStore? Crl { get; init; }
}

/// <summary>
/// The data plane's settings. <see cref="MaxClients"/>, <see cref="WireGuardPort"/> and <see cref="PublicEndpoint"/> go into
/// the ExitOffer and the answers to exit-side SetupExit; with <see cref="Mode"/> WireGuard the agent owns the interface
/// <see cref="WireGuardInterface"/> and an exit forwards out of <see cref="Uplink"/> (null: the default route's).
/// </summary>
/// <param name="Mode">Whether the tunnel state is applied to a WireGuard interface (<c>--data-plane</c>).</param>
public sealed record DataPlaneSettings(
    string WireGuardInterface,
    string? Uplink,
    HostPort? PublicEndpoint,
    int MaxClients,
    int WireGuardPort,
    DataPlaneMode Mode = DataPlaneMode.None);

public enum DataPlaneMode
{
    /// <summary>The tunnel state is kept (tunnel.json) but no interface is touched: tests, benchmarks, several agents on one host.</summary>
    None,

    /// <summary>The agent's WireGuardActor makes the host match the tunnel state.</summary>
    WireGuard,
}

/// <summary>The control stream's timing. The defaults are the protocol's; tests shorten them.</summary>
public sealed record PeerTimings
{
    /// <summary>The first reconnect waits at most this long (full jitter: anything from zero).</summary>
    public TimeSpan ReconnectBase { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>No reconnect waits longer than this.</summary>
    public TimeSpan ReconnectCap { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>A stream that stayed authenticated this long resets the backoff.</summary>
    public TimeSpan StableAfter { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>From opening a stream to its AuthResponse, at most.</summary>
    public TimeSpan AuthTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>TCP and TLS connect, at most.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Used when an AuthResponse carries no heartbeat interval.</summary>
    public TimeSpan DefaultHeartbeat { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// The shortest heartbeat interval the peer takes from a SuperNode: a shorter one would make it drop a healthy stream
    /// after a few milliseconds of silence (and reconnect in a loop); it uses this instead.
    /// </summary>
    public TimeSpan MinHeartbeat { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>The longest heartbeat interval the peer takes: a longer one would leave a dead stream unnoticed for hours; it uses this instead.</summary>
    public TimeSpan MaxHeartbeat { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>A stream silent for this many heartbeat intervals is dead.</summary>
    public int MissedHeartbeats { get; init; } = 3;

    /// <summary>How often the WireGuard interface is reported to the SuperNode (StatusReport).</summary>
    public TimeSpan StatusReportInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>How often the WireGuard interface is read (for <c>mydvpn status</c> and the path test); a reading is cheap (UAPI).</summary>
    public TimeSpan PathCheckInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Sending to the exit and receiving nothing this long gets the path tested with a ping of the exit's tunnel address.</summary>
    public TimeSpan ProbeAfter { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>A ping of the path test unanswered this long: the path is reported broken.</summary>
    public TimeSpan ProbeTimeout { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// After the exit changes, the interface is read every <see cref="HandshakeWatchInterval"/> and reported as soon as the
    /// first handshake with the new exit completes, or when none did within this long: the SuperNode relays a path that
    /// cannot work on that report, not one to <see cref="StatusReportInterval"/> later.
    /// </summary>
    public TimeSpan FirstHandshakeWithin { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>How often the interface is read while waiting for the first handshake with a new exit.</summary>
    public TimeSpan HandshakeWatchInterval { get; init; } = TimeSpan.FromMilliseconds(250);

    /// <summary>An ExitRequest unanswered this long is sent again (the SuperNode ignores a repeat while one is in progress).</summary>
    public TimeSpan ExitRequestTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>The first retry after a transient ExitRequestFailed waits at most this long (full jitter).</summary>
    public TimeSpan ExitRetryBase { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>No retry of an ExitRequest waits longer than this.</summary>
    public TimeSpan ExitRetryCap { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>After the exit went away (a client-side RemoveExit), a new ExitRequest goes out after this long.</summary>
    public TimeSpan ExitReaskDelay { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>On a clean stop, how long the agent waits for its ExitRelease to be written before closing the stream.</summary>
    public TimeSpan ExitReleaseTimeout { get; init; } = TimeSpan.FromSeconds(2);
}

/// <summary>Linux network interface names (IFNAMSIZ): what <c>ip link</c> accepts.</summary>
public static class InterfaceName
{
    public const int MaxLength = 15;

    public static bool IsValid(string? name, out string reason)
    {
        reason = "";
        if (string.IsNullOrEmpty(name))
            reason = "is empty";
        else if (name.Length > MaxLength)
            reason = $"is longer than {MaxLength} characters, the limit of a network interface name";
        else if (name is "." or ".." || name.Any(c => c is '/' or ':' || char.IsWhiteSpace(c) || char.IsControl(c) || c > '~'))
            reason = "is not a network interface name: use letters, digits, '-', '_' and '.' (no '/', ':' or spaces)";
        return reason.Length == 0;
    }
}
