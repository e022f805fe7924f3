using System.Net;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.Data.Sqlite;
using MyDvpn.Protocol.Control;
using MyDvpn.Security;
using Xunit.Abstractions;

namespace MyDvpn.IntegrationTests;

/// <summary>
/// A BaseNode and a SuperNode (region "abuse") with tight limits, for issue 13's attacks after login and before
/// authentication: a stream flooding messages, repeated ExitRequests, made-up tokens (at the SuperNode per source, at the
/// BaseNode per SuperNode) and streams that never answer their challenge.
/// </summary>
public sealed class AbuseNetwork : IAsyncLifetime
{
    public const string Region = "abuse";

    public TestNetwork Network { get; private set; } = null!;
    public TestNetwork.Node Base { get; private set; } = null!;
    public TestNetwork.Node Super { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Network = new TestNetwork(new NullOutput());
        Base = Network.BaseNode();
        await Network.StartAsync(Base);
        Super = Network.SuperNode("sn-abuse", Region, Base);
        foreach (var (key, value) in new Dictionary<string, string>
        {
            // A source may present 3 tokens; another comes only after 1000 s.
            ["REDEEMPERSOURCEBURST"] = "3",
            ["REDEEMPERSOURCEPERSECOND"] = "0.001",
            ["MAXCHALLENGESPERSOURCE"] = "4",
            ["MESSAGES__STATUSREPORTS__BURST"] = "5",
            ["MESSAGES__STATUSREPORTS__PERSECOND"] = "1",
            ["MESSAGES__DROPS__BURST"] = "20",
            // The repeated-ExitRequest test sends 200 at once: all of them reach the session.
            ["MESSAGES__EXITREQUESTS__BURST"] = "300",
        })
            Super.Environment[$"MYDVPN__SUPER__EDGE__{key}"] = value;
        await Network.StartAsync(Super);
    }

    public async Task DisposeAsync() => await Network.DisposeAsync();

    public Task<RawPeer> OpenAsync(IPAddress? from = null) => RawPeer.OpenAsync(Super.Listen, Network.CaFile, from);

    /// <summary>Enrolls a new peer with a fresh token from a source of its own; returns its key.</summary>
    public async Task<IdentityKey> EnrollAsync(string peerId, PeerRole role = PeerRole.Client)
    {
        var key = IdentityKey.Generate();
        var token = await Network.CreateTokenAsync(Base, role.ToString().ToLowerInvariant(), Region);
        await using var peer = await OpenAsync(LoopbackSources.Next());
        await peer.SendAsync(peer.SignedRequest(key, peerId, role, Region, token));
        Assert.Equal(ControlMessage.PayloadOneofCase.AuthResponse, (await peer.ReadAsync()).PayloadCase);
        return key;
    }

    /// <summary>A stream of the enrolled peer, authenticated.</summary>
    public async Task<RawPeer> ConnectAsync(string peerId, IdentityKey key, PeerRole role = PeerRole.Client, ExitOffer? offer = null)
    {
        var peer = await OpenAsync();
        // The offer is signed with the rest of the login (transcript v3).
        await peer.SendAsync(peer.SignedRequest(key, peerId, role, Region, exitOffer: offer?.MaxClients ?? 0));
        Assert.Equal(ControlMessage.PayloadOneofCase.AuthResponse, (await peer.ReadAsync()).PayloadCase);
        return peer;
    }

    /// <summary>Events and their bytes in the SuperNode's journal for <paramref name="peerId"/>'s session.</summary>
    public (long Events, long Bytes) Journal(string peerId) =>
        JournalWhere("persistence_id = $id", $"peer/{Region}/{peerId}");

    /// <summary>Events of the <c>peers</c> shards (the sessions they started and stopped, remembered).</summary>
    public (long Events, long Bytes) ShardJournal() => JournalWhere("persistence_id LIKE $id", "%sharding%peers%");

    private (long Events, long Bytes) JournalWhere(string condition, string id)
    {
        using var connection = new SqliteConnection($"Data Source={Path.Combine(Network.Root, "sn-abuse", "akka.db")};Mode=ReadOnly");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT COUNT(*), COALESCE(SUM(LENGTH(message)), 0) FROM journal WHERE {condition}";
        command.Parameters.AddWithValue("$id", id);
        using var reader = command.ExecuteReader();
        reader.Read();
        return (reader.GetInt64(0), reader.GetInt64(1));
    }

    private sealed class NullOutput : ITestOutputHelper
    {
        public void WriteLine(string message) { }

        public void WriteLine(string format, params object[] args) { }
    }
}

/// <summary>Loopback addresses no other login of this test run used: each is a source with a budget of its own.</summary>
public static class LoopbackSources
{
    private static int next;

    public static IPAddress Next()
    {
        var n = Interlocked.Increment(ref next);
        return new IPAddress([127, 1, (byte)(n / 250), (byte)(1 + (n % 250))]);
    }

    /// <summary>A login with a well-formed token nobody issued.</summary>
    public static string MadeUpToken() => MyDvpn.BaseNode.Enrollment.TokenCredential.Generate().Text;
}

public sealed class AbuseTests(AbuseNetwork abuse, ITestOutputHelper output) : IClassFixture<AbuseNetwork>
{
    private static string NewPeerId(string prefix) => $"{prefix}-{Guid.NewGuid():N}"[..24];

    private static ControlMessage PongTo(ControlMessage ping) =>
        new() { Pong = new Pong { Sequence = ping.Ping.Sequence, PingSentAt = ping.Ping.SentAt } };

    [Fact]
    public async Task A_stream_flooding_status_reports_is_dropped_then_closed_rate_limited_while_a_working_peer_keeps_its_stream()
    {
        var floodId = NewPeerId("flood");
        var floodKey = await abuse.EnrollAsync(floodId);
        var workerId = NewPeerId("worker");
        var workerKey = await abuse.EnrollAsync(workerId);
        await using var worker = await abuse.ConnectAsync(workerId, workerKey);
        await using var flood = await abuse.ConnectAsync(floodId, floodKey);
        var droppedBefore = await Metric("mydvpn_stream_messages_dropped_total{kind=\"status_report\",reason=\"rate_limited\"}");

        try
        {
            for (var i = 0; i < 1000; i++)
                await flood.SendAsync(new ControlMessage { StatusReport = new StatusReport() });
        }
        catch (Exception ex) when (ex is RpcException or InvalidOperationException)
        {
            // Closed while it was still sending: the status says why.
        }
        var (status, reason) = await flood.ExpectRefusalAsync();

        output.WriteLine($"flood refused: {status} {reason}");
        Assert.Equal((StatusCode.ResourceExhausted, "RATE_LIMITED"), (status, reason));
        Assert.True(await Metric("mydvpn_stream_messages_dropped_total{kind=\"status_report\",reason=\"rate_limited\"}") >= droppedBefore + 20);
        Assert.True(await Metric("mydvpn_auth_refusals_total{reason=\"RATE_LIMITED\"}") >= 1);
        await Eventually.Async(() => Task.FromResult(abuse.Super.Process!.ReadLog().Split('\n').Any(l =>
                l.Contains("refused: RATE_LIMITED (the stream kept sending over its message limits", StringComparison.Ordinal)
                && l.Contains(floodId, StringComparison.Ordinal))),
            "the SuperNode logs the flood's refusal in one line", TimeSpan.FromSeconds(10));

        // The working peer's stream is untouched: it is asked for its info and answers its pings.
        await worker.SendAsync(new ControlMessage { InfoRequest = new InfoRequest() });
        var pongs = 0;
        var info = false;
        while (!info || pongs < 2)
        {
            var message = await worker.ReadAsync();
            if (message.PayloadCase == ControlMessage.PayloadOneofCase.Ping)
            {
                await worker.SendAsync(PongTo(message));
                pongs++;
            }
            info |= message.PayloadCase == ControlMessage.PayloadOneofCase.InfoResponse;
        }
    }

    /// <summary>
    /// Issue 13: 200 ExitRequests for the exit a client held re-issued 200 SetupExits and wrote 3 MiB to the journal. Now
    /// they are answered from state: no SetupExit, nothing journaled.
    /// </summary>
    [Fact]
    public async Task Repeated_exit_requests_for_the_exit_a_client_holds_issue_no_setup_exit_and_journal_nothing()
    {
        var exitId = NewPeerId("exit");
        var exitKey = await abuse.EnrollAsync(exitId, PeerRole.Exit);
        await using var exit = await abuse.ConnectAsync(exitId, exitKey, PeerRole.Exit, new ExitOffer { MaxClients = 5 });
        using var stop = new CancellationTokenSource();
        var serving = ServeAsExitAsync(exit, stop.Token);
        var clientId = NewPeerId("client");
        var clientKey = await abuse.EnrollAsync(clientId);
        await using var client = await abuse.ConnectAsync(clientId, clientKey);
        var request = new ControlMessage
        {
            ExitRequest = new ExitRequest { Region = AbuseNetwork.Region, WireguardPublicKey = ByteString.CopyFrom(Enumerable.Repeat((byte)7, 32).ToArray()) },
        };

        // The exit comes online in the pool within a heartbeat or two; until then the request is refused and asked again.
        Command? setup = null;
        for (var attempt = 0; setup is null; attempt++)
        {
            Assert.True(attempt < 120, "the client got no exit in a minute");
            await client.SendAsync(request);
            var message = await ReadCommandOrFailureAsync(client);
            if (message.PayloadCase == ControlMessage.PayloadOneofCase.Command)
                setup = message.Command;
            else
                await Task.Delay(500);
        }
        Assert.Equal(Command.BodyOneofCase.SetupExit, setup.BodyCase);
        await client.SendAsync(new ControlMessage { CommandResponse = Done(setup.CommandId) });
        // A request the session refuses at once, persisting nothing, marks where it is: its answer follows whatever the
        // session did with everything sent before it.
        var barrier = new ControlMessage { ExitRequest = new ExitRequest { Region = "Not A Region!", WireguardPublicKey = request.ExitRequest.WireguardPublicKey } };
        await client.SendAsync(barrier);
        Assert.Empty(await CommandsUntilRefusedAsync(client));
        var before = abuse.Journal(clientId);

        for (var i = 0; i < 200; i++)
            await client.SendAsync(request);
        await client.SendAsync(barrier);
        var commands = await CommandsUntilRefusedAsync(client);
        var after = abuse.Journal(clientId);
        await stop.CancelAsync();
        await serving;

        output.WriteLine($"200 repeated ExitRequests: {commands.Count} commands, journal {before} -> {after}");
        Assert.Empty(commands);
        Assert.Equal(before, after);
    }

    /// <summary>
    /// Issue 13: made-up tokens all reached the BaseNode and a login for an unknown peer started a session. A source now
    /// gets 3 (here) tokens looked at, the next are RESOURCE_EXHAUSTED RATE_LIMITED without the BaseNode being asked, nothing
    /// of them is in the journal, and a peer from elsewhere still enrolls.
    /// </summary>
    [Fact]
    public async Task Made_up_tokens_from_one_source_are_rate_limited_before_the_BaseNode_and_persist_nothing()
    {
        var attacker = LoopbackSources.Next();
        var asked = await BaseMetric("mydvpn_enrollment_redemptions_total{outcome=\"BAD_TOKEN\"}");
        var shards = abuse.ShardJournal();
        var answers = new List<(StatusCode, string)>();
        var junkIds = new List<string>();
        for (var i = 0; i < 6; i++)
        {
            var peerId = NewPeerId("junk");
            junkIds.Add(peerId);
            await using var junk = await abuse.OpenAsync(attacker);
            await junk.SendAsync(junk.SignedRequest(IdentityKey.Generate(), peerId, PeerRole.Client, AbuseNetwork.Region,
                LoopbackSources.MadeUpToken()));
            answers.Add(await junk.ExpectRefusalAsync());
        }

        output.WriteLine(string.Join(", ", answers));
        output.WriteLine($"the peers shards' journal: {shards} -> {abuse.ShardJournal()}");
        Assert.Equal([.. Enumerable.Repeat((StatusCode.PermissionDenied, "BAD_TOKEN"), 3), .. Enumerable.Repeat((StatusCode.ResourceExhausted, "RATE_LIMITED"), 3)],
            answers);
        Assert.Equal(asked + 3, await BaseMetric("mydvpn_enrollment_redemptions_total{outcome=\"BAD_TOKEN\"}"));
        Assert.All(junkIds, id => Assert.Equal((0L, 0L), abuse.Journal(id)));
        await Eventually.Async(() => Task.FromResult(abuse.Super.Process!.ReadLog().Split('\n').Any(l =>
                l.Contains("refused: RATE_LIMITED (too many logins with an enrollment token from 127.1.", StringComparison.Ordinal))),
            "the SuperNode logs each refusal in one line", TimeSpan.FromSeconds(10));

        await abuse.EnrollAsync(NewPeerId("legit"));
    }

    /// <summary>A login with a token not signed by the key it presents is refused at the edge: no session is started for it.</summary>
    [Fact]
    public async Task A_token_login_signed_with_another_key_is_refused_without_starting_a_session()
    {
        var shards = abuse.ShardJournal();
        await using var junk = await abuse.OpenAsync(LoopbackSources.Next());
        var request = junk.SignedRequest(IdentityKey.Generate(), NewPeerId("forged"), PeerRole.Client, AbuseNetwork.Region, LoopbackSources.MadeUpToken());
        request.PublicKey = ByteString.CopyFrom(IdentityKey.Generate().PublicKey);
        await junk.SendAsync(request);

        Assert.Equal((StatusCode.Unauthenticated, "BAD_SIGNATURE"), await junk.ExpectRefusalAsync());
        Assert.Equal(shards, abuse.ShardJournal());
    }

    /// <summary>
    /// A SuperNode letting tokens through from many sources (each within its own limit) meets the BaseNode's limit for it:
    /// 3 at once here, then RESOURCE_EXHAUSTED RATE_LIMITED from the directory, which the SuperNode passes on. A peer that
    /// enrolled before still logs in with its key.
    /// </summary>
    [Fact]
    public async Task Made_up_tokens_from_many_sources_meet_the_BaseNodes_limit_per_SuperNode()
    {
        await using var network = new TestNetwork(output);
        var baseNode = network.BaseNode();
        baseNode.Environment["MYDVPN__BASE__REDEMPTIONS__PERSUPERNODEBURST"] = "3";
        baseNode.Environment["MYDVPN__BASE__REDEMPTIONS__PERSUPERNODEPERSECOND"] = "0.001";
        await network.StartAsync(baseNode);
        var super = network.SuperNode("sn-abuse", AbuseNetwork.Region, baseNode);
        await network.StartAsync(super);
        var key = IdentityKey.Generate();
        var peerId = NewPeerId("first");
        var token = await network.CreateTokenAsync(baseNode, "client", AbuseNetwork.Region);
        await using (var first = await RawPeer.OpenAsync(super.Listen, network.CaFile))
        {
            await first.SendAsync(first.SignedRequest(key, peerId, PeerRole.Client, AbuseNetwork.Region, token));
            Assert.Equal(ControlMessage.PayloadOneofCase.AuthResponse, (await first.ReadAsync()).PayloadCase);
        }

        var answers = await Task.WhenAll(Enumerable.Range(0, 6).Select(async _ =>
        {
            await using var junk = await RawPeer.OpenAsync(super.Listen, network.CaFile, LoopbackSources.Next());
            await junk.SendAsync(junk.SignedRequest(IdentityKey.Generate(), NewPeerId("many"), PeerRole.Client, AbuseNetwork.Region,
                LoopbackSources.MadeUpToken()));
            var ex = await Assert.ThrowsAsync<RpcException>(() => junk.ReadAsync());
            return (ex.StatusCode, Reason: ex.Trailers.GetValue(RefusalReasons.TrailerName), ex.Status.Detail);
        }));

        output.WriteLine(string.Join("\n", answers));
        Assert.Equal(2, answers.Count(a => a.Reason == "BAD_TOKEN"));
        var limited = answers.Where(a => a.Reason == "RATE_LIMITED").ToList();
        Assert.Equal(4, limited.Count);
        Assert.All(limited, a => Assert.Equal(StatusCode.ResourceExhausted, a.StatusCode));
        Assert.All(limited, a => Assert.Contains("SuperNode sn-abuse redeems at most", a.Detail, StringComparison.Ordinal));
        Assert.Equal(4, await TestNetwork.MetricAsync(baseNode, "mydvpn_enrollment_redemptions_total{outcome=\"RATE_LIMITED\"}"));
        await Eventually.Async(() => Task.FromResult(baseNode.Process!.ReadLog().Split('\n').Any(l =>
                l.Contains("refused via SuperNode sn-abuse: RATE_LIMITED", StringComparison.Ordinal))),
            "the BaseNode logs each refusal in one line", TimeSpan.FromSeconds(10));

        await using var again = await RawPeer.OpenAsync(super.Listen, network.CaFile);
        await again.SendAsync(again.SignedRequest(key, peerId, PeerRole.Client, AbuseNetwork.Region));
        Assert.Equal(ControlMessage.PayloadOneofCase.AuthResponse, (await again.ReadAsync()).PayloadCase);
    }

    /// <summary>Issue 13: challenges were kept 10 min with no bound. A source gets 4 (here) outstanding; others are not held back.</summary>
    [Fact]
    public async Task Streams_that_never_answer_their_challenge_are_bounded_per_source()
    {
        var source = LoopbackSources.Next();
        var silent = new List<RawPeer>();
        for (var i = 0; i < 4; i++)
            silent.Add(await abuse.OpenAsync(source));

        var refused = await Assert.ThrowsAsync<RpcException>(() => abuse.OpenAsync(source));

        output.WriteLine($"fifth stream: {refused.StatusCode} {refused.Status.Detail}");
        Assert.Equal((StatusCode.ResourceExhausted, "RATE_LIMITED"), (refused.StatusCode, refused.Trailers.GetValue(RefusalReasons.TrailerName)));
        Assert.Contains("are still answering their challenges", refused.Status.Detail, StringComparison.Ordinal);
        await abuse.EnrollAsync(NewPeerId("other"));

        // One of them gives up: its source may open another.
        await silent[0].DisposeAsync();
        await Eventually.Async(async () =>
        {
            try
            {
                silent[0] = await abuse.OpenAsync(source);
                return true;
            }
            catch (RpcException ex) when (ex.StatusCode == StatusCode.ResourceExhausted)
            {
                return false;
            }
        }, "the source gets a challenge again", TimeSpan.FromSeconds(20));
        foreach (var peer in silent)
            await peer.DisposeAsync();
    }

    /// <summary>The commands the client gets (answering pings) until an ExitRequestFailed MALFORMED_MESSAGE.</summary>
    private static async Task<List<Command>> CommandsUntilRefusedAsync(RawPeer client)
    {
        var commands = new List<Command>();
        while (true)
        {
            var message = await ReadCommandOrFailureAsync(client);
            if (message.PayloadCase == ControlMessage.PayloadOneofCase.Command)
                commands.Add(message.Command);
            else if (message.ExitRequestFailed.Reason == RefusalReason.MalformedMessage)
                return commands;
        }
    }

    private static CommandResponse Done(string commandId) => new() { CommandId = commandId, Result = new CommandResult { Done = new Empty() } };

    private static async Task<ControlMessage> ReadCommandOrFailureAsync(RawPeer peer)
    {
        while (true)
        {
            var message = await peer.ReadAsync();
            if (message.PayloadCase == ControlMessage.PayloadOneofCase.Ping)
                await peer.SendAsync(PongTo(message));
            else if (message.PayloadCase is ControlMessage.PayloadOneofCase.Command or ControlMessage.PayloadOneofCase.ExitRequestFailed)
                return message;
        }
    }

    /// <summary>An exit that answers its pings and accepts every SetupExit with a key of its own, until stopped.</summary>
    private static async Task ServeAsExitAsync(RawPeer exit, CancellationToken stop)
    {
        try
        {
            while (!stop.IsCancellationRequested)
            {
                var message = await exit.ReadAsync(TimeSpan.FromMinutes(5)).WaitAsync(stop);
                if (message.PayloadCase == ControlMessage.PayloadOneofCase.Ping)
                    await exit.SendAsync(PongTo(message));
                else if (message.PayloadCase == ControlMessage.PayloadOneofCase.Command)
                {
                    await exit.SendAsync(new ControlMessage
                    {
                        CommandResponse = message.Command.BodyCase == Command.BodyOneofCase.SetupExit
                            ? new CommandResponse
                            {
                                CommandId = message.Command.CommandId,
                                Result = new CommandResult
                                {
                                    SetupExit = new SetupExitResult { PublicKey = ByteString.CopyFrom(Enumerable.Repeat((byte)0xE1, 32).ToArray()), ListenPort = 51820 },
                                },
                            }
                            : Done(message.Command.CommandId),
                    });
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or RpcException)
        {
        }
    }

    private Task<double> Metric(string series) => TestNetwork.MetricAsync(abuse.Super, series);

    private Task<double> BaseMetric(string series) => TestNetwork.MetricAsync(abuse.Base, series);
}
