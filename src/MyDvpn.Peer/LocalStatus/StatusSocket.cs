using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

using MyDvpn.Peer.Tunnel;
using MyDvpn.Security;

namespace MyDvpn.Peer.LocalStatus;

/// <summary>
/// The agent's status socket: a Unix domain socket <c>agent.sock</c> in the state directory (0700), readable by its
/// owner only. Every connection gets one <see cref="AgentStatus"/> JSON document and is closed; connections are served one at
/// a time. A socket file left by an agent that died is removed at start (the state directory's lock guarantees no
/// other agent uses it); the socket is removed on stop.
/// </summary>
public sealed class StatusSocket(
    PeerSettings settings, WireGuardKey key, PeerStatus status, TunnelStateStore tunnel, WireGuardTunnel? dataPlane, ILogger<StatusSocket> logger)
    : IHostedService, IDisposable
{
    public const string FileName = "agent.sock";

    /// <summary>The longest socket path the kernel takes (<c>sun_path</c> is 108 bytes with its terminating zero).</summary>
    public const int MaxPathBytes = 107;

    /// <summary>A reader that takes longer than this to take the document is dropped.</summary>
    public static readonly TimeSpan WriteTimeout = TimeSpan.FromSeconds(5);

    private readonly CancellationTokenSource stopping = new();
    private Socket? listener;
    private Task loop = Task.CompletedTask;

    public string Path { get; } = PathIn(settings.StateDir);

    public static string PathIn(string stateDir) => System.IO.Path.Combine(stateDir, FileName);

    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (Encoding.UTF8.GetByteCount(Path) > MaxPathBytes)
        {
            logger.LogWarning("No status socket: {Path} is longer than the {Max} bytes a Unix socket path may have; use a shorter --state-dir for `mydvpn status`",
                Path, MaxPathBytes);
            return Task.CompletedTask;
        }
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            // The socket is created with the process umask's mode: bound inside the 0700 state directory, nobody else
            // can reach it before its own mode is narrowed below.
            OwnerOnly.CreateDirectory(settings.StateDir);
            File.Delete(Path);
            socket.Bind(new UnixDomainSocketEndPoint(Path));
            if (!OperatingSystem.IsWindows())
                File.SetUnixFileMode(Path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            socket.Listen(8);
        }
        catch (Exception ex) when (ex is SocketException or IOException or UnauthorizedAccessException)
        {
            socket.Dispose();
            logger.LogError(ex, "No status socket: cannot listen on {Path}; `mydvpn status` will not find this agent", Path);
            return Task.CompletedTask;
        }
        listener = socket;
        loop = AcceptAsync(socket, stopping.Token);
        logger.LogDebug("Status socket listening on {Path}", Path);
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (listener is null)
            return;
        await stopping.CancelAsync();
        listener.Dispose();
        await loop;
        try
        {
            File.Delete(Path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            logger.LogWarning("Could not remove the status socket {Path}: {Problem}", Path, ex.Message);
        }
    }

    public void Dispose()
    {
        listener?.Dispose();
        stopping.Dispose();
    }

    /// <summary>The document as it would be sent now.</summary>
    public byte[] Document()
    {
        var document = AgentStatus.Of(settings, key, status.Current, tunnel.Current, dataPlane?.Latest);
        var json = JsonSerializer.SerializeToUtf8Bytes(document, AgentStatusJson.Default.AgentStatus);
        return [.. json, (byte)'\n'];
    }

    /// <summary>Reads the document the agent listening on <paramref name="socketPath"/> answers (what <c>mydvpn status</c> does).</summary>
    /// <exception cref="SocketException">Nothing listens there (no socket file: <see cref="SocketError.AddressNotAvailable"/>; a stale one: <see cref="SocketError.ConnectionRefused"/>).</exception>
    /// <exception cref="TimeoutException">The agent did not answer within <paramref name="timeout"/>.</exception>
    /// <exception cref="InvalidDataException">The answer is larger than any status document.</exception>
    public static async Task<byte[]> ReadAsync(string socketPath, TimeSpan timeout, CancellationToken cancellationToken)
    {
        const int MaxDocumentBytes = 8 << 20;
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(timeout);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), deadline.Token);
            await using var stream = new NetworkStream(socket, ownsSocket: false);
            using var document = new MemoryStream();
            var buffer = new byte[16 * 1024];
            int read;
            while ((read = await stream.ReadAsync(buffer, deadline.Token)) > 0)
            {
                if (document.Length + read > MaxDocumentBytes)
                    throw new InvalidDataException($"{socketPath} answered more than {MaxDocumentBytes} bytes; that is no status document");
                document.Write(buffer, 0, read);
            }
            return document.ToArray();
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new TimeoutException($"the agent on {socketPath} did not answer within {timeout.TotalSeconds:F0} s");
        }
    }

    private async Task AcceptAsync(Socket socket, CancellationToken token)
    {
        while (!token.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await socket.AcceptAsync(token);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException || (ex is SocketException && token.IsCancellationRequested))
            {
                return;
            }
            catch (SocketException ex)
            {
                logger.LogWarning("Status socket: accepting a connection failed: {Problem}", ex.Message);
                continue;
            }
            await AnswerAsync(client, token);
        }
    }

    private async Task AnswerAsync(Socket client, CancellationToken token)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(token);
        timeout.CancelAfter(WriteTimeout);
        using var owned = client;
        try
        {
            await using var stream = new NetworkStream(client, ownsSocket: true);
            await stream.WriteAsync(Document(), timeout.Token);
            client.Shutdown(SocketShutdown.Send);
        }
        catch (Exception ex) when (ex is SocketException or IOException or OperationCanceledException or ObjectDisposedException)
        {
            logger.LogDebug("Status socket: a reader went away before it had the document: {Problem}", ex.Message);
        }
    }
}
