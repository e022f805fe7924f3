using System.Net;
using MyDvpn.Common;
using MyDvpn.Hosting;
using MyDvpn.SuperNode.Edge;

namespace MyDvpn.SuperNode;

/// <summary><c>mydvpn super</c> settings as bound from flags, config file or environment.</summary>
public sealed class SuperNodeOptions : ClusterNodeOptions
{
    public string? Region { get; set; }
    public string? Id { get; set; }
    public List<string> Base { get; set; } = [];
    public string? PublicIp { get; set; }
    public string? RelayPorts { get; set; }
    /// <summary>Peer streams held at most; null: as many as the descriptor limit allows (<see cref="DefaultMaxStreams"/>).</summary>
    public int? MaxStreams { get; set; }

    /// <summary>The default of <see cref="MaxStreams"/> where the descriptor limit cannot be read, and its cap where it can.</summary>
    public const int MaxStreamsCap = 100_000;

    /// <summary>Connections a SuperNode holds besides its peers' streams: BaseNodes, the SuperNodes of its region and of others, admins.</summary>
    public const int ConnectionsBesidePeers = 256;

    /// <summary>
    /// As many streams as fit in the process's descriptor limit (<c>ulimit -n</c>) beside the other connections, one UDP
    /// socket per relay port and <see cref="FileDescriptorLimit.Headroom"/>, at most <see cref="MaxStreamsCap"/>: a
    /// SuperNode started without <c>--max-streams</c> refuses streams past its capacity (AT_CAPACITY) instead of failing
    /// when it runs out of descriptors. With 20,000 descriptors and 1,000 relay ports: 17,720.
    /// </summary>
    public static int DefaultMaxStreams(ulong? descriptorLimit, int relayPorts) =>
        descriptorLimit is { } limit ? FileDescriptorLimit.StreamsThatFit(limit, ConnectionsBesidePeers + relayPorts, MaxStreamsCap) : MaxStreamsCap;

    /// <summary>
    /// The streams a SuperNode admits: <paramref name="requested"/> (--max-streams) or <see cref="DefaultMaxStreams"/>, but
    /// never more than fit in the descriptor limit: past it the runtime itself fails (it needs descriptors for threads
    /// and code) and the process dies, so streams past what fits are refused with AT_CAPACITY instead.
    /// </summary>
    public static int StreamsAdmitted(int? requested, ulong? descriptorLimit, int relayPorts) => (requested, descriptorLimit) switch
    {
        (null, _) => DefaultMaxStreams(descriptorLimit, relayPorts),
        ({ } streams, null) => streams,
        ({ } streams, { } limit) => Math.Min(streams, FileDescriptorLimit.StreamsThatFit(limit, ConnectionsBesidePeers + relayPorts, int.MaxValue)),
    };

    /// <summary>
    /// How long a SuperNode that stops cleanly waits for a BaseNode to take its deregistration (config/environment only:
    /// Super:DeregisterTimeout); past it the directory marks the SuperNode down after its grace instead.
    /// </summary>
    public TimeSpan DeregisterTimeout { get; set; } = TimeSpan.FromSeconds(3);
    /// <summary>Timing and limits of the peers' edge (config/environment only: Super:Edge:…).</summary>
    public EdgeSettings Edge { get; set; } = new();
    /// <summary>Exit allocation and tunnel addressing (config/environment only: Super:Exits:…).</summary>
    public Exits.ExitSettings Exits { get; set; } = new();
    /// <summary>Relay legs' timing and buffer (config/environment only: Super:Relay:…).</summary>
    public Relay.RelaySettings Relay { get; set; } = new();
    /// <summary>Command delivery and passivation of peer sessions (config/environment only: Super:Sessions:…).</summary>
    public Sessions.PeerSessionSettings Sessions { get; set; } = new();

    public new SuperNodeSettings Validate()
    {
        if (!RegionName.IsValid(Region, out var regionProblem))
            throw new ConfigurationException("--region", regionProblem);
        if (!NodeId.IsValid(Id, out var idProblem))
            throw new ConfigurationException("--id", $"'{Id}' {idProblem}");
        var bases = HostPort.ParseList(Base, "--base");
        if (bases.Count == 0)
            throw new ConfigurationException("--base", "is required: the BaseNodes' gRPC addresses, HOST:PORT[,HOST:PORT...]");
        var publicIp = AddressParsing.ParseIp(PublicIp, "--public-ip");
        var (relayLow, relayHigh) = ParseRelayPorts(RelayPorts);
        if (MaxStreams < 1)
            throw new ConfigurationException("--max-streams", "must be at least 1");
        if (DeregisterTimeout <= TimeSpan.Zero)
            throw new ConfigurationException("Super:DeregisterTimeout", $"must be positive, e.g. 00:00:03 (was {DeregisterTimeout})");
        var maxStreams = StreamsAdmitted(MaxStreams, FileDescriptorLimit.Current(), relayHigh - relayLow + 1);
        try
        {
            Edge.Validate();
        }
        catch (ArgumentException ex)
        {
            throw new ConfigurationException($"Super:Edge:{ex.ParamName}", ex.Message);
        }
        try
        {
            Exits.Validate();
        }
        catch (ArgumentException ex)
        {
            throw new ConfigurationException($"Super:Exits:{ex.ParamName}", ex.Message);
        }
        try
        {
            Relay.Validate();
        }
        catch (ArgumentException ex)
        {
            throw new ConfigurationException($"Super:Relay:{ex.ParamName}", ex.Message);
        }
        try
        {
            Sessions.Validate();
        }
        catch (ArgumentException ex)
        {
            throw new ConfigurationException($"Super:Sessions:{ex.ParamName}", ex.Message);
        }
        var node = Validate(MyDvpn.Security.NodeRole.Super, MyDvpn.Security.NodeIdentity.Super(Id!, Region!));
        return new SuperNodeSettings(node, Region!, Id!, bases, publicIp, relayLow, relayHigh, maxStreams, Edge)
        {
            Exits = Exits,
            Relay = Relay,
            Sessions = Sessions,
            DeregisterTimeout = DeregisterTimeout,
            MaxStreamsRequested = MaxStreams,
        };
    }

    private static (int Low, int High) ParseRelayPorts(string? value)
    {
        var parts = (value ?? "").Split('-', StringSplitOptions.TrimEntries);
        if (parts.Length == 2 && int.TryParse(parts[0], out var low) && int.TryParse(parts[1], out var high)
            && low is >= 1 and <= 65535 && high is >= 1 and <= 65535 && low <= high)
            return (low, high);
        throw new ConfigurationException("--relay-ports", $"'{value}' is not a port range LOW-HIGH within 1-65535 (e.g. 40000-40999)");
    }
}

public sealed record SuperNodeSettings(
    ClusterNodeSettings Node,
    string Region,
    string Id,
    IReadOnlyList<HostPort> BaseNodes,
    IPAddress PublicIp,
    int RelayPortLow,
    int RelayPortHigh,
    int MaxStreams,
    EdgeSettings Edge)
{
    public Exits.ExitSettings Exits { get; init; } = MyDvpn.SuperNode.Exits.ExitSettings.Default;

    public Relay.RelaySettings Relay { get; init; } = MyDvpn.SuperNode.Relay.RelaySettings.Default;

    public Sessions.PeerSessionSettings Sessions { get; init; } = MyDvpn.SuperNode.Sessions.PeerSessionSettings.Default;

    public TimeSpan DeregisterTimeout { get; init; } = TimeSpan.FromSeconds(3);

    /// <summary>--max-streams as given (null: the default), which <see cref="MaxStreams"/> is less than when the descriptor limit cut it.</summary>
    public int? MaxStreamsRequested { get; init; }

    /// <summary>The address peers and other SuperNodes dial: the public IP and the --listen port.</summary>
    public string GrpcEndpoint => new HostPort(PublicIp.ToString(), Node.Listen.Port).ToString();
}
