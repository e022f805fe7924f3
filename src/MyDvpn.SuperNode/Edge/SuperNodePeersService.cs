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

/// <summary>What BaseNodes ask of this SuperNode: BaseNode certificates only (<see cref="SuperNodeHost.Policy"/>).</summary>
public sealed class SuperNodePeersService(
    ActorSystem system,
    IRequiredActor<PeerSessionShard> sessions,
    IRequiredActor<ExitPoolShard> pools,
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

    public override async Task<UnrevokeResponse> Unrevoke(UnrevokeRequest request, ServerCallContext context)
    {
        if (!NodeId.IsValid(request.PeerId, out var problem))
            throw new RpcException(new Grpc.Core.Status(StatusCode.InvalidArgument, $"peer_id: {problem}"));
        try
        {
            await sessions.ActorRef.Ask<PeerUnrevoked>(new UnrevokePeer(request.PeerId), settings.Edge.SessionTimeout, context.CancellationToken);
        }
        catch (AskTimeoutException)
        {
            throw new RpcException(new Grpc.Core.Status(StatusCode.Unavailable,
                $"the session of peer {request.PeerId} did not answer; the unrevocation is retried from the directory"));
        }
        logger.LogWarning("Security event: the revocation of peer {PeerId} was taken back (version {Version})", request.PeerId, request.Version);
        return new UnrevokeResponse();
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

    /// <summary>How long a drain waits for its clients to move when the caller names no wait.</summary>
    public static readonly TimeSpan DefaultDrainWait = TimeSpan.FromSeconds(60);

    private static readonly TimeSpan DrainPollInterval = TimeSpan.FromMilliseconds(250);

    public override async Task<DrainExitResponse> DrainExit(DrainExitRequest request, ServerCallContext context)
    {
        CheckRegion(request.Region);
        if (!NodeId.IsValid(request.ExitPeerId, out var problem))
            throw new RpcException(new Grpc.Core.Status(StatusCode.InvalidArgument, $"exit_peer_id: {problem}"));
        var started = await AskPoolAsync<ExitDrainStarted>(new Exits.DrainExit(settings.Region, request.ExitPeerId), context);
        logger.LogInformation("Exit {ExitPeerId} drained; {Count} clients to move", request.ExitPeerId, started.Moving.Count);
        var wait = request.WaitSeconds == 0 ? DefaultDrainWait : TimeSpan.FromSeconds(request.WaitSeconds);
        var until = DateTimeOffset.UtcNow + wait;
        while (true)
        {
            var view = await AskPoolAsync<ExitPoolSnapshotView>(new GetExitPool(settings.Region), context);
            var response = DrainProgress(started, view);
            if (response.Complete || DateTimeOffset.UtcNow >= until)
                return response;
            await Task.Delay(DrainPollInterval, context.CancellationToken);
        }
    }

    /// <summary>
    /// Where the clients of a drain are now: one whose assignment is still in the pool has not moved; one that moved holds
    /// an active assignment on another exit (a client that left the region's exits altogether shows none).
    /// </summary>
    public static DrainExitResponse DrainProgress(ExitDrainStarted started, ExitPoolSnapshotView view)
    {
        var response = new DrainExitResponse { ExitPeerId = started.PeerId, Known = started.Known, Complete = true };
        foreach (var moving in started.Moving)
        {
            var client = new DrainedClient { FromAssignmentId = moving.AssignmentId, ClientPeerId = moving.ClientPeerId, ClientRegion = moving.ClientRegion };
            if (view.Assignments.Any(a => a.AssignmentId == moving.AssignmentId))
                response.Complete = false;
            else if (view.Assignments.FirstOrDefault(a => a.ClientPeerId == moving.ClientPeerId && a.ClientRegion == moving.ClientRegion
                                                          && a.ExitPeerId != started.PeerId && a.State == ExitAssignmentRecord.Active) is { } now)
                (client.ToExitPeerId, client.ToAssignmentId) = (now.ExitPeerId, now.AssignmentId);
            response.Clients.Add(client);
        }
        return response;
    }

    public override async Task<UndrainExitResponse> UndrainExit(UndrainExitRequest request, ServerCallContext context)
    {
        CheckRegion(request.Region);
        if (!NodeId.IsValid(request.ExitPeerId, out var problem))
            throw new RpcException(new Grpc.Core.Status(StatusCode.InvalidArgument, $"exit_peer_id: {problem}"));
        var result = await AskPoolAsync<ExitUndrainResult>(new Exits.UndrainExit(settings.Region, request.ExitPeerId), context);
        return new UndrainExitResponse { WasDrained = result.WasDrained };
    }

    /// <summary>How long an operator's rotation of one client may take: the exit's region sets the new exit up, the client applies RotatePeer.</summary>
    public TimeSpan RotationWait => settings.Exits.AllocationTimeout + settings.Exits.ClientSetupTimeout;

    public override async Task<RotationResult> RotateClient(RotateOneClientRequest request, ServerCallContext context)
    {
        CheckRegion(request.Region);
        if (!NodeId.IsValid(request.PeerId, out var problem))
            throw new RpcException(new Grpc.Core.Status(StatusCode.InvalidArgument, $"peer_id: {problem}"));
        var reason = string.IsNullOrWhiteSpace(request.Reason) ? "moved by the operator" : request.Reason;
        RotationOutcome outcome;
        try
        {
            outcome = await sessions.ActorRef.Ask<RotationOutcome>(
                new RotateExit(request.PeerId, "", RotationReason.Operator, reason), RotationWait, context.CancellationToken);
        }
        catch (AskTimeoutException)
        {
            throw new RpcException(new Grpc.Core.Status(StatusCode.DeadlineExceeded,
                $"peer {request.PeerId} did not move within {RotationWait.TotalSeconds:0} s; its session goes on with it"));
        }
        return new RotationResult
        {
            PeerId = request.PeerId,
            Moved = outcome.Moved,
            FromExitPeerId = outcome.FromExitPeerId,
            FromAssignmentId = outcome.FromAssignmentId,
            ToExitPeerId = outcome.ToExitPeerId ?? "",
            ToAssignmentId = outcome.ToAssignmentId ?? "",
            Failure = outcome.Failure ?? "",
        };
    }

    private void CheckRegion(string region)
    {
        if (region != settings.Region)
            throw Protocol.Control.RefusalReasons.ToRpcException(Protocol.Control.RefusalReason.WrongRegion, $"this SuperNode serves region {settings.Region}, not '{region}'");
    }

    private async Task<T> AskPoolAsync<T>(object message, ServerCallContext context)
    {
        try
        {
            return await pools.ActorRef.Ask<T>(message, settings.Edge.SessionTimeout, context.CancellationToken);
        }
        catch (AskTimeoutException)
        {
            throw new RpcException(new Grpc.Core.Status(StatusCode.Unavailable,
                $"the exit pool of region {settings.Region} did not answer within {settings.Edge.SessionTimeout.TotalSeconds:0} s; retry"));
        }
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
