using Grpc.Core;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using MyDvpn.Hosting;
using MyDvpn.Security;

namespace MyDvpn.BaseNode.Certificates;

/// <summary>
/// Makes this BaseNode enforce the list the directory holds: at start and every <paramref name="interval"/> it asks the
/// <see cref="CrlEntity"/> (which any BaseNode of the cluster may have been given it) and applies a newer one to its own
/// checks (<see cref="NodeCrlStore"/>). The BaseNode that took an upload applies it at once; the others within an interval.
/// </summary>
public sealed class CrlFollower(CrlQueries crl, NodeCrlStore store, TimeSpan interval, TimeProvider time, ILogger<CrlFollower> logger)
    : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(interval, time);
        do
        {
            await FollowOnce(stoppingToken);
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }

    /// <summary>Applies the directory's list if it is newer than the one this node enforces.</summary>
    public async Task FollowOnce(CancellationToken cancellationToken)
    {
        try
        {
            var current = await crl.Current(cancellationToken, interval);
            if (current.Number <= store.Number)
                return;
            var applied = store.Apply(current.Der);
            if (applied.Applied)
                logger.LogWarning("Applied certificate revocation list number {Number} from the directory: {Count} certificates revoked",
                    applied.List.Number, applied.List.Revoked.Count);
        }
        catch (RpcException ex) when (ex.StatusCode == StatusCode.Unavailable)
        {
            logger.LogDebug("Certificate revocation list not checked: {Detail}", ex.Status.Detail);
        }
        catch (CertificateException ex)
        {
            logger.LogError("The directory holds a certificate revocation list this node cannot verify against its CA: {Problem}", ex.Message);
        }
    }
}
