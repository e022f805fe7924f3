using System.Threading.Channels;
using Akka.Actor;
using Akka.Hosting;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using MyDvpn.Common;
using MyDvpn.Hosting;
using MyDvpn.Protocol;
using MyDvpn.Protocol.Control;
using MyDvpn.Security;
using MyDvpn.SuperNode.Sessions;

namespace MyDvpn.SuperNode.Edge;

/// <summary>Registry key of the region's <c>peers</c> shard region.</summary>
public sealed class PeerSessionShard;

/// <summary>
/// The peers' gRPC edge: <c>ControlStream.PersistentControlStream</c>. It challenges, checks
/// what it can alone (format, the source's rate, challenge freshness), lets the peer's sharded session decide
/// the identity (and only then charges the peer's own rate, <see cref="EdgeRateLimits"/>), then runs the stream — one reader loop here, one writer draining the stream's
/// bounded queue, and an <see cref="EdgeStream"/> actor in between.
/// </summary>
public sealed class ControlStreamService(
    ActorSystem system,
    IRequiredActor<PeerSessionShard> sessions,
    SuperNodeSettings settings,
    ChallengeBook challenges,
    LocalStreams streams,
    EdgeRateLimits limits,
    DirectoryCache directory,
    EdgeSecurityLog security,
    RegistrationStatus registration,
    TimeProvider time,
    ILogger<ControlStreamService> logger,
    ILogger<EdgeStream> edgeLogger) : ControlStream.ControlStreamBase
{
    private EdgeSettings Edge => settings.Edge;

    public override async Task PersistentControlStream(
        IAsyncStreamReader<ControlMessage> requestStream, IServerStreamWriter<ControlMessage> responseStream, ServerCallContext context)
    {
        var source = SourceAddress(context);
        string? peerId = null;
        try
        {
            if (limits.AdmitUnauthenticated(source) is { } tooMany)
                throw new StreamRefusal(RefusalReason.RateLimited, tooMany);
            if (!registration.AdmitsPeers)
                throw new StreamRefusal(RefusalReason.Unavailable, "this SuperNode is starting and catching up with the directory's revocations; retry");
            if (!streams.TryReserve(settings.MaxStreams))
                throw new StreamRefusal(RefusalReason.AtCapacity, $"this SuperNode holds its maximum of {settings.MaxStreams} streams; try {OtherSuperNodesText()}");
            AuthRequest auth;
            StreamInfo identity;
            string? exitAssignmentId;
            try
            {
                (auth, identity, exitAssignmentId) = await AuthenticateAsync(requestStream, responseStream, source, context);
            }
            finally
            {
                streams.Release();
            }
            peerId = auth.PeerId;
            using (logger.BeginScope(new LogScope(("peer_id", peerId), ("session_id", identity.SessionId), ("region", settings.Region))))
                await RunAsync(identity, ExitCapacityOf(auth), exitAssignmentId, requestStream, responseStream, context);
        }
        catch (StreamRefusal refusal)
        {
            security.Refused(refusal, peerId, source);
            throw refusal.ToRpcException();
        }
    }

    private async Task<(AuthRequest, StreamInfo, string?)> AuthenticateAsync(
        IAsyncStreamReader<ControlMessage> requestStream, IServerStreamWriter<ControlMessage> responseStream, string source, ServerCallContext context)
    {
        var challenge = challenges.Issue(source, Edge.ChallengeLifetime, out var expiresAt, out var noChallenge)
            ?? throw new StreamRefusal(RefusalReason.RateLimited, noChallenge!);
        try
        {
            return await AnswerChallengeAsync(challenge, expiresAt, requestStream, responseStream, source, context);
        }
        finally
        {
            challenges.Settle(source);
        }
    }

    private async Task<(AuthRequest, StreamInfo, string?)> AnswerChallengeAsync(byte[] challenge, DateTimeOffset expiresAt,
        IAsyncStreamReader<ControlMessage> requestStream, IServerStreamWriter<ControlMessage> responseStream, string source, ServerCallContext context)
    {
        var authChallenge = new AuthChallenge { Challenge = Google.Protobuf.ByteString.CopyFrom(challenge), SupernodeId = settings.Id, ExpiresAt = Timestamp.FromDateTimeOffset(expiresAt) };
        // A peer checks SuperNodes' certificates against the newest list it was given: one behind gets this one.
        if (settings.Node.Tls.Revocations.Current is { } crl && crl.Number > CrlNumberHeader.Read(context.RequestHeaders))
            authChallenge.Crl = Google.Protobuf.UnsafeByteOperations.UnsafeWrap(crl.Der);
        await responseStream.WriteAsync(new ControlMessage { AuthChallenge = authChallenge }, context.CancellationToken);

        var first = await ReadFirstAsync(requestStream, context.CancellationToken);
        if (first.PayloadCase != ControlMessage.PayloadOneofCase.AuthRequest)
            throw new StreamRefusal(RefusalReason.MalformedMessage, $"the first message must be an AuthRequest, not {first.PayloadCase}");
        var auth = first.AuthRequest;
        if (!NodeId.IsValid(auth.PeerId, out var idProblem))
            throw new StreamRefusal(RefusalReason.MalformedMessage, $"peer_id: {idProblem}");
        if (!RegionName.IsValid(auth.Region, out var regionProblem))
            throw new StreamRefusal(RefusalReason.MalformedMessage, $"region: {regionProblem}");
        if (auth.Role is PeerRole.Supernode or PeerRole.Unspecified || !System.Enum.IsDefined(auth.Role))
            throw new StreamRefusal(RefusalReason.RoleNotAllowed, $"a peer may not take the role {auth.Role}");
        if (auth.Region != settings.Region)
            throw new StreamRefusal(RefusalReason.WrongRegion, $"this SuperNode serves region {settings.Region}, not {auth.Region}");
        if (auth.Signature.Length != 64)
            throw new StreamRefusal(RefusalReason.MalformedMessage, "signature must be 64 bytes (Ed25519)");
        switch (challenges.Consume(challenge, auth.Challenge.Span))
        {
            case ChallengeBook.Verdict.Replayed:
                throw new StreamRefusal(RefusalReason.ReplayedChallenge, "this challenge was already answered or belongs to another stream");
            case ChallengeBook.Verdict.Expired:
                throw new StreamRefusal(RefusalReason.ExpiredChallenge, $"the challenge expired after {Edge.ChallengeLifetime.TotalSeconds:0.#} s");
            case ChallengeBook.Verdict.Unknown:
                throw new StreamRefusal(RefusalReason.BadSignature, "the signed challenge is not the one this stream was given");
        }

        // The peer signed over the certificate its TLS saw (this SuperNode's is the one Kestrel serves) and over its exit
        // offer, as it came: a changed offer does not verify.
        var transcript = PeerAuthTranscript.Encode(auth.PeerId, (int)auth.Role, auth.Region, challenge, settings.Id,
            settings.Node.Tls.CertificateSha256, auth.ExitOffer?.MaxClients ?? 0);
        if (auth.EnrollmentToken.Length > 0)
        {
            // A login with a token signs with the key it presents: one that does not is junk, refused here without
            // starting the session of the peer it names (sharding remembers every session it starts).
            if (!IdentityKey.Verify(auth.PublicKey.Span, transcript, auth.Signature.Span))
                throw new StreamRefusal(RefusalReason.BadSignature, "the signature does not verify with the public key presented with the token");
            // Every token presented may be a redemption at the BaseNodes: charged to its source before anyone is asked.
            if (limits.AdmitRedemption(source) is { } tooManyTokens)
                throw new StreamRefusal(RefusalReason.RateLimited, tooManyTokens);
        }
        var decision = await AskSessionAsync(new AuthenticatePeer(
            auth.PeerId, auth.Role, auth.Region, transcript, auth.Signature.ToByteArray(),
            string.IsNullOrEmpty(auth.EnrollmentToken) ? null : auth.EnrollmentToken,
            auth.PublicKey.IsEmpty ? null : auth.PublicKey.ToByteArray()), context.CancellationToken);
        // Only a peer that proved who it is is charged to its own limit: junk naming it must not lock it out.
        if (decision is PeerAuthenticated && limits.AdmitAuthenticated(auth.PeerId) is { } tooOften)
            throw new StreamRefusal(RefusalReason.RateLimited, tooOften);
        return decision switch
        {
            PeerAuthenticated ok => (auth, new StreamInfo(auth.PeerId, ok.Role, ok.SessionId, source, time.GetUtcNow(), null), ok.ExitAssignmentId),
            PeerRefused refused => throw new StreamRefusal(refused.Reason, refused.Detail),
            _ => throw new StreamRefusal(RefusalReason.Unavailable, $"unexpected answer from the peer's session: {decision.GetType().Name}"),
        };
    }

    /// <summary>What an exit (or both) offers to serve; a client's offer counts for nothing.</summary>
    private static int ExitCapacityOf(AuthRequest auth) =>
        auth.Role is PeerRole.Exit or PeerRole.Both && auth.ExitOffer is { } offer ? (int)Math.Min(offer.MaxClients, int.MaxValue) : 0;

    private async Task RunAsync(StreamInfo identity, int exitCapacity, string? exitAssignmentId, IAsyncStreamReader<ControlMessage> requestStream,
        IServerStreamWriter<ControlMessage> responseStream, ServerCallContext context)
    {
        var outbound = Channel.CreateBounded<ControlMessage>(new BoundedChannelOptions(Edge.OutboundQueue)
        {
            SingleReader = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
        var closed = new TaskCompletionSource<StreamRefusal>(TaskCreationOptions.RunContinuationsAsynchronously);
        var edge = system.ActorOf(EdgeStream.Props(identity, outbound.Writer, closed, sessions.ActorRef, streams, Edge, exitCapacity, time, edgeLogger));
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken);
        try
        {
            // The AuthResponse goes first; everything after it comes through the queue. The edge
            // attaches itself to the session, which may still refuse it (e.g. a newer stream won).
            await responseStream.WriteAsync(new ControlMessage { AuthResponse = AuthResponseFor(identity, exitAssignmentId) }, context.CancellationToken);
            SecurityLogAccepted(identity);

            var writer = WriteAllAsync(outbound.Reader, responseStream, stop.Token);
            var reader = ReadAllAsync(requestStream, edge, stop.Token);
            var finished = await Task.WhenAny(closed.Task, reader, writer);
            if (finished == closed.Task)
                throw await closed.Task;
            // The peer ended its side, or the connection broke: nothing to tell it.
            await finished;
        }
        catch (OperationCanceledException) when (context.CancellationToken.IsCancellationRequested)
        {
            // The peer went away.
        }
        catch (IOException ex)
        {
            logger.LogInformation("Stream of peer {PeerId} broke: {Reason}", identity.PeerId, ex.Message);
        }
        finally
        {
            stop.Cancel();
            outbound.Writer.TryComplete();
            system.Stop(edge);
        }
    }

    private void SecurityLogAccepted(StreamInfo identity)
    {
        EdgeSecurityLog.Accepted();
        logger.LogInformation("Peer {PeerId} ({Role}) authenticated from {Source}, session {SessionId}",
            identity.PeerId, identity.Role, identity.RemoteAddress, identity.SessionId);
    }

    private static async Task ReadAllAsync(IAsyncStreamReader<ControlMessage> requestStream, IActorRef edge, CancellationToken cancellationToken)
    {
        try
        {
            await foreach (var message in requestStream.ReadAllAsync(cancellationToken))
            {
                if (message.PayloadCase == ControlMessage.PayloadOneofCase.None)
                    throw new StreamRefusal(RefusalReason.MalformedMessage, "empty message");
                edge.Tell(new EdgeStream.Inbound(message));
            }
        }
        catch (Exception ex) when (Unreadable(ex) is { } refusal)
        {
            throw refusal;
        }
    }

    /// <summary>
    /// A message the reader could not take — not protobuf, cut short, over the size limit, a broken frame — as the
    /// <c>MALFORMED_MESSAGE</c> refusal that ends the stream (counted and logged in one line by <see cref="EdgeSecurityLog"/>,
    /// without the stack trace an unhandled exception would log); null for anything else.
    /// </summary>
    private static StreamRefusal? Unreadable(Exception ex) => ex switch
    {
        Google.Protobuf.InvalidProtocolBufferException => new StreamRefusal(RefusalReason.MalformedMessage, $"unreadable message: {ex.Message}"),
        RpcException { StatusCode: StatusCode.ResourceExhausted or StatusCode.Internal } rpc =>
            new StreamRefusal(RefusalReason.MalformedMessage, $"unreadable message: {rpc.Status.Detail}"),
        _ => null,
    };

    private static async Task WriteAllAsync(ChannelReader<ControlMessage> outbound, IServerStreamWriter<ControlMessage> responseStream, CancellationToken cancellationToken)
    {
        await foreach (var message in outbound.ReadAllAsync(cancellationToken))
            await responseStream.WriteAsync(message, cancellationToken);
        // The queue completes only when the stream ends: stay pending so WhenAny waits for the reason.
        await Task.Delay(Timeout.Infinite, cancellationToken);
    }

    private async Task<ControlMessage> ReadFirstAsync(IAsyncStreamReader<ControlMessage> requestStream, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(Edge.AuthTimeout);
        try
        {
            if (!await requestStream.MoveNext(timeout.Token))
                throw new StreamRefusal(RefusalReason.MalformedMessage, "the stream ended before an AuthRequest");
            return requestStream.Current;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new StreamRefusal(RefusalReason.AuthTimeout, $"no AuthRequest within {Edge.AuthTimeout.TotalSeconds:0.#} s");
        }
        catch (Exception ex) when (Unreadable(ex) is { } refusal)
        {
            throw refusal;
        }
        catch (InvalidOperationException ex) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            throw new StreamRefusal(RefusalReason.AuthTimeout, $"no AuthRequest within {Edge.AuthTimeout.TotalSeconds:0.#} s ({ex.Message})");
        }
    }

    private async Task<object> AskSessionAsync(object message, CancellationToken cancellationToken)
    {
        try
        {
            return await sessions.ActorRef.Ask<object>(message, Edge.SessionTimeout, cancellationToken);
        }
        catch (AskTimeoutException)
        {
            throw new StreamRefusal(RefusalReason.Unavailable, $"the peer's session did not answer within {Edge.SessionTimeout.TotalSeconds:0} s (region cluster forming or journal unavailable); retry");
        }
    }

    private AuthResponse AuthResponseFor(StreamInfo identity, string? exitAssignmentId)
    {
        var response = new AuthResponse
        {
            ExitAssignmentId = exitAssignmentId ?? "",
            SessionId = identity.SessionId,
            HeartbeatIntervalMs = (uint)Edge.HeartbeatInterval.TotalMilliseconds,
            SupernodeId = settings.Id,
        };
        response.RegionSupernodes.AddRange(OtherSuperNodes());
        return response;
    }

    /// <summary>The region's other SuperNodes as the directory cache knows them, for failover.</summary>
    private IEnumerable<SuperNodeEndpoint> OtherSuperNodes() =>
        directory.Regions.Regions
            .Where(r => r.Region == settings.Region)
            .SelectMany(r => r.Supernodes)
            .Where(s => s.Registration.SupernodeId != settings.Id && s.Status == Protocol.Directory.SuperNodeStatus.Up)
            .Select(s => new SuperNodeEndpoint { SupernodeId = s.Registration.SupernodeId, GrpcEndpoint = s.Registration.GrpcEndpoint });

    private string OtherSuperNodesText()
    {
        var others = OtherSuperNodes().Select(s => $"{s.SupernodeId} at {s.GrpcEndpoint}").ToList();
        return others.Count == 0 ? "again later" : string.Join(", ", others);
    }

    private static string SourceAddress(ServerCallContext context)
    {
        var connection = context.GetHttpContext().Connection;
        return connection.RemoteIpAddress?.ToString() ?? context.Peer;
    }
}
