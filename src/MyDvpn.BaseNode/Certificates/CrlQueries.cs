using Akka.Hosting;

namespace MyDvpn.BaseNode.Certificates;

/// <summary>
/// The gRPC edge's way into the <see cref="CrlEntity"/>: Ask with a timeout and the call's cancellation,
/// <c>Unavailable</c> when the cluster does not answer (see <see cref="DirectoryQueries.AskAsync{T}"/>).
/// </summary>
public sealed class CrlQueries(IRequiredActor<CrlShard> crl)
{
    private const string What = "certificate revocation list";

    /// <returns>A <see cref="CrlRecorded"/> or a <see cref="CrlRefused"/>.</returns>
    public Task<object> Publish(ulong number, byte[] der, CancellationToken cancellationToken) =>
        DirectoryQueries.AskAsync<object>(crl.ActorRef, new PublishCrl(number, der), What, cancellationToken);

    public Task<CurrentCrl> Current(CancellationToken cancellationToken, TimeSpan? timeout = null) =>
        DirectoryQueries.AskAsync<CurrentCrl>(crl.ActorRef, GetCrl.Instance, What, cancellationToken, timeout);
}
