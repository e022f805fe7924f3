using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using MyDvpn.Common;
using MyDvpn.Peer.Commands;
using MyDvpn.Protocol.Control;
using MyDvpn.Security;
using Xunit.Abstractions;

namespace MyDvpn.Peer.Tests;

/// <summary>
/// The whole agent (generic host, actor system, SQLite store, recording handler) against real gRPC SuperNodes:
/// Kestrel on loopback with TLS node certificates from a temporary operator CA.
/// </summary>
public sealed class ControlStreamTests(ITestOutputHelper output) : AgentTestKit(nameof(ControlStreamTests), output)
{
    private const string Token = "enroll-me";

    [Fact]
    public async Task Peer_enrolls_answers_pings_and_applies_a_command_at_most_once_also_across_restarts()
    {
        var superNode = new TestSuperNode("super-1") { AcceptedToken = Token };
        var server = await StartServerAsync(superNode);
        var settings = Settings([server.Address], Token);
        var command = new Command
        {
            CommandId = "cmd-1",
            Deadline = Timestamp.FromDateTimeOffset(DateTimeOffset.UtcNow.AddMinutes(5)),
            RemoveExit = new RemoveExit { AssignmentId = "assignment-1", PeerPublicKey = ByteString.CopyFrom(new byte[32]) },
        };
        var commandLog = Path.Combine(settings.StateDir, CommandLog.FileName);
        CommandResponse first;

        await using (var agent = BuildAgent(settings))
        {
            await agent.StartAsync();
            var stream = await superNode.NextStreamAsync(Patience);
            Assert.Equal(PeerId, stream.Auth.PeerId);
            Assert.Equal(PeerRole.Client, stream.Auth.Role);
            Assert.Equal(Region, stream.Auth.Region);
            Assert.Equal(Token, stream.Auth.EnrollmentToken);
            Assert.Equal(Key.PublicKey, stream.Auth.PublicKey.ToByteArray());

            var sentAt = Timestamp.FromDateTimeOffset(DateTimeOffset.UtcNow);
            stream.Send(new ControlMessage { Ping = new Ping { Sequence = 41, SentAt = sentAt } });
            var pong = (await stream.ReceiveAsync(Patience)).Pong;
            Assert.Equal(41ul, pong.Sequence);
            Assert.Equal(sentAt, pong.PingSentAt);

            stream.Send(new ControlMessage { Command = command });
            first = (await stream.ReceiveAsync(Patience)).CommandResponse;
            Assert.Equal("cmd-1", first.CommandId);
            Assert.Equal(CommandResult.BodyOneofCase.Done, first.Result.BodyCase);

            stream.Send(new ControlMessage { Command = command });
            Assert.Equal(first, (await stream.ReceiveAsync(Patience)).CommandResponse);
            Assert.Single(File.ReadAllLines(commandLog));
            await AwaitAssertAsync(() => Assert.True(File.Exists(EnrollmentRecord.PathIn(settings.StateDir))), Patience);
        }

        // A new agent (new actor system) on the same state directory: enrolled already, and cmd-1 applied already.
        await using (var restarted = BuildAgent(settings))
        {
            await restarted.StartAsync();
            var stream = await superNode.NextStreamAsync(Patience);
            Assert.Equal("", stream.Auth.EnrollmentToken);
            Assert.True(stream.Auth.PublicKey.IsEmpty);

            stream.Send(new ControlMessage { Command = command });
            Assert.Equal(first, (await stream.ReceiveAsync(Patience)).CommandResponse);
            Assert.Single(File.ReadAllLines(commandLog));
        }
    }

    [Fact]
    public async Task Revoked_peer_stops_with_exit_code_1_after_a_single_attempt()
    {
        var superNode = new TestSuperNode("super-1") { RefuseWith = RefusalReason.Revoked };
        superNode.Enroll(PeerId, Key.PublicKey);
        var server = await StartServerAsync(superNode);
        await using var agent = BuildAgent(Settings([server.Address]));

        var exitCode = await agent.RunAsync(CancellationToken.None).WaitAsync(Patience);

        Assert.Equal(1, exitCode);
        Assert.Contains($"refused peer {PeerId} with REVOKED (", (await agent.Stopped).Reason, StringComparison.Ordinal);
        Assert.Single(superNode.AuthRequests);
    }

    [Fact]
    public async Task Peer_that_another_agent_replaced_stops_with_exit_code_1()
    {
        var superNode = new TestSuperNode("super-1") { RefuseWith = RefusalReason.Replaced };
        superNode.Enroll(PeerId, Key.PublicKey);
        var server = await StartServerAsync(superNode);
        await using var agent = BuildAgent(Settings([server.Address]));

        var exitCode = await agent.RunAsync(CancellationToken.None).WaitAsync(Patience);

        Assert.Equal(1, exitCode);
        Assert.Contains("took over", (await agent.Stopped).Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Cancelled_agent_stops_with_exit_code_0()
    {
        var superNode = new TestSuperNode("super-1");
        superNode.Enroll(PeerId, Key.PublicKey);
        var server = await StartServerAsync(superNode);
        await using var agent = BuildAgent(Settings([server.Address]));
        using var stop = new CancellationTokenSource();

        var run = agent.RunAsync(stop.Token);
        await superNode.NextStreamAsync(Patience);
        await stop.CancelAsync();

        Assert.Equal(0, await run.WaitAsync(Patience));
    }

    [Fact]
    public async Task Peer_reconnects_when_the_supernode_closes_the_stream()
    {
        var superNode = new TestSuperNode("super-1");
        superNode.Enroll(PeerId, Key.PublicKey);
        var server = await StartServerAsync(superNode);
        var agent = await StartAgentAsync(Settings([server.Address]));
        var first = await superNode.NextStreamAsync(Patience);

        first.Close();

        var second = await PumpAsync(superNode.NextStreamAsync(Patience));
        Assert.NotEqual(first.SessionId, second.SessionId);
        second.Send(new ControlMessage { Ping = new Ping { Sequence = 1 } });
        Assert.Equal(1ul, (await second.ReceiveAsync(Patience)).Pong.Sequence);
        await AwaitAssertAsync(() => Assert.Equal(second.SessionId, agent.Status.Current.SessionId), Patience);
        Assert.Equal(2, agent.Status.Current.Authentications);
    }

    [Fact]
    public async Task Peer_treats_a_stream_silent_for_three_heartbeat_intervals_as_dead_and_reconnects()
    {
        var superNode = new TestSuperNode("super-1") { HeartbeatIntervalMs = 150 };
        superNode.Enroll(PeerId, Key.PublicKey);
        var server = await StartServerAsync(superNode);
        var agent = await StartAgentAsync(Settings([server.Address]));
        var first = await superNode.NextStreamAsync(Patience);

        // The SuperNode says nothing more on the first stream.
        var second = await PumpAsync(superNode.NextStreamAsync(Patience));

        Assert.NotEqual(first.SessionId, second.SessionId);
        Assert.Contains("nothing heard", agent.Status.Current.LastProblem, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Peer_retries_a_supernode_at_capacity()
    {
        var superNode = new TestSuperNode("super-1") { RefuseAtCapacity = 2 };
        superNode.Enroll(PeerId, Key.PublicKey);
        var server = await StartServerAsync(superNode);

        await StartAgentAsync(Settings([server.Address]));

        await PumpAsync(superNode.NextStreamAsync(Patience));
        Assert.Equal(3, superNode.AuthRequests.Count);
    }

    [Fact]
    public async Task Peer_moves_to_another_supernode_of_the_region_when_its_own_is_gone()
    {
        var tls = Pki.IssueSuper("super-b", Region);
        var superNodeB = new TestSuperNode("super-b");
        var serverB = await StartServerAsync(superNodeB, tls);
        var superNodeA = new TestSuperNode("super-a") { AcceptedToken = Token, RegionSuperNodes = [serverB.Endpoint] };
        var serverA = await StartServerAsync(superNodeA);
        var agent = await StartAgentAsync(Settings([serverA.Address], Token));
        var onA = await superNodeA.NextStreamAsync(Patience);
        // The region's SuperNodes share what they know of enrolled peers.
        superNodeB.Enroll(PeerId, superNodeA.Enrolled[PeerId]);
        // The agent learns of super-b from super-a's AuthResponse: it must have read it before super-a goes.
        await AwaitAssertAsync(() => Assert.True(agent.Status.Current.Authentications >= 1, "the agent read super-a's AuthResponse"), Patience);

        await serverA.DisposeAsync();

        var onB = await PumpAsync(superNodeB.NextStreamAsync(Patience));
        Assert.Equal(PeerId, onB.Auth.PeerId);
        Assert.Equal("", onB.Auth.EnrollmentToken);
        await AwaitAssertAsync(() =>
        {
            Assert.Equal(serverB.Address, agent.Status.Current.Endpoint);
            Assert.Equal("super-b", agent.Status.Current.SuperNodeId);
        }, Patience);
        onB.Send(new ControlMessage { Ping = new Ping { Sequence = 9 } });
        Assert.Equal(9ul, (await onB.ReceiveAsync(Patience)).Pong.Sequence);
        Assert.NotEqual(onA.SessionId, onB.SessionId);
    }

    [Fact]
    public async Task Peer_does_not_authenticate_to_a_server_whose_certificate_another_ca_issued()
    {
        var otherPki = new Pki(Temp, "other-ca");
        var superNode = new TestSuperNode("impostor");
        superNode.Enroll(PeerId, Key.PublicKey);
        var server = await StartServerAsync(superNode, otherPki.IssueSuper("impostor", Region));

        var agent = await StartAgentAsync(Settings([server.Address]));

        await PumpUntilAsync(() =>
        {
            Assert.True(agent.Status.Current.Attempts >= 2);
            Assert.Contains("does not chain to the CA given with --ca", agent.Status.Current.LastProblem, StringComparison.Ordinal);
        });
        Assert.Empty(superNode.AuthRequests);
        Assert.False(agent.Status.Current.Connected);
    }

    [Fact]
    public async Task Peer_does_not_authenticate_to_a_SuperNode_whose_certificate_the_list_given_with_crl_revokes()
    {
        var (tlsDir, crlFile) = RevokedSuperNode("super-r");
        var superNode = new TestSuperNode("super-r");
        superNode.Enroll(PeerId, Key.PublicKey);
        var server = await StartServerAsync(superNode, tlsDir);

        var agent = await StartAgentAsync(Settings([server.Address], crl: crlFile));

        await PumpUntilAsync(() =>
        {
            Assert.True(agent.Status.Current.Attempts >= 2);
            Assert.Contains("was revoked", agent.Status.Current.LastProblem, StringComparison.Ordinal);
            Assert.Contains("key compromise", agent.Status.Current.LastProblem, StringComparison.OrdinalIgnoreCase);
        });
        Assert.Empty(superNode.AuthRequests);
    }

    [Fact]
    public async Task Peer_keeps_the_newer_list_a_challenge_carries_and_then_refuses_the_SuperNode_it_revokes()
    {
        var (revokedTls, crlFile) = RevokedSuperNode("super-b");
        var superNodeB = new TestSuperNode("super-b");
        superNodeB.Enroll(PeerId, Key.PublicKey);
        var serverB = await StartServerAsync(superNodeB, revokedTls);
        var list = CertificateRevocationList.Load(crlFile, Pki.LoadCa());
        var superNodeA = new TestSuperNode("super-a") { AcceptedToken = Token, RegionSuperNodes = [serverB.Endpoint], Crl = list.Der };
        var serverA = await StartServerAsync(superNodeA);
        var settings = Settings([serverA.Address], Token);

        var agent = await StartAgentAsync(settings);
        await superNodeA.NextStreamAsync(Patience);
        // The list is kept in the state directory, and the next stream says which list the peer holds.
        var kept = Path.Combine(settings.StateDir, PeerOptions.CrlFileName);
        Assert.Equal(list.Number, CertificateRevocationList.Load(kept, Pki.LoadCa()).Number);
        superNodeA.CloseAll();
        await PumpAsync(superNodeA.NextStreamAsync(Patience));
        Assert.Equal([0ul, list.Number], superNodeA.CrlNumbersHeld);

        // super-a goes; super-b, which the list revokes, gets no answer.
        await serverA.DisposeAsync();
        await PumpUntilAsync(() => Assert.Contains("was revoked", agent.Status.Current.LastProblem, StringComparison.Ordinal));
        Assert.Empty(superNodeB.AuthRequests);
        Assert.False(agent.Status.Current.Connected);
    }

    [Fact]
    public async Task Peer_ignores_a_list_in_a_challenge_that_its_CA_did_not_sign()
    {
        var otherPki = new Pki(Temp, "other-ca");
        var otherTls = otherPki.IssueSuper("x", Region);
        CaRevocations.RevokeCertificate(otherPki.CaDir, Path.Combine(otherTls, CertificateAuthority.CertFile), null, DateTimeOffset.UtcNow);
        var superNode = new TestSuperNode("super-a") { AcceptedToken = Token, Crl = File.ReadAllBytes(Path.Combine(otherPki.CaDir, CaRevocations.CrlFile)) };
        var server = await StartServerAsync(superNode);
        var settings = Settings([server.Address], Token);

        await StartAgentAsync(settings);

        await superNode.NextStreamAsync(Patience);
        Assert.False(File.Exists(Path.Combine(settings.StateDir, PeerOptions.CrlFileName)));
    }

    [Fact]
    public async Task Peer_does_not_authenticate_to_a_server_with_an_admin_certificate()
    {
        var superNode = new TestSuperNode("admin");
        superNode.Enroll(PeerId, Key.PublicKey);
        var server = await StartServerAsync(superNode, Pki.IssueAdmin("ops"));

        var agent = await StartAgentAsync(Settings([server.Address]));

        await AwaitAssertAsync(
            () => Assert.Contains("not a myDvpn node certificate", agent.Status.Current.LastProblem, StringComparison.Ordinal),
            Patience);
        Assert.Empty(superNode.AuthRequests);
    }

    [Fact]
    public async Task Peer_does_not_answer_a_challenge_naming_another_supernode_than_the_certificate()
    {
        // A server holding super-b's certificate (leaked) challenges as super-a: the peer signs nothing for it.
        var superNode = new TestSuperNode("super-a");
        superNode.Enroll(PeerId, Key.PublicKey);
        var server = await StartServerAsync(superNode, Pki.IssueSuper("super-b", Region));

        var agent = await StartAgentAsync(Settings([server.Address]));

        await PumpUntilAsync(() =>
        {
            Assert.True(agent.Status.Current.Attempts >= 2);
            Assert.Contains("the server challenged as SuperNode 'super-a' but its certificate names SuperNode super-b of region eu-west (mydvpn://super/eu-west/super-b)",
                agent.Status.Current.LastProblem, StringComparison.Ordinal);
        });
        Assert.Empty(superNode.AuthRequests);
        Assert.False(agent.Status.Current.Connected);
    }

    [Fact]
    public async Task Peer_does_not_authenticate_to_a_supernode_of_another_region()
    {
        var superNode = new TestSuperNode("super-us");
        superNode.Enroll(PeerId, Key.PublicKey);
        var server = await StartServerAsync(superNode, Pki.IssueSuper("super-us", "us-east"));

        var agent = await StartAgentAsync(Settings([server.Address]));

        await PumpUntilAsync(() => Assert.Contains(
            "the server's certificate names SuperNode super-us of region us-east (mydvpn://super/us-east/super-us), not a SuperNode of this peer's region eu-west",
            agent.Status.Current.LastProblem, StringComparison.Ordinal));
        Assert.Empty(superNode.AuthRequests);
    }

    [Fact]
    public async Task Peer_does_not_authenticate_to_a_server_with_a_BaseNode_certificate()
    {
        var superNode = new TestSuperNode("base-1");
        superNode.Enroll(PeerId, Key.PublicKey);
        var server = await StartServerAsync(superNode, Pki.IssueBase("base-1"));

        var agent = await StartAgentAsync(Settings([server.Address]));

        await PumpUntilAsync(() => Assert.Contains("the server's certificate names BaseNode base-1", agent.Status.Current.LastProblem, StringComparison.Ordinal));
        Assert.Empty(superNode.AuthRequests);
    }

    [Fact]
    public async Task The_peers_login_is_bound_to_the_certificate_its_TLS_saw()
    {
        // The test SuperNode verifies over another certificate's hash than the one it serves: as a SuperNode that a
        // login was relayed to would, and the signature does not verify.
        var superNode = new TestSuperNode("super-1");
        superNode.Enroll(PeerId, Key.PublicKey);
        var server = await StartServerAsync(superNode);
        using var other = TlsMaterial.Load(Pki.IssueSuper("super-1", Region));
        superNode.CertificateSha256 = other.CertificateSha256;

        var agent = await StartAgentAsync(Settings([server.Address]));

        await PumpUntilAsync(() => Assert.Contains("BAD_SIGNATURE", agent.Status.Current.LastProblem, StringComparison.Ordinal));
        Assert.NotEmpty(superNode.AuthRequests);
        Assert.False(agent.Status.Current.Connected);
    }

    [Fact]
    public async Task Second_agent_on_the_same_state_directory_is_refused()
    {
        var settings = Settings([new HostPort("127.0.0.1", 1)]);
        await using var first = PeerHost.Build(settings, logging: TestOutputLoggerProvider.For(Output));

        var problem = Assert.Throws<ConfigurationException>(() => PeerHost.Build(settings, logging: TestOutputLoggerProvider.For(Output)));

        Assert.Equal("--state-dir", problem.Setting);
    }

    /// <summary>Issues SuperNode <paramref name="id"/> of the region a certificate and revokes it; returns its directory and the CA's list (ca.crl).</summary>
    private (string TlsDir, string CrlFile) RevokedSuperNode(string id)
    {
        var tlsDir = Pki.IssueSuper(id, Region);
        var revoked = CaRevocations.RevokeCertificate(Pki.CaDir, Path.Combine(tlsDir, CertificateAuthority.CertFile),
            System.Security.Cryptography.X509Certificates.X509RevocationReason.KeyCompromise, DateTimeOffset.UtcNow);
        Assert.False(revoked.AlreadyRevoked);
        return (tlsDir, Path.Combine(Pki.CaDir, CaRevocations.CrlFile));
    }

    private PeerSettings Settings(IReadOnlyList<HostPort> superNodes, string? token = null, string? crl = null) =>
        new PeerOptions
        {
            Crl = crl,
            // In-process agents share this host: never let them drive a WireGuard interface here.
            DataPlane = "none",
            Role = "client",
            Id = PeerId,
            Region = Region,
            Key = KeyFile,
            Ca = Pki.CaFile,
            Supernode = [.. superNodes.Select(s => s.ToString())],
            Token = token,
            StateDir = Temp.Sub("state"),
        }.Validate() with
        { Timings = Fast };
}
