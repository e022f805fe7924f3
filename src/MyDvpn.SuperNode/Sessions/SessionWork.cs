using System.Net;
using MyDvpn.Protocol.Control;
using MyDvpn.Protocol.SuperNode;
using MyDvpn.SuperNode.Exits;
using MyDvpn.SuperNode.Relay;
using StatusCode = Grpc.Core.StatusCode;

namespace MyDvpn.SuperNode.Sessions;

/// <summary>
/// The work a session starts outside its actor, each bounded in time on the session's clock; failures become results where
/// the flows expect them.
/// </summary>
internal static class SessionWork
{
    /// <summary>A token cancelled when <paramref name="lifetime"/> ends or <paramref name="timeout"/> passes on <paramref name="time"/>.</summary>
    private static CancellationTokenSource Bounded(CancellationToken lifetime, TimeSpan timeout, TimeProvider time, out CancellationTokenSource timer)
    {
        timer = new CancellationTokenSource(timeout, time);
        return CancellationTokenSource.CreateLinkedTokenSource(lifetime, timer.Token);
    }

    public static async Task<EnrollmentResult> RedeemAsync(IEnrollmentClient client, AuthDecision.Enroll enroll, string peerId, string region,
        TimeSpan timeout, TimeProvider time, CancellationToken lifetime)
    {
        using var cancel = Bounded(lifetime, timeout, time, out var timer);
        using var _ = timer;
        try
        {
            return await client.RedeemAsync(enroll.Token, peerId, enroll.Role, region, (byte[])enroll.PublicKey.Clone(), cancel.Token)
                .WaitAsync(cancel.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is TimeoutException || (e is OperationCanceledException && !lifetime.IsCancellationRequested))
        {
            return new EnrollmentResult.Unavailable($"no answer from the directory within {timeout}");
        }
    }

    public static async Task<ExitAllocationResult> AllocateAsync(IExitAllocator allocator, AllocateExitRequest request, TimeSpan timeout,
        TimeProvider time, CancellationToken lifetime)
    {
        using var cancel = Bounded(lifetime, timeout, time, out var timer);
        using var _ = timer;
        try
        {
            return await allocator.AllocateAsync(request, cancel.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or Grpc.Core.RpcException && !lifetime.IsCancellationRequested)
        {
            return new ExitAllocationResult.Refused(RefusalReason.RegionUnreachable,
                $"region {request.Region} did not allocate an exit within {timeout.TotalSeconds:0} s");
        }
        catch (Exception e) when (!lifetime.IsCancellationRequested)
        {
            return new ExitAllocationResult.Refused(RefusalReason.RegionUnreachable, e.Message);
        }
    }

    /// <summary>Has the exit's region unpin the exit from its relay leg; returns null once the exit applied it, else why not.</summary>
    public static async Task<string?> UnpinExitAsync(IExitAllocator allocator, SessionEffect.UnpinExit unpin, TimeSpan timeout, TimeProvider time,
        CancellationToken lifetime)
    {
        using var cancel = Bounded(lifetime, timeout, time, out var timer);
        using var _ = timer;
        try
        {
            await allocator.ReturnDirectAsync(new ReturnDirectRequest { AssignmentId = unpin.AssignmentId, Region = unpin.ExitRegion }, cancel.Token)
                .ConfigureAwait(false);
            return null;
        }
        catch (Grpc.Core.RpcException e)
        {
            return $"{e.StatusCode}: {e.Status.Detail}";
        }
        catch (Exception e) when (!lifetime.IsCancellationRequested)
        {
            return e is OperationCanceledException ? $"region {unpin.ExitRegion} did not answer within {timeout.TotalSeconds:0} s" : e.Message;
        }
    }

    /// <summary>Opens (or reuses) the client's leg here, has the exit's region open the exit's leg chained to it, and chains it back.</summary>
    public static async Task<(string ClientLeg, string ExitLeg)> RelayAsync(IRelayLegs relay, IExitAllocator allocator,
        SessionEffect.OpenRelayChain open, RelayLegOwner owner, TimeSpan timeout, TimeProvider time, CancellationToken lifetime)
    {
        using var cancel = Bounded(lifetime, timeout, time, out var timer);
        using var _ = timer;
        // A leg that carries the chain now stays open if the new chain cannot be made: the old one may still work.
        var hadLeg = relay.PeerAddressOf(open.AssignmentId, RelaySides.Client) is not null;
        var clientLeg = await relay.OpenAsync(open.AssignmentId, RelaySides.Client, open.ClientAddress, null, owner, cancel.Token);
        try
        {
            var exitLeg = await allocator.OpenRelayAsync(
                new OpenRelayRequest { AssignmentId = open.AssignmentId, Region = open.ExitRegion, PartnerEndpoint = clientLeg.ToString() }, cancel.Token);
            relay.SetPartner(open.AssignmentId, RelaySides.Client, IPEndPoint.Parse(exitLeg.Endpoint));
            return (clientLeg.ToString(), exitLeg.Endpoint);
        }
        catch when (!hadLeg)
        {
            await relay.CloseAsync(open.AssignmentId);
            throw;
        }
    }
}
