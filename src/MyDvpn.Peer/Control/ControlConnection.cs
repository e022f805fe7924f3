using System.Net.Security;
using System.Security.Authentication;
using System.Threading.Channels;
using Akka.Actor;
using Grpc.Core;
using Grpc.Net.Client;
using MyDvpn.Common;
using MyDvpn.Protocol;
using MyDvpn.Protocol.Control;

namespace MyDvpn.Peer.Control;

/// <summary>
/// One control stream to one SuperNode: a reader loop that tells its owner every message, and one writer draining a
/// bounded outbox, so writes never overlap. It knows nothing of the protocol; the <see cref="ControlChannel"/> does.
/// </summary>
internal sealed class ControlConnection
{
    /// <summary>Messages waiting to be written; a stream that cannot take this many is treated as dead.</summary>
    public const int OutboxCapacity = 256;

    private readonly Channel<ControlMessage> outbox = Channel.CreateBounded<ControlMessage>(
        new BoundedChannelOptions(OutboxCapacity) { SingleReader = true, SingleWriter = true, FullMode = BoundedChannelFullMode.Wait });
    private readonly CancellationTokenSource aborted;
    private readonly ServerCertificateValidator validator;
    private readonly IActorRef owner;
    private readonly TimeSpan connectTimeout;
    private readonly TaskCompletionSource<bool> written = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile string? certificateProblem;
    private volatile ServerCertificate? server;
    private readonly int? socketMark;

    // Linux <sys/socket.h>: SOL_SOCKET, SO_MARK.
    private const int SolSocket = 1, SoMark = 36;

    /// <param name="socketMark">
    /// The firewall mark (SO_MARK) put on the stream's socket, so the data plane's full-tunnel routing leaves the control
    /// stream outside the tunnel (needs CAP_NET_ADMIN); null: none.
    /// </param>
    public ControlConnection(int generation, HostPort endpoint, ServerCertificateValidator validator, IActorRef owner,
        TimeSpan connectTimeout, CancellationToken stopping, int? socketMark = null)
    {
        this.socketMark = socketMark;
        Generation = generation;
        Endpoint = endpoint;
        this.validator = validator;
        this.owner = owner;
        this.connectTimeout = connectTimeout;
        aborted = CancellationTokenSource.CreateLinkedTokenSource(stopping);
    }

    /// <summary>Tells this stream's messages from those of streams before it.</summary>
    public int Generation { get; }

    public HostPort Endpoint { get; }

    /// <summary>Queues <paramref name="message"/> for the writer; false if the stream is closed or its outbox full.</summary>
    public bool TrySend(ControlMessage message) => outbox.Writer.TryWrite(message);

    /// <summary>
    /// Queues <paramref name="last"/> as the stream's last message and ends the stream from this side once it is
    /// written. The task says whether everything queued was written and the stream half-closed.
    /// </summary>
    public Task<bool> CloseAsync(ControlMessage last)
    {
        outbox.Writer.TryWrite(last);
        outbox.Writer.TryComplete();
        return written.Task;
    }

    /// <summary>Ends the stream; what it reads from now on is dropped.</summary>
    public void Abort()
    {
        outbox.Writer.TryComplete();
        try
        {
            aborted.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // Already over.
        }
    }

    /// <summary>
    /// Opens the stream and reads it until it ends. Completes normally when the SuperNode ends the stream with OK;
    /// throws what ended it otherwise (an <see cref="RpcException"/> carries the refusal reason).
    /// </summary>
    public async Task RunAsync()
    {
        var token = aborted.Token;
        try
        {
            using var channel = GrpcChannel.ForAddress($"https://{Endpoint}", new GrpcChannelOptions
            {
                HttpHandler = new SocketsHttpHandler
                {
                    ConnectTimeout = connectTimeout,
                    ConnectCallback = socketMark is { } mark ? (context, cancel) => ConnectMarkedAsync(context.DnsEndPoint, mark, cancel) : null,
                    PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
                    // HTTP/2 pings notice a dead TCP path even while the control stream is quiet.
                    KeepAlivePingDelay = TimeSpan.FromSeconds(20),
                    KeepAlivePingTimeout = TimeSpan.FromSeconds(10),
                    KeepAlivePingPolicy = HttpKeepAlivePingPolicy.WithActiveRequests,
                    SslOptions = new SslClientAuthenticationOptions
                    {
                        EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
                        RemoteCertificateValidationCallback = validator.Callback(problem => certificateProblem = problem, accepted => server = accepted),
                    },
                },
                DisposeHttpClient = true,
            });
            var client = new ControlStream.ControlStreamClient(channel);
            using var call = client.PersistentControlStream(CrlNumberHeader.For(validator.RevocationListNumber), cancellationToken: token);
            var writer = WriteAsync(call.RequestStream, token);
            try
            {
                await foreach (var message in call.ResponseStream.ReadAllAsync(token))
                    owner.Tell(new Incoming(Generation, message, server));
            }
            finally
            {
                outbox.Writer.TryComplete();
                await writer;
            }
        }
        catch (Exception ex) when (certificateProblem is { } problem && ex is not OperationCanceledException)
        {
            throw new AuthenticationException(problem, ex);
        }
        finally
        {
            written.TrySetResult(false);
            aborted.Dispose();
        }
    }

    private static async ValueTask<Stream> ConnectMarkedAsync(System.Net.DnsEndPoint server, int mark, CancellationToken cancellationToken)
    {
        var socket = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp) { NoDelay = true };
        try
        {
            socket.SetRawSocketOption(SolSocket, SoMark, BitConverter.GetBytes(mark));
            await socket.ConnectAsync(server, cancellationToken);
            return new System.Net.Sockets.NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private async Task WriteAsync(IClientStreamWriter<ControlMessage> requests, CancellationToken token)
    {
        try
        {
            await foreach (var message in outbox.Reader.ReadAllAsync(token))
                await requests.WriteAsync(message, token);
            await requests.CompleteAsync();
            written.TrySetResult(true);
        }
        catch (Exception ex) when (ex is OperationCanceledException or RpcException or InvalidOperationException or IOException)
        {
            // A stream that cannot be written is dead even if it can still be read: end it, and the reader reports it.
            written.TrySetResult(false);
            Abort();
        }
    }
}
