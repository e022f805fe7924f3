using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using MyDvpn.Hosting;
using MyDvpn.Protocol.Control;
using MyDvpn.Security;

namespace MyDvpn.Bench;

/// <summary>
/// One benchmark peer: its own TLS connection and control stream, enrolled with a token, answering
/// pings and acknowledging every command at once (so what is measured is the SuperNode).
/// </summary>
public sealed class BenchPeer : IAsyncDisposable
{
    private readonly GrpcChannel channel;
    private readonly AsyncDuplexStreamingCall<ControlMessage, ControlMessage> call;
    private readonly CancellationTokenSource stop = new();
    private readonly SemaphoreSlim writeLock = new(1, 1);
    private Task? loop;

    public string PeerId { get; }

    private BenchPeer(string peerId, GrpcChannel channel, AsyncDuplexStreamingCall<ControlMessage, ControlMessage> call)
    {
        PeerId = peerId;
        this.channel = channel;
        this.call = call;
    }

    /// <param name="token">Presented with the key: an enrolled peer's session ignores it.</param>
    public static async Task<BenchPeer> ConnectAsync(HostPort superNode, X509Certificate2 ca, string peerId, IdentityKey key, string region, string token, CancellationToken cancellationToken)
    {
        var handler = new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions
            {
                RemoteCertificateValidationCallback = new OperatorCaTrust(ca).ValidateServerCertificate,
            },
        };
        // DisposeHttpClient: without it disposing the channel leaves the TCP connection open.
        var channel = GrpcChannel.ForAddress($"https://{superNode}", new GrpcChannelOptions { HttpHandler = handler, DisposeHttpClient = true });
        var call = new ControlStream.ControlStreamClient(channel).PersistentControlStream(cancellationToken: cancellationToken);
        var peer = new BenchPeer(peerId, channel, call);
        try
        {
            if (!await call.ResponseStream.MoveNext(cancellationToken) || call.ResponseStream.Current.AuthChallenge is not { } challenge)
                throw new InvalidOperationException("no challenge");
            var transcript = PeerAuthTranscript.Encode(peerId, (int)PeerRole.Client, region, challenge.Challenge.Span, challenge.SupernodeId);
            await call.RequestStream.WriteAsync(new ControlMessage
            {
                AuthRequest = new AuthRequest
                {
                    PeerId = peerId,
                    Role = PeerRole.Client,
                    Region = region,
                    Challenge = challenge.Challenge,
                    Signature = ByteString.CopyFrom(key.Sign(transcript)),
                    EnrollmentToken = token,
                    PublicKey = ByteString.CopyFrom(key.PublicKey),
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

    private async Task AnswerAsync()
    {
        try
        {
            await foreach (var message in call.ResponseStream.ReadAllAsync(stop.Token))
            {
                var answer = message.PayloadCase switch
                {
                    ControlMessage.PayloadOneofCase.Ping => new ControlMessage { Pong = new Pong { Sequence = message.Ping.Sequence, PingSentAt = message.Ping.SentAt } },
                    ControlMessage.PayloadOneofCase.Command => new ControlMessage
                    {
                        CommandResponse = new CommandResponse { CommandId = message.Command.CommandId, Result = new CommandResult { Done = new Empty() } },
                    },
                    _ => null,
                };
                if (answer is null)
                    continue;
                await writeLock.WaitAsync(stop.Token);
                try
                {
                    await call.RequestStream.WriteAsync(answer, stop.Token);
                }
                finally
                {
                    writeLock.Release();
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or RpcException or IOException)
        {
            // Ended by the benchmark or by the SuperNode.
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
}
