using MyDvpn.Security;
using Xunit.Abstractions;

namespace MyDvpn.Peer.Tests;

/// <summary>
/// Base of the tests that run the whole agent against real gRPC test SuperNodes: a temporary directory with an
/// operator CA and the peer's identity key, short timings, the agents on a manual <see cref="Clock"/>, and the agents and
/// servers a test starts stopped after it (last started, first stopped). The agent's own timers (reconnect backoff, exit
/// retries, the silence check) fire only when a test moves the clock: it does so while it waits for the real I/O that
/// follows them (<see cref="PumpAsync{T}"/>), so no test depends on how fast the machine runs them.
/// </summary>
public abstract class AgentTestKit : Akka.TestKit.Xunit2.TestKit, IAsyncLifetime
{
    protected const string PeerId = "peer-1", Region = "eu-west";

    /// <summary>How long a test waits for real I/O (gRPC over TLS on loopback), at most.</summary>
    protected static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);

    /// <summary>How far the agents' clock moves per <see cref="PumpInterval"/> while a test waits.</summary>
    private static readonly TimeSpan PumpStep = TimeSpan.FromMilliseconds(20);

    private static readonly TimeSpan PumpInterval = TimeSpan.FromMilliseconds(10);

    /// <summary>
    /// Reconnects and retries short on the agents' clock. The auth deadline (and the SuperNodes' 60 s heartbeat) lie far
    /// beyond what a test's waiting moves the clock (<see cref="Patience"/> at 2 clock ms per ms), so they never cut a slow
    /// TLS handshake short; the TCP connect timeout is the socket's own, on the wall clock.
    /// </summary>
    protected static readonly PeerTimings Fast = new()
    {
        ReconnectBase = TimeSpan.FromMilliseconds(50),
        ReconnectCap = TimeSpan.FromMilliseconds(400),
        AuthTimeout = TimeSpan.FromMinutes(1),
        ConnectTimeout = TimeSpan.FromSeconds(2),
    };

    private readonly List<IAsyncDisposable> cleanup = [];

    protected AgentTestKit(string actorSystemName, ITestOutputHelper output)
        : base("akka.loglevel = INFO", actorSystemName, output)
    {
        Pki = new Pki(Temp);
        KeyFile = Temp.Sub("peer.key");
        Key.Save(KeyFile);
    }

    protected TempDirectory Temp { get; } = new();

    /// <summary>The agents' clock: it starts at the wall clock's now (commands carry wall-clock deadlines) and moves when a test moves it.</summary>
    protected ManualTimeProvider Clock { get; } = new(DateTimeOffset.UtcNow);

    protected Pki Pki { get; }

    /// <summary>The peer's identity key, saved in <see cref="KeyFile"/>.</summary>
    protected IdentityKey Key { get; } = IdentityKey.Generate();

    protected string KeyFile { get; }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        for (var i = cleanup.Count - 1; i >= 0; i--)
            await cleanup[i].DisposeAsync();
        Temp.Dispose();
    }

    /// <summary>Serves <paramref name="superNode"/> with the certificate in <paramref name="tlsDir"/>, or a node certificate of its id.</summary>
    private protected async Task<TestSuperNodeServer> StartServerAsync(TestSuperNode superNode, string? tlsDir = null)
    {
        var server = await TestSuperNodeServer.StartAsync(tlsDir ?? Pki.IssueSuper(superNode.Id, Region), superNode);
        cleanup.Add(server);
        return server;
    }

    protected async Task<PeerAgent> StartAgentAsync(PeerSettings settings)
    {
        var agent = BuildAgent(settings);
        cleanup.Add(agent);
        await agent.StartAsync();
        return agent;
    }

    /// <summary>An agent on <see cref="Clock"/>, logging to the test's output; the caller starts and disposes it.</summary>
    protected PeerAgent BuildAgent(PeerSettings settings) => PeerHost.Build(settings, logging: TestOutputLoggerProvider.For(Output), time: Clock);

    /// <summary>
    /// Waits for <paramref name="io"/> (something the agent does over the network, with its own deadline) while moving the
    /// agents' clock on, so the timer the agent waits on before it does it fires.
    /// </summary>
    protected async Task<T> PumpAsync<T>(Task<T> io)
    {
        while (!io.IsCompleted)
        {
            Clock.Advance(PumpStep);
            await Task.WhenAny(io, Task.Delay(PumpInterval));
        }
        return await io;
    }

    /// <summary>Moves the agents' clock on until <paramref name="assertion"/> holds, for at most <see cref="Patience"/> of real I/O.</summary>
    protected async Task PumpUntilAsync(Action assertion)
    {
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            try
            {
                assertion();
                return;
            }
            catch (Exception) when (waited.Elapsed < Patience)
            {
                Clock.Advance(PumpStep);
                await Task.Delay(PumpInterval);
            }
        }
    }
}
