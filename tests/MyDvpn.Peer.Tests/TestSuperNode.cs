using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Threading.Channels;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using MyDvpn.Common;
using MyDvpn.Protocol.Control;
using MyDvpn.Security;

namespace MyDvpn.Peer.Tests;

/// <summary>
/// The SuperNode's side of the control stream, minimally: a challenge, the AuthRequest's signature checked with the
/// peer's public key (enrolled before, or presented with the accepted token), an AuthResponse, and then whatever the
/// test sends and reads through the <see cref="TestStream"/> it is handed (commands such as SetupExit, ExitRequestFailed).
/// Every ExitRequest and ExitRelease any stream reads is also kept in <see cref="ExitRequests"/> and <see cref="ExitReleases"/>.
/// </summary>
internal sealed class TestSuperNode(string id) : ControlStream.ControlStreamBase
{
    private readonly ConcurrentDictionary<string, byte[]> enrolled = new();
    private readonly ConcurrentQueue<AuthRequest> authRequests = new();
    private readonly ConcurrentQueue<ExitRequest> exitRequests = new();
    private readonly ConcurrentQueue<ExitRelease> exitReleases = new();
    private readonly ConcurrentQueue<TestStream> open = new();
    private readonly ConcurrentQueue<ulong> crlNumbersHeld = new();
    private readonly Channel<TestStream> streams = Channel.CreateUnbounded<TestStream>();
    private int sessions;
    private int refusalsLeft;

    public string Id { get; } = id;

    /// <summary>SHA-256 of the certificate this SuperNode serves: what a peer's login is bound to (set when it starts serving).</summary>
    public byte[]? CertificateSha256 { get; set; }

    /// <summary>The token an unknown peer may enroll with.</summary>
    public string? AcceptedToken { get; set; }

    /// <summary>Refuse every peer with this reason (after reading its AuthRequest).</summary>
    public RefusalReason? RefuseWith { get; set; }

    /// <summary>Refuse this many more AuthRequests with <see cref="RefusalReason.AtCapacity"/>, then accept.</summary>
    public int RefuseAtCapacity
    {
        get => Volatile.Read(ref refusalsLeft);
        set => Volatile.Write(ref refusalsLeft, value);
    }

    public uint HeartbeatIntervalMs { get; set; } = 60_000;

    /// <summary>The exit assignment the AuthResponse says the peer's session holds; null: none.</summary>
    public string? ExitAssignmentId { get; set; }

    /// <summary>What the AuthResponse lists as the region's other SuperNodes.</summary>
    public IReadOnlyList<SuperNodeEndpoint> RegionSuperNodes { get; set; } = [];

    /// <summary>A revocation list (DER) every challenge carries; null: none.</summary>
    public byte[]? Crl { get; set; }

    /// <summary>The CRL number each stream's request header said the peer holds, in order.</summary>
    public IReadOnlyCollection<ulong> CrlNumbersHeld => crlNumbersHeld;

    public IReadOnlyCollection<AuthRequest> AuthRequests => authRequests;

    public IReadOnlyCollection<ExitRequest> ExitRequests => exitRequests;

    public IReadOnlyCollection<ExitRelease> ExitReleases => exitReleases;

    public IReadOnlyDictionary<string, byte[]> Enrolled => enrolled;

    public void Enroll(string peerId, byte[] publicKey) => enrolled[peerId] = publicKey;

    /// <summary>The next stream that authenticated.</summary>
    public async Task<TestStream> NextStreamAsync(TimeSpan timeout)
    {
        using var cancel = new CancellationTokenSource(timeout);
        try
        {
            return await streams.Reader.ReadAsync(cancel.Token);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"no peer authenticated with {Id} within {timeout}");
        }
    }

    /// <summary>Ends every open stream with OK.</summary>
    public void CloseAll()
    {
        while (open.TryDequeue(out var stream))
            stream.Close();
    }

    public override async Task PersistentControlStream(
        IAsyncStreamReader<ControlMessage> requestStream, IServerStreamWriter<ControlMessage> responseStream, ServerCallContext context)
    {
        var token = context.CancellationToken;
        var challenge = RandomNumberGenerator.GetBytes(32);
        crlNumbersHeld.Enqueue(MyDvpn.Protocol.CrlNumberHeader.Read(context.RequestHeaders));
        await responseStream.WriteAsync(new ControlMessage
        {
            AuthChallenge = new AuthChallenge
            {
                Challenge = ByteString.CopyFrom(challenge),
                SupernodeId = Id,
                ExpiresAt = Timestamp.FromDateTimeOffset(DateTimeOffset.UtcNow.AddSeconds(10)),
                Crl = Crl is null ? ByteString.Empty : ByteString.CopyFrom(Crl),
            },
        }, token);
        if (!await requestStream.MoveNext(token))
            return;
        if (requestStream.Current.PayloadCase != ControlMessage.PayloadOneofCase.AuthRequest)
            throw Refuse(RefusalReason.MalformedMessage);
        var auth = requestStream.Current.AuthRequest;
        authRequests.Enqueue(auth.Clone());

        if (RefuseWith is { } reason)
            throw Refuse(reason);
        if (Interlocked.Decrement(ref refusalsLeft) >= 0)
            throw Refuse(RefusalReason.AtCapacity);
        if (!auth.Challenge.Span.SequenceEqual(challenge))
            throw Refuse(RefusalReason.BadSignature);
        byte[] publicKey;
        if (enrolled.TryGetValue(auth.PeerId, out var known))
            publicKey = known;
        else if (string.IsNullOrEmpty(auth.EnrollmentToken))
            throw Refuse(RefusalReason.UnknownPeer);
        else if (auth.EnrollmentToken != AcceptedToken)
            throw Refuse(RefusalReason.BadToken);
        else
            publicKey = auth.PublicKey.ToByteArray();
        var transcript = PeerAuthTranscript.Encode(auth.PeerId, (int)auth.Role, auth.Region, auth.Challenge.Span, Id,
            CertificateSha256 ?? throw new InvalidOperationException("the test SuperNode serves no certificate yet"), auth.ExitOffer?.MaxClients ?? 0);
        if (!IdentityKey.Verify(publicKey, transcript, auth.Signature.Span))
            throw Refuse(RefusalReason.BadSignature);
        enrolled[auth.PeerId] = publicKey;

        var stream = new TestStream(auth, $"{Id}-session-{Interlocked.Increment(ref sessions)}");
        var response = new AuthResponse
        {
            SessionId = stream.SessionId,
            HeartbeatIntervalMs = HeartbeatIntervalMs,
            SupernodeId = Id,
            ExitAssignmentId = ExitAssignmentId ?? "",
        };
        response.RegionSupernodes.AddRange(RegionSuperNodes);
        await responseStream.WriteAsync(new ControlMessage { AuthResponse = response }, token);
        open.Enqueue(stream);
        streams.Writer.TryWrite(stream);

        // Not awaited: the reader ends when the call does, and the call ends when this method returns.
        _ = ReadAsync(requestStream, stream, token);
        try
        {
            await foreach (var message in stream.Outgoing.ReadAllAsync(token))
                await responseStream.WriteAsync(message, token);
        }
        catch (OperationCanceledException)
        {
            // The peer went away.
        }
        stream.Close();
    }

    private async Task ReadAsync(IAsyncStreamReader<ControlMessage> requests, TestStream stream, CancellationToken token)
    {
        try
        {
            await foreach (var message in requests.ReadAllAsync(token))
            {
                if (message.PayloadCase == ControlMessage.PayloadOneofCase.ExitRequest)
                    exitRequests.Enqueue(message.ExitRequest);
                if (message.PayloadCase == ControlMessage.PayloadOneofCase.ExitRelease)
                    exitReleases.Enqueue(message.ExitRelease);
                stream.Receive(message);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or InvalidOperationException or RpcException)
        {
            // The stream ended.
        }
        finally
        {
            stream.EndReceiving();
        }
    }

    private static RpcException Refuse(RefusalReason reason) =>
        RefusalReasons.ToRpcException(reason, "refused by the test SuperNode");
}

/// <summary>One authenticated stream, seen from the SuperNode.</summary>
internal sealed class TestStream(AuthRequest auth, string sessionId)
{
    private readonly Channel<ControlMessage> outgoing = Channel.CreateUnbounded<ControlMessage>();
    private readonly Channel<ControlMessage> received = Channel.CreateUnbounded<ControlMessage>();

    public AuthRequest Auth { get; } = auth;

    public string SessionId { get; } = sessionId;

    public ChannelReader<ControlMessage> Outgoing => outgoing.Reader;

    public void Send(ControlMessage message) => outgoing.Writer.TryWrite(message);

    public void SendCommand(Command command) => Send(new ControlMessage { Command = command });

    /// <summary>Answers an ExitRequest as the SuperNode does when it cannot serve it.</summary>
    public void SendExitRequestFailed(string region, StatusCode status, RefusalReason reason, string detail) =>
        Send(new ControlMessage
        {
            ExitRequestFailed = new ExitRequestFailed { Region = region, GrpcStatus = (int)status, Reason = reason, Detail = detail },
        });

    /// <summary>The next message of <paramref name="kind"/> from the peer; others before it are passed over.</summary>
    public async Task<ControlMessage> ReceiveAsync(ControlMessage.PayloadOneofCase kind, TimeSpan timeout)
    {
        var others = System.Enum.GetValues<ControlMessage.PayloadOneofCase>().Where(k => k != kind).ToArray();
        return await ReceiveAsync(timeout, others);
    }

    /// <summary>Ends the stream with OK.</summary>
    public void Close() => outgoing.Writer.TryComplete();

    /// <summary>The next message from the peer, skipping the payload kinds in <paramref name="skip"/>.</summary>
    public async Task<ControlMessage> ReceiveAsync(TimeSpan timeout, params ControlMessage.PayloadOneofCase[] skip)
    {
        using var cancel = new CancellationTokenSource(timeout);
        try
        {
            while (true)
            {
                var message = await received.Reader.ReadAsync(cancel.Token);
                if (!skip.Contains(message.PayloadCase))
                    return message;
            }
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"the peer sent nothing on {SessionId} within {timeout}");
        }
        catch (ChannelClosedException)
        {
            throw new InvalidOperationException($"the stream {SessionId} ended before the peer sent anything more");
        }
    }

    internal void Receive(ControlMessage message) => received.Writer.TryWrite(message);

    internal void EndReceiving() => received.Writer.TryComplete();
}

/// <summary>Real Kestrel on loopback serving a <see cref="TestSuperNode"/> over TLS with a node certificate, no client certificates.</summary>
internal sealed class TestSuperNodeServer(TlsGrpcTestServer server, TestSuperNode superNode) : IAsyncDisposable
{
    private int disposed;

    public TestSuperNode SuperNode => superNode;

    public HostPort Address => server.Address;

    public SuperNodeEndpoint Endpoint => new() { SupernodeId = SuperNode.Id, GrpcEndpoint = Address.ToString() };

    public static async Task<TestSuperNodeServer> StartAsync(string tlsDir, TestSuperNode superNode)
    {
        var tls = TlsMaterial.Load(tlsDir);
        superNode.CertificateSha256 = tls.CertificateSha256;
        // Serving any certificate, so that Kestrel also serves one it would refuse to configure (an admin certificate
        // has no server-auth usage): the tests show the peer refuses it.
        var server = await TlsGrpcTestServer.StartServingAnyCertificateAsync(
            tls,
            services => services
                .Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(2))
                .AddSingleton(superNode),
            app => app.MapGrpcService<TestSuperNode>());
        return new TestSuperNodeServer(server, superNode);
    }

    /// <summary>Closes every stream and stops listening; a second call does nothing.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref disposed, 1) == 1)
            return;
        SuperNode.CloseAll();
        await server.DisposeAsync();
    }
}
