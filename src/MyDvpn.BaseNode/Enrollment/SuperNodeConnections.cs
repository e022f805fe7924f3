using Grpc.Core;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace MyDvpn.BaseNode.Enrollment;

/// <summary>
/// Keeps this BaseNode's connections to the Up SuperNodes of every region open (<see cref="SuperNodeClients.ConnectAsync"/>),
/// looking every <paramref name="interval"/> (the directory's report interval: a SuperNode that just registered is
/// connected to within one), so that a revocation never waits for a TLS handshake.
/// </summary>
public sealed class SuperNodeConnections(
    DirectoryQueries directory,
    SuperNodeClients superNodes,
    TimeSpan interval,
    TimeProvider time,
    ILogger<SuperNodeConnections> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(interval, time);
        do
        {
            try
            {
                var up = await directory.UpSuperNodes(region: null, stoppingToken);
                await superNodes.ConnectAsync(up, time.GetUtcNow(), stoppingToken);
            }
            catch (RpcException ex) when (!stoppingToken.IsCancellationRequested)
            {
                // The directory is not there yet (cluster forming); the next round asks again.
                logger.LogDebug("Connecting to the SuperNodes waits for the directory: {Detail}", ex.Status.Detail);
            }
            catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
            {
                // Never the host's end: calls then open their connections themselves, as before.
                logger.LogWarning(ex, "Connecting to the SuperNodes failed; trying again in {Interval}", interval);
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }
}
