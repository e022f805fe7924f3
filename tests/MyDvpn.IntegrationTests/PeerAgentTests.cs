using System.Text.Json;
using Google.Protobuf.WellKnownTypes;
using MyDvpn.Protocol.Admin;
using MyDvpn.Protocol.Control;
using MyDvpn.Protocol.SuperNode;
using MyDvpn.Security;
using Xunit.Abstractions;

namespace MyDvpn.IntegrationTests;

/// <summary>The real peer agent (<c>mydvpn peer</c>) against a real BaseNode and SuperNode.</summary>
public sealed class PeerAgentTests(ITestOutputHelper output)
{
    private const string Region = "agents";

    [Fact]
    public async Task The_agent_survives_SuperNode_crashes_and_applies_an_in_flight_command_once()
    {
        await using var network = new TestNetwork(output);
        var baseNode = network.BaseNode();
        await network.StartAsync(baseNode);
        var super = network.SuperNode("sn-agents", Region, baseNode);
        super.Environment["MYDVPN__SUPER__EDGE__HEARTBEATINTERVAL"] = "00:00:00.500";
        super.Environment["MYDVPN__SUPER__EDGE__HEARTBEATTIMEOUT"] = "00:00:03";
        await network.StartAsync(super);

        var keyFile = Path.Combine(network.Root, "agent.key");
        IdentityKey.Generate().Save(keyFile);
        var stateDir = Path.Combine(network.Root, "agent-state");
        var token = await network.CreateTokenAsync(baseNode, "client", Region);
        var agent = new TestNetwork.Node("agent-1", super.Listen, super.Metrics,
        [
            "peer", "--data-plane", "none", "--role", "client", "--id", "agent-1", "--region", Region, "--key", keyFile, "--ca", network.CaFile,
            "--supernode", super.Listen.ToString(), "--token", token, "--state-dir", stateDir,
        ]);
        await network.StartAsync(agent, waitUntilReady: false);
        var firstSession = await ConnectedSessionAsync(network, baseNode, null);

        using var adminTls = TlsMaterial.Load(network.AdminTls);
        using var channel = Hosting.GrpcChannels.MutualTls(baseNode.Listen, adminTls, ExpectedServer.BaseNode);
        var admin = new Admin.AdminClient(channel);
        var applied = await DisconnectAsync(admin, wait: true);
        Assert.Equal(IssueCommandResponse.OutcomeOneofCase.Response, applied.OutcomeCase);
        Assert.Equal(CommandResponse.OutcomeOneofCase.Result, applied.Response.OutcomeCase);

        // 1. The SuperNode crashes under a connected agent: the agent reconnects by itself.
        super.Process!.Kill();
        await network.StartAsync(super);
        await ConnectedSessionAsync(network, baseNode, firstSession);

        // 2. A command issued while the agent is away stays in flight across another crash.
        agent.Process!.Kill();
        await Eventually.Async(async () => (await SessionsAsync(network, baseNode)).All(s => s.PeerId != "agent-1"), "the agent's stream is gone");
        var pending = await DisconnectAsync(admin, wait: false);
        Assert.Equal(IssueCommandResponse.OutcomeOneofCase.None, pending.OutcomeCase);
        super.Process!.Kill();
        await network.StartAsync(super);
        await network.StartAsync(agent, waitUntilReady: false);

        await Eventually.Async(() => Task.FromResult(AppliedCount(stateDir, pending.CommandId) > 0), "the in-flight command reaches the agent");
        await ConnectedSessionAsync(network, baseNode, null);
        Assert.Equal(1, AppliedCount(stateDir, applied.CommandId));
        Assert.Equal(1, AppliedCount(stateDir, pending.CommandId));
    }

    [Fact]
    public async Task A_SuperNode_that_was_down_when_a_peer_was_revoked_refuses_it_after_catching_up()
    {
        await using var network = new TestNetwork(output);
        var baseNode = network.BaseNode();
        await network.StartAsync(baseNode);
        var super = network.SuperNode("sn-away", Region, baseNode);
        await network.StartAsync(super);
        var key = IdentityKey.Generate();
        var token = await network.CreateTokenAsync(baseNode, "client", Region);
        await using (var peer = await RawPeer.OpenAsync(super.Listen, network.CaFile))
        {
            await peer.SendAsync(peer.SignedRequest(key, "away-peer", PeerRole.Client, Region, token));
            Assert.Equal(ControlMessage.PayloadOneofCase.AuthResponse, (await peer.ReadAsync()).PayloadCase);
        }

        super.Process!.Kill();
        var revoke = await network.RunAsync("admin", "--base", baseNode.Listen.ToString(), "--tls", network.AdminTls, "revoke", "away-peer", "--json");
        Assert.True(revoke.ExitCode == 0, revoke.Output);
        // It was not told at once: unreachable, or (the revocation came after the directory's grace, on a slow machine)
        // already marked down, so not asked at all.
        Assert.DoesNotContain("sn-away", JsonDocument.Parse(revoke.Output).RootElement.GetProperty("notifiedSupernodes").EnumerateArray().Select(e => e.GetString()));

        await network.StartAsync(super);
        await Eventually.Async(() => Task.FromResult(super.Process!.ReadLog().Contains("Applied 1 revocations", StringComparison.Ordinal)), "the SuperNode catches up");
        await using var again = await RawPeer.OpenAsync(super.Listen, network.CaFile);
        await again.SendAsync(again.SignedRequest(key, "away-peer", PeerRole.Client, Region));
        Assert.Equal("REVOKED", (await again.ExpectRefusalAsync()).Reason);
    }

    private static Task<IssueCommandResponse> DisconnectAsync(Admin.AdminClient admin, bool wait) =>
        admin.IssueCommandAsync(new AdminCommandRequest
        {
            Region = Region,
            Request = new IssueCommandRequest
            {
                PeerId = "agent-1",
                // Its own deadline: the session's default (30 s) is shorter than a SuperNode restart and an agent start
                // take together on a loaded machine, and the in-flight command must outlive both.
                Command = new Command
                {
                    Disconnect = new Disconnect { Reason = "integration test" },
                    Deadline = Timestamp.FromDateTime(DateTime.UtcNow.AddMinutes(5)),
                },
                Wait = wait,
            },
        }, deadline: DateTime.UtcNow.AddSeconds(75)).ResponseAsync;

    /// <summary>Waits until the agent's stream shows in <c>mydvpn admin sessions</c> with another session than <paramref name="not"/>.</summary>
    private static async Task<string> ConnectedSessionAsync(TestNetwork network, TestNetwork.Node baseNode, string? not)
    {
        string? session = null;
        await Eventually.Async(async () =>
        {
            var matching = (await SessionsAsync(network, baseNode)).Where(s => s.PeerId == "agent-1" && s.SessionId != not).ToList();
            session = matching.Count > 0 ? matching[0].SessionId : null;
            return session is not null;
        }, "the agent is connected", TimeSpan.FromSeconds(60));
        return session!;
    }

    private static async Task<List<(string PeerId, string SessionId)>> SessionsAsync(TestNetwork network, TestNetwork.Node baseNode)
    {
        var (exitCode, text) = await network.RunAsync("admin", "--base", baseNode.Listen.ToString(), "--tls", network.AdminTls, "sessions", "--region", Region, "--json");
        Assert.True(exitCode == 0, text);
        return [.. JsonDocument.Parse(text).RootElement.GetProperty("sessions").EnumerateArray()
            .Select(s => (s.GetProperty("peerId").GetString()!, s.GetProperty("sessionId").GetString()!))];
    }

    /// <summary>How often the agent's command log records the command (it records each application).</summary>
    private static int AppliedCount(string stateDir, string commandId)
    {
        var log = Path.Combine(stateDir, "commands.jsonl");
        if (!File.Exists(log))
            return 0;
        using var stream = new FileStream(log, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        return new StreamReader(stream).ReadToEnd().Split('\n').Count(line => line.Contains(commandId, StringComparison.Ordinal));
    }
}
