using System.Net.Security;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using MyDvpn.Common;
using MyDvpn.Protocol.Control;
using MyDvpn.Security;

namespace MyDvpn.IntegrationTests;

/// <summary>
/// A peer written against proto/ alone, which the tests make misbehave on purpose: wrong
/// signatures, replays, silence, wrong roles, bytes that are no message. TLS trusts the operator CA only, as a real
/// peer does. What it sends goes as bytes in gRPC's framing (<see cref="SendRawAsync"/>), so it can send anything.
/// </summary>
public sealed class RawPeer : IAsyncDisposable
{
    /// <summary><c>PersistentControlStream</c> with the request side as raw bytes: each write is one gRPC message of exactly those bytes.</summary>
    private static readonly Method<byte[], ControlMessage> RawControlStream = new(
        MethodType.DuplexStreaming, "mydvpn.control.v1.ControlStream", "PersistentControlStream",
        Marshallers.Create(bytes => bytes, bytes => bytes),
        Marshallers.Create((ControlMessage message) => message.ToByteArray(), ControlMessage.Parser.ParseFrom));

    private readonly GrpcChannel channel;
    private readonly AsyncDuplexStreamingCall<byte[], ControlMessage> call;

    public AuthChallenge Challenge { get; private set; } = null!;

    /// <summary>SHA-256 of the certificate the SuperNode presented: what a login on this stream is bound to.</summary>
    public byte[] ServerCertificateSha256 { get; private set; } = null!;

    private RawPeer(GrpcChannel channel, AsyncDuplexStreamingCall<byte[], ControlMessage> call)
    {
        this.channel = channel;
        this.call = call;
    }

    /// <param name="from">The local address to connect from (e.g. 127.0.0.2, another source on loopback); null: the system's choice.</param>
    /// <param name="headers">The stream's request headers (e.g. the CRL number held); null: none.</param>
    public static async Task<RawPeer> OpenAsync(HostPort superNode, string caFile, System.Net.IPAddress? from = null, Metadata? headers = null)
    {
        var ca = System.Security.Cryptography.X509Certificates.X509CertificateLoader.LoadCertificateFromFile(caFile);
        var trust = new OperatorCaTrust(ca);
        byte[]? seen = null;
        var handler = new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions
            {
                RemoteCertificateValidationCallback = (sender, certificate, chain, errors) =>
                {
                    var trusted = trust.ValidateServerCertificate(sender, certificate, chain, errors);
                    if (trusted)
                        seen = System.Security.Cryptography.SHA256.HashData(certificate!.GetRawCertData());
                    return trusted;
                },
            },
        };
        if (from is not null)
        {
            handler.ConnectCallback = async (context, cancellationToken) =>
            {
                var socket = new System.Net.Sockets.Socket(from.AddressFamily, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
                try
                {
                    socket.Bind(new System.Net.IPEndPoint(from, 0));
                    await socket.ConnectAsync(context.DnsEndPoint, cancellationToken);
                    return new System.Net.Sockets.NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            };
        }
        var channel = GrpcChannel.ForAddress($"https://{superNode}", new GrpcChannelOptions { HttpHandler = handler, MaxSendMessageSize = null, DisposeHttpClient = true });
        var call = channel.CreateCallInvoker().AsyncDuplexStreamingCall(RawControlStream, null, new CallOptions(headers));
        var peer = new RawPeer(channel, call);
        var first = await peer.ReadAsync();
        Assert.Equal(ControlMessage.PayloadOneofCase.AuthChallenge, first.PayloadCase);
        peer.Challenge = first.AuthChallenge;
        peer.ServerCertificateSha256 = seen ?? throw new InvalidOperationException("a challenge came without a trusted server certificate");
        return peer;
    }

    /// <summary>A correctly signed AuthRequest for this stream's challenge (change it to misbehave).</summary>
    /// <param name="serverCertificateSha256">The channel binding signed; null: this stream's server certificate.</param>
    /// <param name="exitOffer">An exit's offer (max_clients), signed and sent; 0: none.</param>
    public AuthRequest SignedRequest(IdentityKey key, string peerId, PeerRole role, string region, string? token = null,
        byte[]? serverCertificateSha256 = null, uint exitOffer = 0)
    {
        var transcript = PeerAuthTranscript.Encode(peerId, (int)role, region, Challenge.Challenge.Span, Challenge.SupernodeId,
            serverCertificateSha256 ?? ServerCertificateSha256, exitOffer);
        var request = new AuthRequest
        {
            PeerId = peerId,
            Role = role,
            Region = region,
            Challenge = Challenge.Challenge,
            Signature = ByteString.CopyFrom(key.Sign(transcript)),
        };
        if (exitOffer > 0)
            request.ExitOffer = new ExitOffer { MaxClients = exitOffer };
        if (token is not null)
        {
            request.EnrollmentToken = token;
            request.PublicKey = ByteString.CopyFrom(key.PublicKey);
        }
        return request;
    }

    public Task SendAsync(ControlMessage message) => SendRawAsync(message.ToByteArray());

    /// <summary>Sends <paramref name="bytes"/> as one gRPC message, whatever they are.</summary>
    public Task SendRawAsync(byte[] bytes) => call.RequestStream.WriteAsync(bytes);

    public Task SendAsync(AuthRequest request) => SendAsync(new ControlMessage { AuthRequest = request });

    /// <summary>The next message; a refusal surfaces as the RpcException that ended the stream.</summary>
    public async Task<ControlMessage> ReadAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(20));
        if (!await call.ResponseStream.MoveNext(cts.Token))
            throw new InvalidOperationException("the SuperNode ended the stream without a status");
        return call.ResponseStream.Current;
    }

    /// <summary>Reads until the stream ends and returns the refusal reason from the trailer.</summary>
    public async Task<(StatusCode Status, string Reason)> ExpectRefusalAsync(TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(20));
        try
        {
            while (DateTime.UtcNow < deadline)
                await ReadAsync(deadline - DateTime.UtcNow);
        }
        catch (RpcException ex)
        {
            return (ex.StatusCode, ex.Trailers.GetValue("mydvpn-reason") ?? "(no reason trailer)");
        }
        throw new TimeoutException("the stream was not refused in time");
    }

    public async ValueTask DisposeAsync()
    {
        call.Dispose();
        channel.Dispose();
        await Task.CompletedTask;
    }
}
