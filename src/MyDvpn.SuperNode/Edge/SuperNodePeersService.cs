using Akka.Actor;
using Akka.Hosting;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using MyDvpn.Common;
using MyDvpn.Protocol.SuperNode;
using MyDvpn.SuperNode.Exits;
using MyDvpn.SuperNode.Sessions;

namespace MyDvpn.SuperNode.Edge;

/// <summary>What BaseNodes (and other SuperNodes) ask of this SuperNode: node certificates only.</summary>
public sealed class SuperNodePeersService(
    ActorSystem system,
    IRequiredActor<PeerSessionShard> sessions,
    LocalStreams streams,
    SuperNodeSettings settings,
    ILogger<SuperNodePeersService> logger) : SuperNodePeers.SuperNodePeersBase
{
    public override async Task<RevokeResponse> Revoke(RevokeRequest request, ServerCallContext context)
    {
        if (!NodeId.IsValid(request.PeerId, out var problem))
            throw new RpcException(new Grpc.Core.Status(StatusCode.InvalidArgument, $"peer_id: {problem}"));
        var hadStream = streams.Snapshot().Any(s => s.PeerId == request.PeerId);
        try
        {
            // The session persists the revocation and closes the peer's stream wherever it is attached.
            await sessions.ActorRef.Ask<PeerRevoked>(new RevokePeer(request.PeerId), settings.Edge.SessionTimeout, context.CancellationToken);
        }
        catch (AskTimeoutException)
        {
            throw new RpcException(new Grpc.Core.Status(StatusCode.Unavailable, $"the session of peer {request.PeerId} did not answer; the revocation is retried from the directory"));
        }
        logger.LogWarning("Security event: peer {PeerId} revoked (version {Version})", request.PeerId, request.Version);
        return new RevokeResponse { StreamClosed = hadStream };
    }

    public override async Task<IssueCommandResponse> IssueCommand(IssueCommandRequest request, ServerCallContext context)
    {
        if (!NodeId.IsValid(request.PeerId, out var problem))
            throw new RpcException(new Grpc.Core.Status(StatusCode.InvalidArgument, $"peer_id: {problem}"));
        if (request.Command is null || request.Command.BodyCase == Protocol.Control.Command.BodyOneofCase.None)
            throw new RpcException(new Grpc.Core.Status(StatusCode.InvalidArgument, "command with a body is required"));
        var done = new TaskCompletionSource<object>(TaskCreationOptions.RunContinuationsAsynchronously);
        // Waiting covers every retry up to the command's deadline (the session's default is 30 s).
        var timeout = request.Wait ? TimeSpan.FromSeconds(60) : settings.Edge.SessionTimeout;
        var waiter = system.ActorOf(CommandWaiter.Props(new Sessions.IssueCommand(request.PeerId, request.Command), request.Wait, sessions.ActorRef, done, timeout));
        await using var cancel = context.CancellationToken.Register(() => system.Stop(waiter));
        object answer;
        try
        {
            answer = await done.Task;
        }
        catch (TimeoutException ex)
        {
            throw new RpcException(new Grpc.Core.Status(StatusCode.DeadlineExceeded, ex.Message));
        }
        return answer switch
        {
            CommandAccepted accepted => new IssueCommandResponse { CommandId = accepted.CommandId },
            CommandOutcome { Response: { } response } outcome => new IssueCommandResponse { CommandId = outcome.CommandId, Response = response },
            CommandOutcome outcome => new IssueCommandResponse { CommandId = outcome.CommandId, FailureReason = outcome.FailureReason ?? "failed" },
            _ => throw new RpcException(new Grpc.Core.Status(StatusCode.Internal, $"unexpected answer {answer.GetType().Name}")),
        };
    }

    public override Task<SessionList> ListSessions(ListLocalSessionsRequest request, ServerCallContext context)
    {
        var list = new SessionList();
        list.Sessions.AddRange(streams.Snapshot().OrderBy(s => s.PeerId, StringComparer.Ordinal).Select(s => new Session
        {
            PeerId = s.PeerId,
            Role = s.Role.ToString().ToLowerInvariant(),
            Region = settings.Region,
            SupernodeId = settings.Id,
            SessionId = s.SessionId,
            ConnectedSince = Timestamp.FromDateTimeOffset(s.ConnectedSince),
            RttMicros = s.LastRtt is { } rtt ? (uint)Math.Min(rtt.TotalMicroseconds, uint.MaxValue) : 0,
            RemoteAddress = s.RemoteAddress,
            State = "connected",
            CommandsInFlight = (uint)s.CommandsInFlight,
            Assignments = { (s.Assignments ?? []).Select(a => a.ToProto()) },
        }));
        return Task.FromResult(list);
    }
}
