using System.Diagnostics;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using MyDvpn.Common;
using MyDvpn.Protocol.Control;
using MyDvpn.Security;

namespace MyDvpn.Bench;

/// <summary>How a client's <see cref="BenchPeer.RequestExitAsync"/> ended.</summary>
public abstract record ExitOutcome
{
    private ExitOutcome()
    {
    }

    /// <summary>
    /// The SuperNode sent SetupExit (side client) <paramref name="SetupExitAfter"/> after the request was written,
    /// and the peer's ack was written <paramref name="AckedAfter"/> after it.
    /// </summary>
    public sealed record SetUp(TimeSpan SetupExitAfter, TimeSpan AckedAfter, SetupExit Command) : ExitOutcome;

    public sealed record Refused(ExitRequestFailed Failure) : ExitOutcome
    {
        public override string ToString() =>
            $"ExitRequestFailed grpc_status {Failure.GrpcStatus} ({(StatusCode)Failure.GrpcStatus}), reason {RefusalReasons.WireName(Failure.Reason)}, detail: {Failure.Detail}";
    }

    public sealed record NoAnswer(string Why) : ExitOutcome
    {
        public override string ToString() => $"no answer: {Why}";
    }
}

/// <summary>
/// One benchmark peer: its own TLS connection and control stream, enrolled with a token, answering
/// pings and acknowledging every command at once (so what is measured is the SuperNode). An exit (role exit or
/// both, with an offer) answers SetupExit with a WireGuard public key of its own; a client can ask for an exit.
/// </summary>
public sealed class BenchPeer : IAsyncDisposable
{
    /// <summary>What a bench exit tells the SuperNode it listens on (no interface is configured).</summary>
    private const uint ExitListenPort = 51820;

    private readonly GrpcChannel channel;
    private readonly AsyncDuplexStreamingCall<ControlMessage, ControlMessage> call;
    private readonly CancellationTokenSource stop = new();
    private readonly SemaphoreSlim writeLock = new(1, 1);
    private readonly WireGuardKey? exitKey;
    private PendingExit? pendingExit;
    private Task? loop;

    public string PeerId { get; }

    private BenchPeer(string peerId, GrpcChannel channel, AsyncDuplexStreamingCall<ControlMessage, ControlMessage> call, WireGuardKey? exitKey)
    {
        PeerId = peerId;
        this.channel = channel;
        this.call = call;
        this.exitKey = exitKey;
    }

    /// <param name="token">Presented with the key: an enrolled peer's session ignores it.</param>
    /// <param name="exitMaxClients">For role exit or both: the offer's max_clients (0: no offer).</param>
    public static async Task<BenchPeer> ConnectAsync(HostPort superNode, X509Certificate2 ca, string peerId, IdentityKey key, PeerRole role,
        string region, string token, uint exitMaxClients, CancellationToken cancellationToken)
    {
        var trust = new OperatorCaTrust(ca);
        byte[]? serverCertificateSha256 = null;
        var handler = new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions
            {
                // The login is bound to the certificate the stream runs over (PeerAuthTranscript).
                RemoteCertificateValidationCallback = (sender, certificate, chain, errors) =>
                {
                    var trusted = trust.ValidateServerCertificate(sender, certificate, chain, errors);
                    if (trusted)
                        serverCertificateSha256 = System.Security.Cryptography.SHA256.HashData(certificate!.GetRawCertData());
                    return trusted;
                },
            },
        };
        // DisposeHttpClient: without it disposing the channel leaves the TCP connection open.
        var channel = GrpcChannel.ForAddress($"https://{superNode}", new GrpcChannelOptions { HttpHandler = handler, DisposeHttpClient = true });
        var call = new ControlStream.ControlStreamClient(channel).PersistentControlStream(cancellationToken: cancellationToken);
        var servesExits = role is PeerRole.Exit or PeerRole.Both && exitMaxClients > 0;
        var peer = new BenchPeer(peerId, channel, call, servesExits ? WireGuardKey.Generate() : null);
        try
        {
            if (!await call.ResponseStream.MoveNext(cancellationToken) || call.ResponseStream.Current.AuthChallenge is not { } challenge)
                throw new InvalidOperationException("no challenge");
            var transcript = PeerAuthTranscript.Encode(peerId, (int)role, region, challenge.Challenge.Span, challenge.SupernodeId,
                serverCertificateSha256 ?? throw new InvalidOperationException("a challenge came without a trusted server certificate"),
                servesExits ? exitMaxClients : 0);
            await call.RequestStream.WriteAsync(new ControlMessage
            {
                AuthRequest = new AuthRequest
                {
                    PeerId = peerId,
                    Role = role,
                    Region = region,
                    Challenge = challenge.Challenge,
                    Signature = ByteString.CopyFrom(key.Sign(transcript)),
                    EnrollmentToken = token,
                    PublicKey = ByteString.CopyFrom(key.PublicKey),
                    ExitOffer = servesExits ? new ExitOffer { MaxClients = exitMaxClients } : null,
                },
            }, cancellationToken);
            if (!await call.ResponseStream.MoveNext(cancellationToken) || call.ResponseStream.Current.AuthResponse is null)
                throw new InvalidOperationException("no AuthResponse");
            peer.loop = peer.AnswerAsync();
            return peer;
        }
        catch
        {
            await peer.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// Asks for an exit in <paramref name="region"/> and waits for the SuperNode's answer: a SetupExit (acked at
    /// once, the clock stops when the ack is written) or an ExitRequestFailed. One request at a time.
    /// </summary>
    public async Task<ExitOutcome> RequestExitAsync(string region, byte[] wireGuardPublicKey, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var pending = new PendingExit(Stopwatch.GetTimestamp());
        if (Interlocked.CompareExchange(ref pendingExit, pending, null) is not null)
            throw new InvalidOperationException($"{PeerId} already waits for an exit");
        try
        {
            await WriteAsync(new ControlMessage
            {
                ExitRequest = new ExitRequest { Region = region, WireguardPublicKey = ByteString.CopyFrom(wireGuardPublicKey) },
            }, cancellationToken);
            return await pending.Done.Task.WaitAsync(timeout, cancellationToken);
        }
        catch (TimeoutException)
        {
            return new ExitOutcome.NoAnswer($"neither SetupExit nor ExitRequestFailed within {timeout.TotalSeconds:0} s");
        }
        finally
        {
            Interlocked.CompareExchange(ref pendingExit, null, pending);
        }
    }

    private async Task AnswerAsync()
    {
        var ended = "the stream ended";
        try
        {
            await foreach (var message in call.ResponseStream.ReadAllAsync(stop.Token))
            {
                switch (message.PayloadCase)
                {
                    case ControlMessage.PayloadOneofCase.Ping:
                        await WriteAsync(new ControlMessage { Pong = new Pong { Sequence = message.Ping.Sequence, PingSentAt = message.Ping.SentAt } }, stop.Token);
                        break;
                    case ControlMessage.PayloadOneofCase.Command:
                        var received = Stopwatch.GetTimestamp();
                        await WriteAsync(new ControlMessage
                        {
                            CommandResponse = new CommandResponse { CommandId = message.Command.CommandId, Result = Answer(message.Command) },
                        }, stop.Token);
                        if (message.Command.SetupExit is { Side: ExitSide.Client } setup && Volatile.Read(ref pendingExit) is { } waiting)
                        {
                            waiting.Done.TrySetResult(new ExitOutcome.SetUp(
                                Stopwatch.GetElapsedTime(waiting.StartedAt, received), Stopwatch.GetElapsedTime(waiting.StartedAt), setup));
                        }
                        break;
                    case ControlMessage.PayloadOneofCase.ExitRequestFailed:
                        Volatile.Read(ref pendingExit)?.Done.TrySetResult(new ExitOutcome.Refused(message.ExitRequestFailed));
                        break;
                }
            }
        }
        catch (RpcException ex)
        {
            // Ended by the SuperNode.
            ended = $"the SuperNode ended the stream: {ex.StatusCode} {ex.Status.Detail}";
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException)
        {
            // Ended by the benchmark.
        }
        Volatile.Read(ref pendingExit)?.Done.TrySetResult(new ExitOutcome.NoAnswer(ended));
    }

    /// <summary>An exit's SetupExit gets its WireGuard key (the endpoint left to the SuperNode); anything else is done.</summary>
    private CommandResult Answer(Command command) =>
        command.SetupExit is { Side: ExitSide.Exit } && exitKey is not null
            ? new CommandResult { SetupExit = new SetupExitResult { PublicKey = ByteString.CopyFrom(exitKey.PublicKey), Endpoint = "", ListenPort = ExitListenPort } }
            : new CommandResult { Done = new Empty() };

    private async Task WriteAsync(ControlMessage message, CancellationToken cancellationToken)
    {
        await writeLock.WaitAsync(cancellationToken);
        try
        {
            await call.RequestStream.WriteAsync(message, cancellationToken);
        }
        finally
        {
            writeLock.Release();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await stop.CancelAsync();
        call.Dispose();
        if (loop is not null)
            await loop;
        channel.Dispose();
        stop.Dispose();
        writeLock.Dispose();
    }

    private sealed class PendingExit(long startedAt)
    {
        public long StartedAt { get; } = startedAt;

        public TaskCompletionSource<ExitOutcome> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
