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

    [Theory]
    [InlineData(StatusCode.OK, "OK")]
    [InlineData(StatusCode.ResourceExhausted, "RESOURCE_EXHAUSTED")]
    [InlineData(StatusCode.DeadlineExceeded, "DEADLINE_EXCEEDED")]
    [InlineData(StatusCode.PermissionDenied, "PERMISSION_DENIED")]
    [InlineData(StatusCode.Unavailable, "UNAVAILABLE")]
    [InlineData((StatusCode)99, "99")]
    public void Exit_request_failures_name_the_grpc_status_as_the_grpc_spec_does(StatusCode code, string name)
    {
        Assert.Equal(name, ControlChannel.GrpcStatusName((int)code));
    }

    [Theory]
    [InlineData(StatusCode.ResourceExhausted, true)]
    [InlineData(StatusCode.Unavailable, true)]
    [InlineData(StatusCode.DeadlineExceeded, true)]
    [InlineData(StatusCode.Aborted, true)]
    [InlineData(StatusCode.PermissionDenied, false)]
    [InlineData(StatusCode.InvalidArgument, false)]
    [InlineData(StatusCode.NotFound, false)]
    public void Only_exit_request_failures_that_may_pass_are_retried(StatusCode code, bool retried)
    {
        Assert.Equal(retried, ControlChannel.TransientExitFailures.Contains(code));
    }

    private static RpcException Refused(string reason) =>
        new(new Status(StatusCode.PermissionDenied, "refused"), new Metadata { { RefusalReasons.TrailerName, reason } });
}
