using System.Net;
using Akka.Actor;
using Akka.Hosting;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using MyDvpn.Common;
using MyDvpn.Protocol.Control;
using MyDvpn.Protocol.SuperNode;
using MyDvpn.SuperNode.Commands;
using MyDvpn.SuperNode.Relay;
using Status = Grpc.Core.Status;

namespace MyDvpn.SuperNode.Exits;

/// <summary>Registry key of the region's <c>exit-pool</c> shard region.</summary>
public sealed class ExitPoolShard;

/// <summary>
/// The <c>ExitAllocation</c> service: how SuperNodes (of any region) reach this region's <see cref="ExitPool"/> and
/// relay; BaseNodes only list the exits (<see cref="SuperNodeHost.Policy"/>). A SuperNode allocates exits for the clients
/// of its own region only, and tells of relay legs of its own region only. Refusals are gRPC statuses with the <c>mydvpn-reason</c> trailer.
/// </summary>
public sealed class ExitAllocationService(
    IRequiredActor<ExitPoolShard> pools,
    IRequiredActor<Edge.PeerSessionShard> sessions,
    IRequiredActor<ExitLegWatch> exitLegWatch,
    IRelayLegs relay,
    ActorSystem system,
    SuperNodeSettings settings,
    Microsoft.Extensions.Logging.ILogger<ExitAllocationService> logger) : ExitAllocation.ExitAllocationBase
{
    private ExitSettings Exits => settings.Exits;


    public override async Task<Protocol.SuperNode.ExitAssignment> AllocateExit(AllocateExitRequest request, ServerCallContext context)
    {
        CheckRegion(request.Region);
        Require(request.AssignmentId.Length is > 0 and <= 64, "assignment_id must be 1 to 64 characters");
        Require(NodeId.IsValid(request.ClientPeerId, out var idProblem), $"client_peer_id: {idProblem}");
        Require(RegionName.IsValid(request.ClientRegion, out var regionProblem), $"client_region: {regionProblem}");
        Require(request.ClientPublicKey.Length == 32, "client_public_key must be a 32-byte WireGuard public key");

        Require(request.AvoidExitPeerIds.All(id => NodeId.IsValid(id, out _)), "avoid_exit_peer_ids: not a valid peer id");
        // The client's own SuperNode asks for its exit.
        MyDvpn.Hosting.CallerIdentity.RequireSuperNode(context, logger, claimedId: null, request.ClientRegion);
        var answer = await AskAsync(new AllocateExit(request.Region, request.AssignmentId, request.ClientPeerId, request.ClientRegion,
            request.ClientPublicKey.ToByteArray())
        {
            Avoid = [.. request.AvoidExitPeerIds],
            Keeps = request.KeepsAssignmentId.Length > 0 ? request.KeepsAssignmentId : null,
            // The call's span (tracing on), which continues the client's SuperNode's from the call's traceparent.
            TraceParent = System.Diagnostics.Activity.Current is { Recorded: true } call ? call.Id : null,
        }, Exits.PoolAnswerWithin, context);
        return answer switch
        {
            ExitAllocated allocated => allocated.Assignment.ToProto(),
            ExitAllocationRefused refused => throw RefusalReasons.ToRpcException(refused.Reason, refused.Detail),
            _ => throw new RpcException(new Status(StatusCode.Internal, $"unexpected answer from the exit pool: {answer.GetType().Name}")),
        };
    }

    public override async Task<ReleaseExitResponse> ReleaseExit(ReleaseExitRequest request, ServerCallContext context)
    {
        CheckRegion(request.Region);
        Require(request.AssignmentId.Length is > 0 and <= 64, "assignment_id must be 1 to 64 characters");
        var reason = string.IsNullOrWhiteSpace(request.Reason) ? "released" : request.Reason;
        var answer = await AskAsync(new ReleaseExit(request.Region, request.AssignmentId, reason), Exits.PoolAnswerWithin, context);
        // The exit's relay leg, if the assignment had one here, goes with it.
        await relay.CloseAsync(request.AssignmentId);
        return answer is ExitReleased released
            ? new ReleaseExitResponse { Released = released.Known }
            : throw new RpcException(new Status(StatusCode.Internal, $"unexpected answer from the exit pool: {answer.GetType().Name}"));
    }

    public override async Task<RelayLegInfo> OpenRelay(OpenRelayRequest request, ServerCallContext context)
    {
        CheckRegion(request.Region);
        Require(request.AssignmentId.Length is > 0 and <= 64, "assignment_id must be 1 to 64 characters");
        Require(IPEndPoint.TryParse(request.PartnerEndpoint, out var partner) && partner.Port != 0,
            "partner_endpoint must be the client side's relay leg as ip:port");
        var answer = await AskAsync(new GetAssignment(request.Region, request.AssignmentId), settings.Edge.SessionTimeout, context);
        if (answer is not AssignmentDetails { Assignment: { } assignment } details)
            throw RefusalReasons.ToRpcException(RefusalReason.Unavailable, $"region {settings.Region} holds no active assignment {request.AssignmentId}");
        // The leg takes the exit's packets from the address its stream comes from; while the pool does not know it (the
        // pool just moved to this SuperNode, the exit is reconnecting) the public address its endpoint was set up with.
        var exitEndpoint = IPEndPoint.TryParse(assignment.ExitEndpoint, out var endpoint) ? endpoint : null;
        if (!IPAddress.TryParse(details.ExitPublicAddress, out var exitAddress) && (exitAddress = exitEndpoint?.Address) is null)
            throw RefusalReasons.ToRpcException(RefusalReason.Unavailable, $"exit {assignment.ExitPeerId} is offline; its relay leg cannot be opened");

        IPEndPoint leg;
        try
        {
            leg = await relay.OpenAsync(assignment.AssignmentId, RelaySides.Exit, exitAddress, exitEndpoint,
                new RelayLegOwner(assignment.ClientRegion, assignment.ClientPeerId), context.CancellationToken);
        }
        catch (InvalidOperationException ex)
        {
            throw RefusalReasons.ToRpcException(RefusalReason.AtCapacity, ex.Message);
        }
        catch (RelayDrainingException ex)
        {
            // No reason trailer: the caller goes on to the region's next SuperNode.
            throw new RpcException(new Status(StatusCode.Unavailable, ex.Message));
        }
        relay.SetPartner(assignment.AssignmentId, RelaySides.Exit, partner!);
        // The region's other SuperNodes learn of the leg now: should this one crash, they tell the chain's session.
        exitLegWatch.ActorRef.Tell(ExitLegWatch.PublishExitLegs.Instance);
        // The exit's WireGuard sends to the client through this leg from now on (its own roaming would follow too). Its session
        // must take the command: one sent while the session's shard moves off a crashed SuperNode is lost, and a refused
        // OpenRelay has the chain's session try again now rather than once the client notices the silence.
        object taken;
        try
        {
            var relaySetup = PeerCommands.RelaySetup(assignment.AssignmentId, assignment.ClientPublicKey, leg.ToString());
            // With tracing on, the exit's span applying it is a child of this call's.
            if (System.Diagnostics.Activity.Current is { Recorded: true } call)
                relaySetup.TraceParent = call.Id;
            taken = await sessions.ActorRef.Ask<object>(new Sessions.IssueCommand(assignment.ExitPeerId, relaySetup), Exits.AckTimeout,
                context.CancellationToken);
        }
        catch (AskTimeoutException)
        {
            throw RefusalReasons.ToRpcException(RefusalReason.Unavailable,
                $"the session of exit {assignment.ExitPeerId} did not take the relay setup within {Exits.AckTimeout.TotalSeconds:0} s (it may be moving to another SuperNode); retry");
        }
        if (taken is Sessions.CommandOutcome refused)
        {
            throw RefusalReasons.ToRpcException(RefusalReason.Unavailable,
                $"the session of exit {assignment.ExitPeerId} refused the relay setup: {refused.FailureReason}");
        }
        logger.LogInformation("Relay leg for exit {ExitPeerId} of assignment {AssignmentId} open at {Leg}, chained to {Partner}",
            assignment.ExitPeerId, assignment.AssignmentId, leg, partner);
        return new RelayLegInfo { Endpoint = leg.ToString(), SupernodeId = settings.Id };
    }

    public override async Task<CloseRelayResponse> CloseRelay(CloseRelayRequest request, ServerCallContext context)
    {
        CheckRegion(request.Region);
        return new CloseRelayResponse { LegsClosed = (uint)await relay.CloseAsync(request.AssignmentId) };
    }

    public override async Task<ReturnDirectResponse> ReturnDirect(ReturnDirectRequest request, ServerCallContext context)
    {
        CheckRegion(request.Region);
        Require(request.AssignmentId.Length is > 0 and <= 64, "assignment_id must be 1 to 64 characters");
        var answer = await AskAsync(new GetAssignment(request.Region, request.AssignmentId), settings.Edge.SessionTimeout, context);
        if (answer is not AssignmentDetails { Assignment: { } assignment })
            throw RefusalReasons.ToRpcException(RefusalReason.Unavailable, $"region {settings.Region} holds no active assignment {request.AssignmentId}");

        // The client's session asks only once this answers: the exit must follow the client's direct handshake, not pull
        // its peer back to the leg, by the time that handshake arrives.
        var done = new TaskCompletionSource<object>(TaskCreationOptions.RunContinuationsAsynchronously);
        var timeout = Exits.AckTimeout;
        system.ActorOf(Edge.CommandWaiter.Props(new Sessions.IssueCommand(assignment.ExitPeerId,
                PeerCommands.RelayTeardown(assignment.AssignmentId, assignment.ClientPublicKey, "", DateTimeOffset.UtcNow + timeout)),
            waitForOutcome: true, sessions.ActorRef, done, timeout));
        object outcome;
        try
        {
            outcome = await done.Task.WaitAsync(context.CancellationToken);
        }
        catch (TimeoutException ex)
        {
            throw RefusalReasons.ToRpcException(RefusalReason.Unavailable, $"exit {assignment.ExitPeerId} did not answer its RelayTeardown: {ex.Message}");
        }

        if (outcome is not Sessions.CommandOutcome { Succeeded: true })
        {
            var why = outcome is Sessions.CommandOutcome failed
                ? failed.FailureReason ?? $"{failed.Response?.Failure.Code}: {failed.Response?.Failure.Reason}"
                : outcome.GetType().Name;
            throw RefusalReasons.ToRpcException(RefusalReason.Unavailable, $"exit {assignment.ExitPeerId} did not leave its relay leg: {why}");
        }

        logger.LogInformation("Exit {ExitPeerId} of assignment {AssignmentId} unpinned from its relay leg: the client tries the direct path",
            assignment.ExitPeerId, assignment.AssignmentId);
        return new ReturnDirectResponse();
    }

    public override Task<PathFailureAck> ReportPathFailure(PathFailureReport request, ServerCallContext context)
    {
        CheckRegion(request.Region);
        Require(request.AssignmentId.Length is > 0 and <= 64, "assignment_id must be 1 to 64 characters");
        Require(NodeId.IsValid(request.ClientPeerId, out var idProblem), $"client_peer_id: {idProblem}");
        Require(NodeId.IsValid(request.ExitPeerId, out var exitProblem), $"exit_peer_id: {exitProblem}");
        Require(request.Detail.Length <= 512, "detail must be at most 512 characters");
        // The client's own SuperNode reports for its clients only; the pool checks the assignment is that client's.
        MyDvpn.Hosting.CallerIdentity.RequireSuperNode(context, logger, claimedId: null, request.ClientRegion);
        pools.ActorRef.Tell(new ExitPathFailed(request.Region, request.AssignmentId, request.ExitPeerId, request.ClientPeerId, request.Relayed,
            request.Detail));
        return Task.FromResult(new PathFailureAck());
    }

    public override Task<RelayLegLostResponse> RelayLegLost(RelayLegLostRequest request, ServerCallContext context)
    {
        CheckRegion(request.Region);
        Require(request.AssignmentId.Length is > 0 and <= 64, "assignment_id must be 1 to 64 characters");
        Require(NodeId.IsValid(request.ClientPeerId, out var idProblem), $"client_peer_id: {idProblem}");
        // A SuperNode of the exit's region tells of a leg there: its own (it shuts down) or a crashed member's (ExitLegWatch).
        // The session acts only on news from its exit's region, about the leg its chain uses.
        var caller = MyDvpn.Hosting.CallerIdentity.RequireSuperNode(context, logger, claimedId: null, claimedRegion: null);
        var reason = string.IsNullOrWhiteSpace(request.Reason) ? "its relay leg is going away" : request.Reason;
        logger.LogInformation("Relay leg of assignment {AssignmentId} at SuperNode {SuperNodeId} goes ({Reason}); telling the session of {ClientPeerId}",
            request.AssignmentId, request.SupernodeId, reason, request.ClientPeerId);
        sessions.ActorRef.Tell(new Sessions.RelayLegLost(request.ClientPeerId, request.AssignmentId, request.SupernodeId, reason,
            request.ExitLeg.Length > 0 ? request.ExitLeg : null)
        {
            FromRegion = caller.Region,
        });
        return Task.FromResult(new RelayLegLostResponse());
    }

    public override Task<RotateClientResponse> RotateClient(RotateClientRequest request, ServerCallContext context)
    {
        CheckRegion(request.Region);
        Require(request.AssignmentId.Length is > 0 and <= 64, "assignment_id must be 1 to 64 characters");
        Require(NodeId.IsValid(request.ClientPeerId, out var idProblem), $"client_peer_id: {idProblem}");
        Require(request.Reason != RotationReason.Unspecified, "reason must be set");
        Require(request.ExitPeerId.Length == 0 || NodeId.IsValid(request.ExitPeerId, out _), "exit_peer_id is not a valid peer id");
        logger.LogInformation("Assignment {AssignmentId} of {ClientPeerId} is to leave exit {ExitPeerId} ({Reason}: {Detail}); telling its session",
            request.AssignmentId, request.ClientPeerId, request.ExitPeerId, request.Reason, request.Detail);
        sessions.ActorRef.Tell(new Sessions.RotateExit(request.ClientPeerId, request.AssignmentId, request.Reason, request.Detail,
            request.ExitPeerId.Length > 0 ? request.ExitPeerId : null));
        return Task.FromResult(new RotateClientResponse());
    }

    public override async Task<ExitPoolView> ListExits(ListExitsRequest request, ServerCallContext context)
    {
        CheckRegion(request.Region);
        var answer = await AskAsync(new GetExitPool(request.Region), settings.Edge.SessionTimeout, context);
        if (answer is not ExitPoolSnapshotView view)
            throw new RpcException(new Status(StatusCode.Internal, $"unexpected answer from the exit pool: {answer.GetType().Name}"));
        var result = new ExitPoolView { Region = view.Region };
        result.Exits.AddRange(view.Exits.Select(e => new Protocol.SuperNode.ExitView
        {
            PeerId = e.PeerId,
            Online = e.Online,
            Capacity = (uint)e.Capacity,
            Clients = (uint)e.Clients,
            Subnet = e.Subnet,
            RttMicros = e.Rtt is { } rtt ? (uint)Math.Min(rtt.TotalMicroseconds, uint.MaxValue) : 0,
            RecentFailures = (uint)e.RecentFailures,
            PublicAddress = e.PublicAddress,
            State = e.State,
        }));
        result.Assignments.AddRange(view.Assignments.Select(a => a.ToProto()));
        return result;
    }

    private void CheckRegion(string region)
    {
        if (region != settings.Region)
        {
            throw RefusalReasons.ToRpcException(RefusalReason.WrongRegion,
                $"this SuperNode serves region {settings.Region}, not '{region}'");
        }
    }

    private static void Require(bool condition, string problem)
    {
        if (!condition)
            throw RefusalReasons.ToRpcException(RefusalReason.MalformedMessage, problem);
    }

    private async Task<object> AskAsync(object message, TimeSpan timeout, ServerCallContext context)
    {
        try
        {
            return await pools.ActorRef.Ask<object>(message, timeout, context.CancellationToken);
        }
        catch (AskTimeoutException)
        {
            throw new RpcException(new Status(StatusCode.DeadlineExceeded,
                $"the exit pool of region {settings.Region} did not answer within {timeout.TotalSeconds:0} s (region cluster forming or journal unavailable); retry"));
        }
    }
}
