using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text.Json;
using MyDvpn.HostOs;

namespace MyDvpn.Testbed;

/// <summary>
/// A small IPv4 internet in network namespaces of its own (named <c>tb&lt;6 hex&gt;-&lt;role&gt;</c>, so testbeds run side by
/// side). The <c>internet</c> namespace is a router whose bridge holds 198.51.100.1/24 and serves an HTTP echo (a GET
/// answers the caller's source address); <c>base</c>, <c>sn-a</c>, <c>sn-b</c> sit on the bridge (.10, .11, .12);
/// <c>exit-nat</c> (.20) masquerades 10.1.0.0/24 and forwards UDP 51820 to <c>exit</c> (10.1.0.2); <c>client-nat</c> (.21)
/// masquerades 10.2.0.0/24 in front of <c>client</c> (10.2.0.2) and forwards nothing; asked for, <c>exit2-nat</c> (.22)
/// and <c>exit2</c> (10.3.0.2) are a second exit host built like the first. Interfaces are created in their
/// namespaces directly: nothing is ever named in the root namespace.
/// <para>
/// Dispose tears everything down — processes started through it and any other process left in its namespaces are
/// killed, the namespaces (and with them veths, bridge and nftables tables) deleted — and throws if something is left.
/// A process that exits normally (end of Main, Environment.Exit, a host turning SIGTERM or Ctrl+C into a graceful exit)
/// tears down the testbeds it still holds. One killed by a signal cannot (since .NET 10 the runtime installs no SIGTERM
/// handler, and SIGKILL is SIGKILL): <see cref="CreateAsync(CancellationToken)"/> first removes leftovers of dead testbeds
/// (<see cref="RemoveLeftoversAsync"/>).
/// </para>
/// </summary>
public sealed class NetnsTestbed : IAsyncDisposable
{
    /// <summary>Where each testbed writes its owner file (<c>{id}.owner</c>: "pid starttime").</summary>
    public const string OwnerDirectory = TestbedOwnership.OwnerDirectory;

    private const string BridgeName = "br0";
    private const string HostInterface = "eth0";
    private const string WanInterface = "wan";
    private const string LanInterface = "lan";
    private static readonly TimeSpan ProcessExitBound = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan TeardownOnExitBound = TimeSpan.FromSeconds(30);

    private static readonly ConcurrentDictionary<string, NetnsTestbed> Live = new();

    private readonly List<TrackedProcess> _processes = [];
    private readonly List<HttpEcho> _echoServers = [];
    private readonly SemaphoreSlim _teardown = new(1, 1);
    private bool _tornDown;

    static NetnsTestbed() => AppDomain.CurrentDomain.ProcessExit += (_, _) => TearDownAllOnExit();

    private NetnsTestbed(string id, bool secondExit)
    {
        Id = id;
        Namespaces = new TestbedNamespaces(id, secondExit);
    }

    /// <summary>This testbed's id, the prefix of its namespace names (<c>tb1a2b3c</c>).</summary>
    public string Id { get; }

    public TestbedNamespaces Namespaces { get; }

    /// <summary>This testbed's owner file; a testbed whose owner file is missing or names a dead process is a leftover.</summary>
    public string OwnerFile => TestbedOwnership.OwnerFile(Id);

    /// <summary>The HTTP echo server on the internet router: <c>http://198.51.100.1/</c>.</summary>
    public string EchoUrl { get; } = $"http://{TestbedAddresses.Router}:{TestbedAddresses.EchoPort}/";

    /// <summary>
    /// Builds a testbed: checks the machine (root, ip, nft, sysctl), removes leftovers of dead testbeds, creates the
    /// namespaces, links, addresses, routes, forwarding and NAT rules, and starts the HTTP echo server. On failure
    /// whatever was created is torn down before the exception propagates.
    /// </summary>
    /// <exception cref="TestbedPrerequisiteException">The machine cannot host a testbed; the message says how to fix it.</exception>
    public static Task<NetnsTestbed> CreateAsync(CancellationToken cancellationToken = default) => CreateAsync(secondExit: false, cancellationToken);

    /// <summary>
    /// Builds a testbed as <see cref="CreateAsync(CancellationToken)"/> does; with <paramref name="secondExit"/> it also has
    /// <c>exit2</c> (10.3.0.2) behind <c>exit2-nat</c> (198.51.100.22, UDP 51820 forwarded), built like <c>exit</c> and its NAT.
    /// </summary>
    /// <exception cref="TestbedPrerequisiteException">The machine cannot host a testbed; the message says how to fix it.</exception>
    public static async Task<NetnsTestbed> CreateAsync(bool secondExit, CancellationToken cancellationToken = default)
    {
        Prerequisites.Check();
        await TestbedOwnership.RemoveLeftoversAsync(cancellationToken);

        var testbed = new NetnsTestbed(await ClaimIdAsync(cancellationToken), secondExit);
        Live[testbed.Id] = testbed;
        try
        {
            await testbed.BuildAsync(cancellationToken);
            return testbed;
        }
        catch (Exception failure)
        {
            try
            {
                await testbed.TearDownAsync();
            }
            catch (Exception cleanup)
            {
                throw new AggregateException($"creating testbed {testbed.Id} failed, and so did tearing it down", failure, cleanup);
            }
            throw;
        }
    }

    /// <summary>Checks that this machine can host a testbed (Linux, CAP_NET_ADMIN and CAP_SYS_ADMIN, ip, nft, sysctl).</summary>
    /// <exception cref="TestbedPrerequisiteException">It cannot; the message says how to fix it.</exception>
    public static void CheckPrerequisites() => Prerequisites.Check();

    /// <summary>
    /// Removes the namespaces (after killing the processes in them) and owner files of testbeds whose owner process is
    /// gone; testbeds of live processes, this one included, are left alone. Returns the ids removed.
    /// </summary>
    public static async Task<IReadOnlyList<string>> RemoveLeftoversAsync(CancellationToken cancellationToken = default)
    {
        Prerequisites.Check();
        return await TestbedOwnership.RemoveLeftoversAsync(cancellationToken);
    }

    /// <summary>The runner for commands inside one of this testbed's namespaces (a role or a full name).</summary>
    public HostCommand For(string roleOrNamespace) => HostCommand.Host.In(Namespaces.Resolve(roleOrNamespace));

    /// <summary>
    /// The address the internet sees a host as: its own for hosts on the bridge, its NAT's public address for
    /// <c>exit</c> and <c>client</c>.
    /// </summary>
    public IPAddress PublicAddress(string roleOrNamespace) => Namespaces.RoleOf(roleOrNamespace) switch
    {
        TestbedRoles.Internet => TestbedAddresses.Router,
        TestbedRoles.Base => TestbedAddresses.Base,
        TestbedRoles.SnA => TestbedAddresses.SnA,
        TestbedRoles.SnB => TestbedAddresses.SnB,
        TestbedRoles.SnB2 => TestbedAddresses.SnB2,
        TestbedRoles.SnB3 => TestbedAddresses.SnB3,
        TestbedRoles.ExitNat or TestbedRoles.Exit => TestbedAddresses.ExitNatPublic,
        TestbedRoles.ClientNat or TestbedRoles.Client => TestbedAddresses.ClientNatPublic,
        TestbedRoles.Exit2Nat or TestbedRoles.Exit2 => TestbedAddresses.Exit2NatPublic,
        var role => throw new ArgumentException($"no public address for role {role}", nameof(roleOrNamespace)),
    };

    /// <summary>A TCP socket inside one of this testbed's namespaces (see <see cref="NetnsSockets"/>).</summary>
    public Socket CreateTcpSocket(string roleOrNamespace) => NetnsSockets.CreateTcp(Namespaces.Resolve(roleOrNamespace));

    /// <summary>A UDP socket inside one of this testbed's namespaces (see <see cref="NetnsSockets"/>).</summary>
    public Socket CreateUdpSocket(string roleOrNamespace) => NetnsSockets.CreateUdp(Namespaces.Resolve(roleOrNamespace));

    /// <summary>
    /// GET <paramref name="url"/> (an IP address, no names) from a socket inside <paramref name="fromNamespace"/>; returns the
    /// body of a 200 answer.
    /// </summary>
    /// <exception cref="TimeoutException">No complete answer within <paramref name="timeout"/>.</exception>
    /// <exception cref="TestbedException">Connecting failed, or the answer was not 200.</exception>
    public async Task<string> HttpGetAsync(string fromNamespace, string url, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        var ns = Namespaces.Resolve(fromNamespace);
        var (endpoint, uri) = MinimalHttp.Target(url);
        using var socket = NetnsSockets.CreateTcp(ns);
        using var bound = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        bound.CancelAfter(timeout);
        MinimalHttp.Response response;
        try
        {
            response = await MinimalHttp.GetAsync(socket, endpoint, uri, bound.Token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new TimeoutException($"GET {url} from {ns} got no complete answer within {timeout.TotalSeconds:0.###} s");
        }
        catch (Exception ex) when (ex is SocketException or InvalidDataException)
        {
            throw new TestbedException($"GET {url} from {ns} failed: {ex.Message}", ex);
        }
        return response.Status == 200
            ? response.Body
            : throw new TestbedException($"GET {url} from {ns} answered {response.StatusLine}: {response.Body}");
    }

    /// <summary>
    /// <c>ping -c COUNT -q</c> from inside a namespace (0.2 s apart, each reply awaited at most 1 s, the whole run bounded).
    /// Loss is a result, not an error.
    /// </summary>
    /// <exception cref="TestbedPrerequisiteException">ping is not installed (Debian package iputils-ping).</exception>
    /// <exception cref="HostCommandException">ping failed for another reason than loss (exit code 2: bad address …).</exception>
    public async Task<PingResult> PingAsync(string fromNamespace, string address, int count, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        Prerequisites.RequireTool("ping", "iputils-ping");
        var deadlineSeconds = (int)Math.Ceiling(count * 0.2) + 2;
        using var bound = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        bound.CancelAfter(TimeSpan.FromSeconds(deadlineSeconds + 10));
        var result = await For(fromNamespace).RunAsync("ping",
            ["-n", "-q", "-c", count.ToString(CultureInfo.InvariantCulture), "-i", "0.2", "-W", "1",
                "-w", deadlineSeconds.ToString(CultureInfo.InvariantCulture), address],
            cancellationToken: bound.Token);
        // iputils: 0 all answered, 1 some or all lost, 2 anything else.
        if (result.ExitCode is not (0 or 1))
            result.EnsureSuccess();
        try
        {
            return PingResult.Parse(result.StandardOutput);
        }
        catch (FormatException)
        {
            throw new HostCommandException(result);
        }
    }

    /// <summary>
    /// Makes the internet router drop UDP between the two NATs' public addresses (198.51.100.20 ↔ .21), both ways, so
    /// the exit and the client cannot talk directly (a relay must carry them); TCP and everything else still pass.
    /// </summary>
    public Task DropUdpBetweenNatsAsync(CancellationToken cancellationToken = default) =>
        NftAsync(TestbedRoles.Internet, NftRules.DropUdpBetween(TestbedAddresses.ExitNatPublic, TestbedAddresses.ClientNatPublic), cancellationToken);

    /// <summary>
    /// Drops all UDP from and to <paramref name="natPublic"/> on the internet router: the WireGuard of the host behind that NAT
    /// hears nobody, neither peers nor relay legs, while its TCP (a peer's control stream) still passes. Undone by
    /// <see cref="AllowUdpBetweenNatsAsync"/>.
    /// </summary>
    public Task DropUdpOfAsync(IPAddress natPublic, CancellationToken cancellationToken = default) =>
        NftAsync(TestbedRoles.Internet, NftRules.DropUdpOf(natPublic), cancellationToken);

    /// <summary>Undoes <see cref="DropUdpBetweenNatsAsync"/> (and <see cref="DropUdpOfAsync"/>).</summary>
    public Task AllowUdpBetweenNatsAsync(CancellationToken cancellationToken = default) =>
        NftAsync(TestbedRoles.Internet, NftRules.AllowAll(), cancellationToken);

    /// <summary>How many packets the rules of <see cref="DropUdpBetweenNatsAsync"/> have dropped (0 when they are not in place).</summary>
    public async Task<long> DroppedUdpBetweenNatsAsync(CancellationToken cancellationToken = default)
    {
        var listing = await For(TestbedRoles.Internet).RunCheckedAsync("nft",
            ["-j", "list", "chain", "bridge", NftRules.Table, NftRules.BridgeForwardChain], cancellationToken: cancellationToken);
        using var document = JsonDocument.Parse(listing);
        long packets = 0;
        foreach (var item in document.RootElement.GetProperty("nftables").EnumerateArray())
        {
            if (!item.TryGetProperty("rule", out var rule) || !rule.TryGetProperty("expr", out var expressions))
                continue;
            foreach (var expression in expressions.EnumerateArray())
            {
                if (expression.TryGetProperty("counter", out var counter) && counter.ValueKind == JsonValueKind.Object)
                    packets += counter.GetProperty("packets").GetInt64();
            }
        }
        return packets;
    }

    /// <summary>
    /// Starts another HTTP echo server (a GET answers the caller's source address) inside one of this testbed's
    /// namespaces, e.g. on a NAT's public address; it stops with the testbed or when disposed.
    /// </summary>
    public HttpEcho StartHttpEcho(string roleOrNamespace, IPEndPoint endpoint)
    {
        ObjectDisposedException.ThrowIf(_tornDown, this);
        var echo = HttpEcho.Start(Namespaces.Resolve(roleOrNamespace), endpoint);
        lock (_echoServers)
            _echoServers.Add(echo);
        return echo;
    }

    /// <summary>
    /// Starts a long-running program inside one of this testbed's namespaces (<c>ip netns exec</c>, an argument list),
    /// its stdout and stderr appended to <paramref name="logFile"/>. The testbed kills its process tree on dispose.
    /// </summary>
    /// <exception cref="TestbedException">It could not be started.</exception>
    public Task<Process> StartAsync(string ns, string program, IReadOnlyList<string> args, IDictionary<string, string>? env,
        string logFile, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_tornDown, this);
        cancellationToken.ThrowIfCancellationRequested();
        var start = For(ns).StartInfo(program, args);
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        foreach (var (name, value) in env ?? new Dictionary<string, string>())
            start.Environment[name] = value;

        var directory = Path.GetDirectoryName(Path.GetFullPath(logFile));
        if (directory is not null)
            Directory.CreateDirectory(directory);
        var log = new StreamWriter(new FileStream(logFile, FileMode.Append, FileAccess.Write, FileShare.ReadWrite)) { AutoFlush = true };
        var process = new Process { StartInfo = start };
        process.OutputDataReceived += (_, line) => Append(log, line.Data);
        process.ErrorDataReceived += (_, line) => Append(log, line.Data);
        try
        {
            process.Start();
        }
        catch (Exception ex) when (ex is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
            log.Dispose();
            process.Dispose();
            throw new TestbedException($"cannot start `{HostCommand.Describe(start.FileName, start.ArgumentList)}`: {ex.Message}", ex);
        }
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        lock (_processes)
            _processes.Add(new TrackedProcess(process, log, HostCommand.Describe(program, args)));
        return Task.FromResult(process);
    }

    private static void Append(StreamWriter log, string? line)
    {
        if (line is null)
            return;
        lock (log)
        {
            try
            {
                log.WriteLine(line);
            }
            catch (ObjectDisposedException)
            {
                // Output after teardown closed the log.
            }
        }
    }

    /// <summary>Tears everything down and verifies nothing of this testbed is left; throws <see cref="TestbedException"/> otherwise.</summary>
    public async ValueTask DisposeAsync() => await TearDownAsync();

    private static async Task<string> ClaimIdAsync(CancellationToken cancellationToken)
    {
        var existing = (await TestbedOwnership.ListNamespacesAsync(cancellationToken)).ToHashSet();
        for (var attempt = 0; attempt < 16; attempt++)
        {
            var id = "tb" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(3));
            if (TestbedRoles.All.Any(role => existing.Contains($"{id}-{role}")))
                continue;
            if (TestbedOwnership.TryClaim(id))
                return id;
        }
        throw new TestbedException($"found no free testbed id in {TestbedOwnership.OwnerDirectory} after 16 tries");
    }

    private async Task BuildAsync(CancellationToken ct)
    {
        foreach (var ns in Namespaces.All)
        {
            await IpAsync(ct, "netns", "add", ns);
            await IpAsync(ct, "-n", ns, "link", "set", "lo", "up");
        }

        // The internet: a bridge with the router's address; every public host on a port of it.
        var internet = Namespaces.Internet;
        await IpAsync(ct, "-n", internet, "link", "add", "name", BridgeName, "type", "bridge");
        await IpAsync(ct, "-n", internet, "addr", "add", Cidr(TestbedAddresses.Router, TestbedAddresses.PublicPrefixLength), "dev", BridgeName);
        await IpAsync(ct, "-n", internet, "link", "set", BridgeName, "up");
        await SysctlAsync(internet, "net.ipv4.ip_forward=1", ct);
        await NftAsync(TestbedRoles.Internet, NftRules.BridgeFilter(), ct);

        await PlugIntoInternetAsync(TestbedRoles.Base, HostInterface, TestbedAddresses.Base, ct);
        await PlugIntoInternetAsync(TestbedRoles.SnA, HostInterface, TestbedAddresses.SnA, ct);
        await PlugIntoInternetAsync(TestbedRoles.SnB, HostInterface, TestbedAddresses.SnB, ct);
        await PlugIntoInternetAsync(TestbedRoles.SnB2, HostInterface, TestbedAddresses.SnB2, ct);
        await PlugIntoInternetAsync(TestbedRoles.SnB3, HostInterface, TestbedAddresses.SnB3, ct);
        await PlugIntoInternetAsync(TestbedRoles.ExitNat, WanInterface, TestbedAddresses.ExitNatPublic, ct);
        await PlugIntoInternetAsync(TestbedRoles.ClientNat, WanInterface, TestbedAddresses.ClientNatPublic, ct);

        await BuildLanAsync(TestbedRoles.ExitNat, TestbedRoles.Exit, TestbedAddresses.ExitNatLan, TestbedAddresses.Exit, ct);
        await NftAsync(TestbedRoles.ExitNat, NftRules.Nat(WanInterface, LanInterface, TestbedAddresses.ExitLanNetwork,
            TestbedAddresses.LanPrefixLength, TestbedAddresses.ExitNatPublic, (TestbedAddresses.ExitWireGuardPort, TestbedAddresses.Exit)), ct);
        await BuildLanAsync(TestbedRoles.ClientNat, TestbedRoles.Client, TestbedAddresses.ClientNatLan, TestbedAddresses.Client, ct);
        await NftAsync(TestbedRoles.ClientNat, NftRules.Nat(WanInterface, LanInterface, TestbedAddresses.ClientLanNetwork,
            TestbedAddresses.LanPrefixLength, TestbedAddresses.ClientNatPublic, portForward: null), ct);
        if (Namespaces.SecondExit)
        {
            await PlugIntoInternetAsync(TestbedRoles.Exit2Nat, WanInterface, TestbedAddresses.Exit2NatPublic, ct);
            await BuildLanAsync(TestbedRoles.Exit2Nat, TestbedRoles.Exit2, TestbedAddresses.Exit2NatLan, TestbedAddresses.Exit2, ct);
            await NftAsync(TestbedRoles.Exit2Nat, NftRules.Nat(WanInterface, LanInterface, TestbedAddresses.Exit2LanNetwork,
                TestbedAddresses.LanPrefixLength, TestbedAddresses.Exit2NatPublic, (TestbedAddresses.ExitWireGuardPort, TestbedAddresses.Exit2)), ct);
        }

        StartHttpEcho(TestbedRoles.Internet, new IPEndPoint(TestbedAddresses.Router, TestbedAddresses.EchoPort));
    }

    /// <summary>A veth from a bridge port in <c>internet</c> to <paramref name="role"/>, addressed, default route via the router.</summary>
    private async Task PlugIntoInternetAsync(string role, string hostInterface, IPAddress address, CancellationToken ct)
    {
        var internet = Namespaces.Internet;
        var host = Namespaces.Name(role);
        var port = "p-" + role; // ≤ 15 characters: the longest is "p-client-nat"
        await IpAsync(ct, "link", "add", "name", port, "netns", internet, "type", "veth", "peer", "name", hostInterface, "netns", host);
        await IpAsync(ct, "-n", internet, "link", "set", port, "master", BridgeName, "up");
        await IpAsync(ct, "-n", host, "addr", "add", Cidr(address, TestbedAddresses.PublicPrefixLength), "dev", hostInterface);
        await IpAsync(ct, "-n", host, "link", "set", hostInterface, "up");
        await IpAsync(ct, "-n", host, "route", "add", "default", "via", TestbedAddresses.Router.ToString());
    }

    /// <summary>A veth between a NAT's <c>lan</c> and its host's <c>eth0</c>; the host's default route via the NAT; forwarding on.</summary>
    private async Task BuildLanAsync(string natRole, string hostRole, IPAddress natAddress, IPAddress hostAddress, CancellationToken ct)
    {
        var nat = Namespaces.Name(natRole);
        var host = Namespaces.Name(hostRole);
        await IpAsync(ct, "link", "add", "name", LanInterface, "netns", nat, "type", "veth", "peer", "name", HostInterface, "netns", host);
        await IpAsync(ct, "-n", nat, "addr", "add", Cidr(natAddress, TestbedAddresses.LanPrefixLength), "dev", LanInterface);
        await IpAsync(ct, "-n", nat, "link", "set", LanInterface, "up");
        await IpAsync(ct, "-n", host, "addr", "add", Cidr(hostAddress, TestbedAddresses.LanPrefixLength), "dev", HostInterface);
        await IpAsync(ct, "-n", host, "link", "set", HostInterface, "up");
        await IpAsync(ct, "-n", host, "route", "add", "default", "via", natAddress.ToString());
        await SysctlAsync(nat, "net.ipv4.ip_forward=1", ct);
    }

    private static string Cidr(IPAddress address, int prefixLength) =>
        string.Create(CultureInfo.InvariantCulture, $"{address}/{prefixLength}");

    private static Task<string> IpAsync(CancellationToken ct, params string[] arguments) =>
        HostCommand.Host.RunCheckedAsync("ip", arguments, cancellationToken: ct);

    private static Task<string> SysctlAsync(string ns, string setting, CancellationToken ct) =>
        HostCommand.Host.In(ns).RunCheckedAsync("sysctl", ["-q", "-w", setting], cancellationToken: ct);

    private Task<string> NftAsync(string role, string json, CancellationToken ct) =>
        For(role).RunCheckedAsync("nft", ["-j", "-f", "-"], json, ct);

    private async Task TearDownAsync()
    {
        await _teardown.WaitAsync();
        try
        {
            if (_tornDown)
                return;
            _tornDown = true;
            var problems = new List<string>();

            HttpEcho[] echoServers;
            lock (_echoServers)
                echoServers = [.. _echoServers];
            foreach (var echo in echoServers)
            {
                try
                {
                    await echo.DisposeAsync();
                }
                catch (TestbedException ex)
                {
                    problems.Add(ex.Message);
                }
            }

            TrackedProcess[] processes;
            lock (_processes)
                processes = [.. _processes];
            foreach (var tracked in processes)
                await StopAsync(tracked, problems);

            // Kills whatever else runs in the namespaces (programs callers started through For(ns).StartInfo), then
            // deletes them; veths, the bridge and the nftables tables go with them.
            using var bound = new CancellationTokenSource(TeardownOnExitBound);
            try
            {
                await TestbedOwnership.RemoveNamespacesAsync(Namespaces.All, bound.Token);
            }
            catch (Exception ex) when (ex is TestbedException or HostCommandException or OperationCanceledException)
            {
                problems.Add(ex.Message);
            }

            var left = (await TestbedOwnership.ListNamespacesAsync(CancellationToken.None)).Where(Namespaces.All.Contains).ToList();
            if (left.Count > 0)
                problems.Add($"namespaces still listed by `ip netns list`: {string.Join(", ", left)}");
            problems.AddRange(processes.Where(tracked => !tracked.Process.HasExited)
                .Select(tracked => $"process {tracked.Process.Id} ({tracked.Description}) still runs"));

            if (left.Count == 0)
                TestbedOwnership.Release(Id);
            Live.TryRemove(Id, out _);
            if (problems.Count > 0)
                throw new TestbedException($"tearing down testbed {Id} left things behind: {string.Join("; ", problems)}");
        }
        finally
        {
            _teardown.Release();
        }
    }

    private static async Task StopAsync(TrackedProcess tracked, List<string> problems)
    {
        try
        {
            if (!tracked.Process.HasExited)
                tracked.Process.Kill(entireProcessTree: true);
            // Also drains the redirected output into the log.
            await tracked.Process.WaitForExitAsync().WaitAsync(ProcessExitBound);
        }
        catch (TimeoutException)
        {
            problems.Add($"process {tracked.Process.Id} ({tracked.Description}) did not exit within {ProcessExitBound.TotalSeconds:0} s of SIGKILL");
        }
        catch (InvalidOperationException)
        {
            // Exited between the check and the kill.
        }
        finally
        {
            lock (tracked.Log)
                tracked.Log.Dispose();
        }
    }

    /// <summary>A process exiting normally (end of the test run, Environment.Exit) takes its testbeds with it.</summary>
    private static void TearDownAllOnExit()
    {
        foreach (var testbed in Live.Values)
        {
            try
            {
                testbed.TearDownAsync().Wait(TeardownOnExitBound);
            }
            catch (Exception)
            {
                // Best effort: whatever is left is a leftover the next CreateAsync removes.
            }
        }
    }

    private sealed record TrackedProcess(Process Process, StreamWriter Log, string Description);
}
