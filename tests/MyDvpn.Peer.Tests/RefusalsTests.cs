using Grpc.Core;
using MyDvpn.Peer.Control;
using MyDvpn.Protocol.Control;

namespace MyDvpn.Peer.Tests;

public sealed class RefusalsTests
{
    [Theory]
    [InlineData("BAD_SIGNATURE")]
    [InlineData("UNKNOWN_PEER")]
    [InlineData("BAD_TOKEN")]
    [InlineData("TOKEN_USED_UP")]
    [InlineData("TOKEN_EXPIRED")]
    [InlineData("REVOKED")]
    [InlineData("ROLE_NOT_ALLOWED")]
    [InlineData("WRONG_REGION")]
    [InlineData("MALFORMED_MESSAGE")]
    [InlineData("REPLACED")]
    public void Refusals_no_retry_can_fix_are_permanent(string reason)
    {
        var end = Refusals.Classify(Refused(reason));

        Assert.True(end.Permanent);
        Assert.Equal(reason, end.ReasonName);
        Assert.NotNull(end.Reason);
    }

    [Theory]
    [InlineData("RATE_LIMITED")]
    [InlineData("AT_CAPACITY")]
    [InlineData("UNAVAILABLE")]
    [InlineData("HEARTBEAT_TIMEOUT")]
    [InlineData("AUTH_TIMEOUT")]
    [InlineData("REPLAYED_CHALLENGE")]
    [InlineData("EXPIRED_CHALLENGE")]
    [InlineData("A_REASON_FROM_A_NEWER_SUPERNODE")]
    public void Other_refusals_are_retried(string reason)
    {
        Assert.False(Refusals.Classify(Refused(reason)).Permanent);
    }

    [Fact]
    public void Connection_errors_and_a_clean_end_of_stream_are_retried()
    {
        Assert.False(Refusals.Classify(null).Permanent);
        Assert.False(Refusals.Classify(new RpcException(new Status(StatusCode.Unavailable, "connection refused"))).Permanent);
        Assert.False(Refusals.Classify(new HttpRequestException("no route")).Permanent);
    }

    private static RpcException Refused(string reason) =>
        new(new Status(StatusCode.PermissionDenied, "refused"), new Metadata { { RefusalReasons.TrailerName, reason } });
}
