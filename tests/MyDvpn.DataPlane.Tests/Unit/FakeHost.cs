using System.Collections.Immutable;
using MyDvpn.DataPlane.Devices;
using MyDvpn.DataPlane.Os;
using MyDvpn.HostOs;
using MyDvpn.Security;

namespace MyDvpn.DataPlane.Tests.Unit;

/// <summary>
/// An in-memory host for the reconciliation logic: links, addresses, routes, rules, sysctls and nft tables as plain
/// collections, every change logged. Thread-safe (the actor's operations run on the thread pool). Not a stand-in for
/// the real tests in network namespaces: it checks the actor's decisions, not the OS.
/// </summary>
internal sealed class FakeHostNetwork : IHostNetwork
{
    private readonly object gate = new();

    public Dictionary<string, LinkReading> Links { get; } = [];
    public Dictionary<string, HashSet<string>> Addresses { get; } = [];
    public Dictionary<string, HashSet<string>> Routes { get; } = [];
    public Dictionary<int, string> TableDefaults { get; } = [];
    public List<RuleReading> Rules { get; } = [];
    public Dictionary<string, string> Sysctls { get; } = new()
    {
        ["net.ipv4.ip_forward"] = "0",
        ["net.ipv4.conf.all.src_valid_mark"] = "0",
    };
    public string? DefaultDevice { get; set; } = "eth0";
    public Dictionary<string, string> NftTables { get; } = [];
    public List<string> Changes { get; } = [];

    /// <summary>Fails the next change whose log line starts with the key, once.</summary>
    public Dictionary<string, Exception> FailOnce { get; } = [];

    public T Locked<T>(Func<FakeHostNetwork, T> read)
    {
        lock (gate)
            return read(this);
    }

    public void Locked(Action<FakeHostNetwork> change)
    {
        lock (gate)
            change(this);
    }

    internal void AddLink(string name)
    {
        lock (gate)
        {
            Links[name] = new LinkReading(1500, false);
            Addresses[name] = [];
            Routes[name] = [];
            Changes.Add($"link add {name}");
        }
    }

    internal void DeleteLink(string name)
    {
        lock (gate)
        {
            if (!Links.Remove(name))
                return;
            Addresses.Remove(name);
            Routes.Remove(name);
            foreach (var table in TableDefaults.Where(t => t.Value == name).Select(t => t.Key).ToList())
                TableDefaults.Remove(table);
            Changes.Add($"link del {name}");
        }
    }

    private Task Change(string what, Action apply)
    {
        lock (gate)
        {
            foreach (var (key, error) in FailOnce)
            {
                if (what.StartsWith(key, StringComparison.Ordinal))
                {
                    FailOnce.Remove(key);
                    throw error;
                }
            }
            apply();
            Changes.Add(what);
        }
        return Task.CompletedTask;
    }

    private Task<T> Read<T>(Func<T> read)
    {
        lock (gate)
            return Task.FromResult(read());
    }

    public Task<LinkReading?> ReadLinkAsync(string name, CancellationToken cancellationToken) =>
        Read(() => Links.TryGetValue(name, out var link) ? link : null);

    public Task SetLinkAsync(string name, int mtu, CancellationToken cancellationToken) =>
        Change($"link set {name} mtu {mtu} up", () => Links[name] = new LinkReading(mtu, true));

    public Task<ImmutableArray<string>> ReadAddressesAsync(string name, CancellationToken cancellationToken) =>
        Read(() => Addresses.TryGetValue(name, out var a) ? a.ToImmutableArray() : throw new HostCommandException(Missing(name)));

    public Task AddAddressAsync(string name, string address, CancellationToken cancellationToken) =>
        Change($"addr add {address} dev {name}", () => Addresses[name].Add(address));

    public Task RemoveAddressAsync(string name, string address, CancellationToken cancellationToken) =>
        Change($"addr del {address} dev {name}", () => Addresses[name].Remove(address));

    public Task<ImmutableArray<string>> ReadRoutesAsync(string name, CancellationToken cancellationToken) =>
        Read(() => Routes.TryGetValue(name, out var r) ? r.ToImmutableArray() : throw new HostCommandException(Missing(name)));

    public Task AddRouteAsync(string name, string network, CancellationToken cancellationToken) =>
        Change($"route add {network} dev {name}", () => Routes[name].Add(network));

    public Task RemoveRouteAsync(string name, string network, CancellationToken cancellationToken) =>
        Change($"route del {network} dev {name}", () => Routes[name].Remove(network));

    public Task<bool> HasTableDefaultRouteAsync(string name, int table, CancellationToken cancellationToken) =>
        Read(() => TableDefaults.TryGetValue(table, out var dev) && dev == name);

    public Task SetTableDefaultRouteAsync(string name, int table, CancellationToken cancellationToken) =>
        Change($"route add default dev {name} table {table}", () => TableDefaults[table] = name);

    public Task RemoveTableDefaultRouteAsync(string name, int table, CancellationToken cancellationToken) =>
        Change($"route del default dev {name} table {table}", () => TableDefaults.Remove(table));

    public Task<ImmutableArray<RuleReading>> ReadRulesAsync(CancellationToken cancellationToken) => Read(() => Rules.ToImmutableArray());

    public Task AddRuleAsync(PolicyRule rule, CancellationToken cancellationToken) =>
        Change($"rule add {rule}", () => Rules.Add(ToReading(rule)));

    public Task RemoveRuleAsync(PolicyRule rule, CancellationToken cancellationToken) =>
        Change($"rule del {rule}", () => Rules.RemoveAll(rule.Matches));

    public static RuleReading ToReading(PolicyRule rule) =>
        new(rule.Priority, rule.NotFwmark is not null, rule.NotFwmark, rule.Table, rule.SuppressPrefixLength);

    public Task<string> ReadSysctlAsync(string key, CancellationToken cancellationToken) => Read(() => Sysctls[key]);

    public Task WriteSysctlAsync(string key, string value, CancellationToken cancellationToken) =>
        Change($"sysctl {key}={value}", () => Sysctls[key] = value);

    public Task<string?> DefaultRouteDeviceAsync(CancellationToken cancellationToken) => Read(() => DefaultDevice);

    public Task<int?> NftTableRuleCountAsync(string interfaceName, CancellationToken cancellationToken) =>
        Read(() => NftTables.TryGetValue(NftExitNat.TableName(interfaceName), out var document)
            ? (int?)System.Text.Json.Nodes.JsonNode.Parse(document)!["nftables"]!.AsArray().Count(c => c!["add"]?["rule"] is not null)
            : null);

    public Task ApplyNftAsync(string document, CancellationToken cancellationToken)
    {
        var table = System.Text.Json.Nodes.JsonNode.Parse(document)!["nftables"]![0]!["add"]!["table"]!["name"]!.GetValue<string>();
        var deletes = document.Contains("\"rule\"", StringComparison.Ordinal) ? false : true;
        return Change($"nft {(deletes ? "delete" : "apply")} {table}", () =>
        {
            if (deletes)
                NftTables.Remove(table);
            else
                NftTables[table] = document;
        });
    }

    public Task DeleteNftTableAsync(string interfaceName, CancellationToken cancellationToken) =>
        ApplyNftAsync(NftExitNat.DeleteDocument(interfaceName), cancellationToken);

    public Task<ImmutableArray<string>> RemoveLeftoverDeviceAsync(string name, bool refuseForeignLink, CancellationToken cancellationToken)
    {
        lock (gate)
        {
            if (!Links.ContainsKey(name))
                return Task.FromResult(ImmutableArray<string>.Empty);
            DeleteLink(name);
            return Task.FromResult(ImmutableArray.Create($"link {name}"));
        }
    }

    private static CommandResult Missing(string name) => new("ip", ["addr", "show", "dev", name], 1, "", $"Device \"{name}\" does not exist.");
}

/// <summary>Devices that live in a <see cref="FakeHostNetwork"/>: creating one adds its link; every change is kept.</summary>
internal sealed class FakeDeviceFactory(FakeHostNetwork host) : IWireGuardDeviceFactory
{
    private readonly List<FakeDevice> created = [];

    /// <summary>While set, every apply waits for it (and <see cref="ApplyStarted"/> is signalled first).</summary>
    public TaskCompletionSource? ApplyGate { get; set; }

    public SemaphoreSlim ApplyStarted { get; } = new(0);

    /// <summary>Released once per device created.</summary>
    public SemaphoreSlim Creations { get; } = new(0);

    public IReadOnlyList<FakeDevice> Created
    {
        get
        {
            lock (created)
                return [.. created];
        }
    }

    public FakeDevice Current => Created[^1];

    public Task<IWireGuardDevice> CreateAsync(string name, Action<DeviceExit> exited, CancellationToken cancellationToken)
    {
        host.AddLink(name);
        var device = new FakeDevice(this, host, name, exited);
        lock (created)
            created.Add(device);
        Creations.Release();
        return Task.FromResult<IWireGuardDevice>(device);
    }
}

internal sealed class FakeDevice(FakeDeviceFactory factory, FakeHostNetwork host, string name, Action<DeviceExit> exited) : IWireGuardDevice
{
    private static int nextId;
    private readonly object gate = new();
    private DeviceState state = DeviceState.Empty;
    private volatile bool exitedFlag;

    public int Id { get; } = Interlocked.Increment(ref nextId);

    public string Name => name;

    public string Backend => "fake";

    public bool HasExited => exitedFlag;

    public bool Destroyed { get; private set; }

    /// <summary>Every change applied, in order.</summary>
    public List<DeviceChange> Applied { get; } = [];

    public DeviceState State
    {
        get
        {
            lock (gate)
                return state;
        }
    }

    /// <summary>As if wireguard-go were killed: the link goes, the exit is reported.</summary>
    public void Kill()
    {
        exitedFlag = true;
        host.DeleteLink(name);
        exited(new DeviceExit(Id, name, 137, "killed"));
    }

    public Task<DeviceState> ReadAsync(CancellationToken cancellationToken)
    {
        if (exitedFlag)
            throw new IOException("device gone");
        lock (gate)
            return Task.FromResult(state);
    }

    public async Task ApplyAsync(DeviceConfig desired, DeviceChange change, CancellationToken cancellationToken)
    {
        if (factory.ApplyGate is { } applyGate)
        {
            factory.ApplyStarted.Release();
            await applyGate.Task.WaitAsync(cancellationToken);
        }
        lock (gate)
        {
            Applied.Add(change);
            var peers = state.Peers.ToDictionary(p => p.Key);
            foreach (var removed in change.RemovedPeers)
                peers.Remove(Convert.ToBase64String(removed));
            foreach (var added in change.AddedPeers)
                peers[added.Key] = new DevicePeerState(added.PublicKey, added.Endpoint?.ToString(), null, 0, 0, added.PersistentKeepalive, added.AllowedIps);
            foreach (var update in change.ChangedPeers)
            {
                var old = peers[update.Key];
                peers[update.Key] = old with
                {
                    Endpoint = update.Endpoint?.ToString() ?? old.Endpoint,
                    PersistentKeepalive = update.PersistentKeepalive ?? old.PersistentKeepalive,
                    AllowedIps = update.AllowedIps ?? old.AllowedIps,
                };
            }
            var privateKey = change.PrivateKey ?? state.PrivateKey;
            state = new DeviceState(privateKey, privateKey is null ? null : WireGuardKey.FromPrivateKey(privateKey).PublicKey,
                change.ListenPort ?? (state.ListenPort == 0 ? 40000 : state.ListenPort), change.FirewallMark ?? state.FirewallMark,
                [.. desired.Peers.Select(p => peers[p.Key])]);
        }
    }

    /// <summary>Sets a peer's handshake, as traffic would.</summary>
    public void Handshake(byte[] publicKey, DateTimeOffset at)
    {
        lock (gate)
        {
            var key = Convert.ToBase64String(publicKey);
            state = state with { Peers = [.. state.Peers.Select(p => p.Key == key ? p with { LastHandshake = at } : p)] };
        }
    }

    public Task DestroyAsync(CancellationToken cancellationToken)
    {
        Destroyed = true;
        host.DeleteLink(name);
        return Task.CompletedTask;
    }

    public void Dispose()
    {
    }
}
