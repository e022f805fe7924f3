using Grpc.Core;
using MyDvpn.Protocol.Control;

namespace MyDvpn.Protocol.Tests;

public sealed class RefusalCatalogueTests
{
    public static TheoryData<RefusalReason> EveryReason()
    {
        var reasons = new TheoryData<RefusalReason>();
        foreach (var reason in Enum.GetValues<RefusalReason>().Where(r => r != RefusalReason.Unspecified))
            reasons.Add(reason);
        return reasons;
    }

    [Theory]
    [MemberData(nameof(EveryReason))]
    public void Every_reason_has_an_entry_with_a_failure_status_and_advice(RefusalReason reason)
    {
        Assert.Contains(reason, RefusalCatalogue.Known);
        var policy = RefusalCatalogue.For(reason);
        Assert.Equal(reason, policy.Reason);
        Assert.NotEqual(StatusCode.OK, policy.Status);
        Assert.NotEqual(StatusCode.Unknown, policy.Status);
        Assert.False(string.IsNullOrWhiteSpace(policy.Advice));
    }

    [Fact]
    public void The_catalogue_holds_no_entry_for_the_unspecified_reason()
    {
        Assert.DoesNotContain(RefusalReason.Unspecified, RefusalCatalogue.Known);
    }

    [Theory]
    [InlineData(RefusalReason.BadSignature, StatusCode.Unauthenticated, true)]
    [InlineData(RefusalReason.Revoked, StatusCode.PermissionDenied, true)]
    [InlineData(RefusalReason.Replaced, StatusCode.Aborted, true)]
    [InlineData(RefusalReason.AtCapacity, StatusCode.ResourceExhausted, false)]
    [InlineData(RefusalReason.NoExitAvailable, StatusCode.ResourceExhausted, false)]
    [InlineData(RefusalReason.RegionUnreachable, StatusCode.Unavailable, false)]
    [InlineData(RefusalReason.UnknownRegion, StatusCode.NotFound, true)]
    [InlineData(RefusalReason.CertificateMismatch, StatusCode.PermissionDenied, true)]
    [InlineData(RefusalReason.CertificateRevoked, StatusCode.PermissionDenied, true)]
    [InlineData(RefusalReason.HeartbeatTimeout, StatusCode.DeadlineExceeded, false)]
    public void A_reason_carries_its_status_and_permanence(RefusalReason reason, StatusCode status, bool permanent)
    {
        Assert.Equal((status, permanent), (RefusalCatalogue.StatusOf(reason), RefusalCatalogue.IsPermanent(reason)));
    }

    [Fact]
    public void A_reason_this_version_does_not_know_is_transient()
    {
        var newer = (RefusalReason)9_999;

        Assert.False(RefusalCatalogue.IsPermanent(newer));
        Assert.Equal(newer, RefusalCatalogue.For(newer).Reason);
    }

    [Fact]
    public void A_refusal_crosses_the_wire_with_its_catalogue_status_and_its_name_in_the_trailer()
    {
        var refusal = RefusalReasons.ToRpcException(RefusalReason.TokenUsedUp, "token t-1 has no uses left");

        Assert.Equal(StatusCode.PermissionDenied, refusal.StatusCode);
        Assert.Equal("TOKEN_USED_UP: token t-1 has no uses left", refusal.Status.Detail);
        Assert.Equal(RefusalReason.TokenUsedUp, RefusalReasons.Of(refusal));
    }
}
