using MyDvpn.Security;
using Xunit.Abstractions;

namespace MyDvpn.Peer.Tests;

/// <summary>
/// Base of the tests that run the whole agent against real gRPC test SuperNodes: a temporary directory with an
/// operator CA and the peer's identity key, short timings, and the agents and servers a test starts stopped after it
/// (last started, first stopped).
/// </summary>
public abstract class AgentTestKit : Akka.TestKit.Xunit2.TestKit, IAsyncLifetime
{
    protected const string PeerId = "peer-1", Region = "eu-west";

    protected static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);

    /// <summary>Reconnects, authentication and connects fast enough for a test.</summary>
    protected static readonly PeerTimings Fast = new()
    {
        ReconnectBase = TimeSpan.FromMilliseconds(50),
        ReconnectCap = TimeSpan.FromMilliseconds(400),
        AuthTimeout = TimeSpan.FromSeconds(5),
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
        var server = await TestSuperNodeServer.StartAsync(tlsDir ?? Pki.Issue(superNode.Id, CertificateKind.Node), superNode);
        cleanup.Add(server);
        return server;
    }

    protected async Task<PeerAgent> StartAgentAsync(PeerSettings settings)
    {
        var agent = PeerHost.Build(settings, logging: TestOutputLoggerProvider.For(Output));
        cleanup.Add(agent);
        await agent.StartAsync();
        return agent;
    }
}
