using System.Net;
using System.Net.Sockets;
using System.Text;

namespace MyDvpn.Testbed;

/// <summary>
/// A tiny HTTP/1.1 server on a socket made inside a namespace: every GET is answered <c>200</c> with the caller's
/// source IPv4 address as a text body (what a NAT turned it into), anything else <c>405</c>. One request per
/// connection; each connection is bounded in size and time; the accept loop ends on dispose.
/// </summary>
public sealed class HttpEcho : IAsyncDisposable
{
    private const int MaxRequestBytes = 16 * 1024;
    private static readonly TimeSpan ConnectionBound = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan StopBound = TimeSpan.FromSeconds(10);

    private readonly Socket _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly HashSet<Task> _connections = [];
    private readonly Task _acceptLoop;
    private int _disposed;

    private HttpEcho(Socket listener, string networkNamespace, IPEndPoint endpoint)
    {
        _listener = listener;
        Namespace = networkNamespace;
        Endpoint = endpoint;
        _acceptLoop = Task.Run(AcceptLoopAsync);
    }

    public string Namespace { get; }
    public IPEndPoint Endpoint { get; }

    /// <summary>Listens on <paramref name="endpoint"/> inside <paramref name="networkNamespace"/>.</summary>
    public static HttpEcho Start(string networkNamespace, IPEndPoint endpoint)
    {
        var listener = NetnsSockets.CreateTcp(networkNamespace);
        try
        {
            listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            listener.Bind(endpoint);
            listener.Listen(128);
            return new HttpEcho(listener, networkNamespace, endpoint);
        }
        catch (SocketException ex)
        {
            listener.Dispose();
            throw new TestbedException($"the HTTP echo server cannot listen on {endpoint} in {networkNamespace}: {ex.Message}", ex);
        }
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket connection;
            try
            {
                connection = await _listener.AcceptAsync(_stop.Token);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                if (_stop.IsCancellationRequested)
                    return;
                continue;
            }
            var served = ServeAsync(connection);
            lock (_connections)
                _connections.Add(served);
            _ = served.ContinueWith(done =>
            {
                lock (_connections)
                    _connections.Remove(done);
            }, TaskScheduler.Default);
        }
    }

    private async Task ServeAsync(Socket connection)
    {
        using var _ = connection;
        using var bound = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        bound.CancelAfter(ConnectionBound);
        try
        {
            var request = await ReadHeadAsync(connection, bound.Token);
            var caller = ((IPEndPoint)connection.RemoteEndPoint!).Address;
            if (caller.IsIPv4MappedToIPv6)
                caller = caller.MapToIPv4();
            var isGet = request.StartsWith("GET ", StringComparison.Ordinal);
            var body = isGet ? caller.ToString() : "only GET\n";
            var status = isGet ? "200 OK" : "405 Method Not Allowed";
            var response = $"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {Encoding.UTF8.GetByteCount(body)}\r\n"
                + $"Connection: close\r\n\r\n{body}";
            await connection.SendAsync(Encoding.UTF8.GetBytes(response), SocketFlags.None, bound.Token);
            connection.Shutdown(SocketShutdown.Send);
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException or InvalidDataException)
        {
            // The caller went away, was too slow or sent nonsense: its problem, not the server's.
        }
    }

    private static async Task<string> ReadHeadAsync(Socket connection, CancellationToken cancellationToken)
    {
        var buffer = new byte[MaxRequestBytes];
        var length = 0;
        while (true)
        {
            var read = await connection.ReceiveAsync(buffer.AsMemory(length), SocketFlags.None, cancellationToken);
            if (read == 0)
                throw new InvalidDataException("connection closed before the end of the request head");
            length += read;
            var text = Encoding.ASCII.GetString(buffer, 0, length);
            if (text.Contains("\r\n\r\n", StringComparison.Ordinal))
                return text;
            if (length == buffer.Length)
                throw new InvalidDataException("request head too long");
        }
    }

    /// <summary>Stops accepting, closes the listener and waits (bounded) for the connections being served.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        await _stop.CancelAsync();
        _listener.Dispose();
        Task[] open;
        lock (_connections)
            open = [.. _connections];
        try
        {
            await Task.WhenAll(open.Append(_acceptLoop)).WaitAsync(StopBound);
        }
        catch (TimeoutException)
        {
            throw new TestbedException($"the HTTP echo server on {Endpoint} in {Namespace} did not stop within {StopBound.TotalSeconds:0} s");
        }
        finally
        {
            _stop.Dispose();
        }
    }
}
