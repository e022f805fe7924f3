using Grpc.Core;
using Microsoft.Extensions.Logging;
using MyDvpn.Protocol.SuperNode;
using MyDvpn.SuperNode.Exits;

namespace MyDvpn.SuperNode.Relay;

/// <summary>
/// A SuperNode that shuts down hands its relay legs over (ARCHITECTURE §4 Relay): it stops opening legs, tells the
/// session holding each chain whose exit leg is here, and keeps forwarding until those chains moved to another
/// SuperNode of the region (make before break) or the time is up. A client's own leg moves with the client: its stream
/// fails over to another SuperNode of the region, and its session, attached there, finds no leg and chains a new one.
/// </summary>
public sealed class RelayHandOver(RelayService relay, ExitAllocationClient allocator, string superNodeId, ILogger<RelayHandOver> logger)
{
    /// <summary>A leg that forwarded nothing for this long carries no chain any more.</summary>
    private static readonly TimeSpan Moved = TimeSpan.FromSeconds(1);

    /// <returns>How many sessions were told.</returns>
    public async Task<int> HandOverAsync(TimeSpan within, CancellationToken cancellationToken)
    {
        var legs = relay.BeginHandOver();
        var exitLegs = legs.Where(leg => leg is { Side: RelaySides.Exit, Owner: not null }).ToList();
        if (legs.Count == 0)
            return 0;
        logger.LogInformation("Relay shutting down with {Legs} legs open: telling the sessions of {Chains} chains to move their exit leg",
            legs.Count, exitLegs.Count);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(within);
        var told = await Task.WhenAll(exitLegs.Select(leg => TellAsync(leg, deadline.Token)));

        var moving = exitLegs.Select(leg => (leg.AssignmentId, leg.Side)).ToHashSet();
        try
        {
            while (true)
            {
                // Legs the kernel forwards show their traffic once their counters are read.
                await relay.ReadKernelCountersAsync();
                if (!relay.Legs.Any(leg => moving.Contains((leg.AssignmentId, leg.Side)) && leg.LastPacketAt > DateTimeOffset.UtcNow - Moved))
                    break;
                await Task.Delay(TimeSpan.FromMilliseconds(200), deadline.Token);
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            logger.LogWarning("Relay legs still forwarding after {Seconds:0.#} s of hand-over; closing them", within.TotalSeconds);
        }
        return told.Count(t => t);
    }

    private async Task<bool> TellAsync(RelayLegHandOver leg, CancellationToken cancellationToken)
    {
        try
        {
            await allocator.RelayLegLostAsync(new RelayLegLostRequest
            {
                AssignmentId = leg.AssignmentId,
                Region = leg.Owner!.Region,
                ClientPeerId = leg.Owner.ClientPeerId,
                SupernodeId = superNodeId,
                Reason = $"SuperNode {superNodeId} is shutting down",
                ExitLeg = leg.Endpoint.ToString(),
            }, cancellationToken);
            return true;
        }
        catch (Exception ex) when (ex is RpcException or ExitRegionUnreachableException or OperationCanceledException)
        {
            // The session finds out on its own: the client reports no handshake for Super:Exits:PathStaleAfter.
            logger.LogWarning("Could not tell region {Region} that the relay leg {Leg} of assignment {AssignmentId} goes: {Problem}",
                leg.Owner!.Region, leg.Endpoint, leg.AssignmentId, ex.Message);
            return false;
        }
    }
}
