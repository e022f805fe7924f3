using Grpc.Core;
using MyDvpn.Protocol.Control;
using MyDvpn.Protocol.Directory;
using MyDvpn.SuperNode.Sessions;

namespace MyDvpn.SuperNode;

/// <summary>Redeems enrollment tokens at the directory, the one place that knows how many uses are left.</summary>
public sealed class DirectoryEnrollment(DirectoryClient directory) : IEnrollmentClient
{
    public async Task<EnrollmentResult> RedeemAsync(string token, string peerId, PeerRole role, string region, byte[] publicKey, CancellationToken ct)
    {
        try
        {
            var redeemed = await directory.RedeemTokenAsync(new RedeemTokenRequest
            {
                Token = token,
                PeerId = peerId,
                Role = (int)role,
                Region = region,
                PublicKey = Google.Protobuf.ByteString.CopyFrom(publicKey),
            }, ct);
            return new EnrollmentResult.Redeemed(redeemed.TokenId);
        }
        catch (RpcException ex) when (RefusalReasons.Of(ex) == RefusalReason.RateLimited)
        {
            // The directory's own limit on redemptions: the peer hears it as such and backs off.
            return new EnrollmentResult.Refused(RefusalReason.RateLimited, RefusalReasons.DetailOf(ex));
        }
        catch (RpcException ex) when (ex.StatusCode is StatusCode.PermissionDenied or StatusCode.InvalidArgument)
        {
            // The directory's words without its reason in front: the edge puts the reason in front once more.
            return new EnrollmentResult.Refused(RefusalReasons.Of(ex) ?? RefusalReason.BadToken, RefusalReasons.DetailOf(ex));
        }
        catch (Exception ex) when (ex is DirectoryUnavailableException or RpcException)
        {
            return new EnrollmentResult.Unavailable(ex.Message);
        }
    }
}
