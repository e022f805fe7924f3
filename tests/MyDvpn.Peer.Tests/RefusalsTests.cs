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
    public void A_refusal_names_its_reason_once_with_the_SuperNodes_words()
    {
        // As the SuperNode's edge refuses: the reason in the trailer and in front of the status detail.
        var refused = RefusalReasons.ToRpcException(RefusalReason.TokenUsedUp, "token 5f2c is used up (1 of 1 uses spent)");

        var end = Refusals.Classify(refused);

        Assert.Equal("token 5f2c is used up (1 of 1 uses spent)", end.Detail);
        Assert.Equal("refused with TOKEN_USED_UP (token 5f2c is used up (1 of 1 uses spent))", end.Description);
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
        Assert.Equal(name, Refusals.GrpcStatusName((int)code));
    }

    // By reason, from the refusal catalogue (it was by gRPC status before the catalogue): a failure is asked again unless
    // its reason is permanent, whatever status it came with; a reason this version does not know is asked again.
    [Theory]
    [InlineData(RefusalReason.NoExitAvailable, true)]
    [InlineData(RefusalReason.ExitSetupFailed, true)]
    [InlineData(RefusalReason.RegionUnreachable, true)]
    [InlineData(RefusalReason.Unavailable, true)]
    [InlineData(RefusalReason.RateLimited, true)]
    [InlineData((RefusalReason)999, true)]
    [InlineData(RefusalReason.NotAnExitClient, false)]
    [InlineData(RefusalReason.UnknownRegion, false)]
    [InlineData(RefusalReason.MalformedMessage, false)]
    public void Only_exit_request_failures_that_may_pass_are_retried(RefusalReason reason, bool retried)
    {
        Assert.Equal(retried, Refusals.RetriesExitRequest(reason));
    }

    [Fact]
    public void A_stream_refusal_is_permanent_exactly_when_the_catalogue_says_so()
    {
        foreach (var reason in RefusalCatalogue.Known)
            Assert.Equal(RefusalCatalogue.IsPermanent(reason), Refusals.Classify(Refused(RefusalReasons.WireName(reason))).Permanent);
    }

    [Fact]
    public void Advice_is_the_catalogues_with_what_only_the_agent_knows_around_it()
    {
        var settings = new PeerSettings(PeerRole.Client, "peer-7", "eu-west", null!, null!, [new MyDvpn.Common.HostPort("127.0.0.1", 1)], null, null,
            "/var/lib/mydvpn/peer-7", null!);

        var replaced = Refusals.Explain(RefusalReason.Replaced, settings, enrolled: false);
        var unknown = Refusals.Explain(RefusalReason.UnknownPeer, settings, enrolled: true);
        var revoked = Refusals.Explain(RefusalReason.Revoked, settings, enrolled: true);
        var region = Refusals.ExplainExitRefusal(RefusalReason.UnknownRegion, "mars-1");

        Assert.StartsWith(RefusalCatalogue.AdviceFor(RefusalReason.Replaced), replaced, StringComparison.Ordinal);
        Assert.Contains("peer id 'peer-7'", replaced, StringComparison.Ordinal);
        Assert.StartsWith(RefusalCatalogue.AdviceFor(RefusalReason.UnknownPeer), unknown, StringComparison.Ordinal);
        Assert.Contains(EnrollmentRecord.PathIn("/var/lib/mydvpn/peer-7"), unknown, StringComparison.Ordinal);
        Assert.Equal(RefusalCatalogue.AdviceFor(RefusalReason.Revoked), revoked);
        Assert.StartsWith(RefusalCatalogue.AdviceFor(RefusalReason.UnknownRegion), region, StringComparison.Ordinal);
        Assert.Contains("--exit-region is 'mars-1'", region, StringComparison.Ordinal);
    }

    private static RpcException Refused(string reason) =>
        new(new Status(StatusCode.PermissionDenied, "refused"), new Metadata { { RefusalReasons.TrailerName, reason } });
}
