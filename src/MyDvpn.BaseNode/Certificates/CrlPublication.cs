using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using MyDvpn.Hosting;
using MyDvpn.Protocol.Admin;
using MyDvpn.Security;

namespace MyDvpn.BaseNode.Certificates;

/// <summary>
/// An admin's upload of the operator CA's certificate revocation list (<c>mydvpn admin crl publish</c>): verified against
/// this BaseNode's CA, persisted in the <see cref="CrlEntity"/> if its number is higher than the one held, then enforced
/// here at once; SuperNodes fetch it on their next report, the other BaseNodes within a report interval
/// (<see cref="CrlFollower"/>).
/// </summary>
public sealed class CrlPublication(CrlQueries crl, NodeCrlStore store, ILogger<CrlPublication> logger)
{
    /// <summary>
    /// Refusals: <c>INVALID_ARGUMENT</c> when the data is not a CRL signed by the operator CA, <c>FAILED_PRECONDITION</c>
    /// when its number is not higher than the directory's.
    /// </summary>
    public async Task<PublishCrlResponse> PublishAsync(byte[] encoded, string admin, CancellationToken cancellationToken)
    {
        CertificateRevocationList list;
        try
        {
            list = CertificateRevocationList.Parse(encoded, store.Tls.CaCertificate);
        }
        catch (CertificateException ex)
        {
            logger.LogWarning("Security event: {Admin} published a certificate revocation list that was refused: {Problem}", admin, ex.Message);
            throw new RpcException(new Status(StatusCode.InvalidArgument,
                $"not a certificate revocation list of this network's CA: {ex.Message}. Publish the ca.crl that `mydvpn ca revoke` wrote"));
        }

        switch (await crl.Publish(list.Number, list.Der, cancellationToken))
        {
            case CrlRecorded:
                break;
            case CrlRefused refused:
                throw new RpcException(new Status(StatusCode.FailedPrecondition, refused.Reason));
            case var other:
                throw new InvalidOperationException($"the certificate revocation list answered {other.GetType().Name}");
        }

        // Enforced here at once; a newer one already in force here (from another BaseNode) is fine as it is.
        store.Apply(list);
        logger.LogWarning("Security event: {Admin} published certificate revocation list number {Number}: {Count} certificates revoked ({Serials})",
            admin, list.Number, list.Revoked.Count, string.Join(", ", list.Revoked.Select(r => r.Serial).Order(StringComparer.Ordinal)));
        return new PublishCrlResponse { Number = list.Number, Revoked = (uint)list.Revoked.Count };
    }

    /// <summary>The list the directory holds, as an admin reads it.</summary>
    public async Task<CrlView> ViewAsync(CancellationToken cancellationToken)
    {
        var current = await crl.Current(cancellationToken);
        var view = new CrlView { Number = current.Number };
        if (current.Number == 0)
            return view;
        var list = CertificateRevocationList.Parse(current.Der, store.Tls.CaCertificate);
        view.ThisUpdate = Timestamp.FromDateTimeOffset(list.ThisUpdate);
        view.Revoked.AddRange(list.Revoked.OrderBy(r => r.RevokedAt).ThenBy(r => r.Serial, StringComparer.Ordinal).Select(r => new RevokedCertificateView
        {
            Serial = r.Serial,
            RevokedAt = Timestamp.FromDateTimeOffset(r.RevokedAt),
            Reason = r.ReasonText,
        }));
        return view;
    }
}
