using Grpc.Core;
using Microsoft.Extensions.Logging;
using MyDvpn.Protocol.Control;
using MyDvpn.Security;
using Xunit.Abstractions;

namespace MyDvpn.Hosting.Tests;

public sealed class CallerIdentityTests(ITestOutputHelper output)
{
    private static readonly NodeIdentity SnEu1 = NodeIdentity.Super("sn-eu-1", "eu-west");

    [Theory]
    [InlineData("sn-eu-1", "eu-west")]
    [InlineData(null, "eu-west")]
    [InlineData("sn-eu-1", null)]
    public void A_SuperNode_claiming_what_its_certificate_names_matches(string? id, string? region)
    {
        Assert.Null(CallerIdentity.Mismatch(SnEu1, id, region));
    }

    [Theory]
    [InlineData("sn-eu-1", "us-east", "SuperNode sn-eu-1 of region us-east")]
    [InlineData("sn-eu-2", "eu-west", "SuperNode sn-eu-2 of region eu-west")]
    [InlineData(null, "us-east", "a SuperNode of region us-east")]
    [InlineData("sn-eu-2", null, "SuperNode sn-eu-2")]
    public void Another_id_or_region_is_a_mismatch_naming_the_claim(string? id, string? region, string claim)
    {
        Assert.Equal(claim, CallerIdentity.Mismatch(SnEu1, id, region));
    }

    [Fact]
    public void A_BaseNode_never_passes_as_a_SuperNode()
    {
        Assert.Equal("a SuperNode of region eu-west", CallerIdentity.Mismatch(NodeIdentity.Base("sn-eu-1"), null, "eu-west"));
        Assert.Equal("to be a SuperNode", CallerIdentity.Mismatch(NodeIdentity.Base("base-1"), null, null));
    }

    [Fact]
    public void A_mismatch_is_refused_with_PermissionDenied_and_the_reason_and_logged_once_naming_both_sides()
    {
        var logger = new RecordingLogger(output);

        var refused = Assert.Throws<RpcException>(() =>
            CallerIdentity.Check(SnEu1, "sn-eu-1", "us-east", "/mydvpn.directory.v1.SuperNodeDirectory/Report", "ipv4:127.0.0.1:5000", logger));

        Assert.Equal(StatusCode.PermissionDenied, refused.StatusCode);
        Assert.Equal(RefusalReason.CertificateMismatch, RefusalReasons.Of(refused));
        Assert.Contains("names SuperNode sn-eu-1 of region eu-west (mydvpn://super/eu-west/sn-eu-1), but the request claims SuperNode sn-eu-1 of region us-east",
            refused.Status.Detail, StringComparison.Ordinal);
        var entry = Assert.Single(logger.Entries);
        Assert.Equal(LogLevel.Warning, entry.Level);
        Assert.Equal("Security event: refused /mydvpn.directory.v1.SuperNodeDirectory/Report from ipv4:127.0.0.1:5000: its certificate names " +
            "SuperNode sn-eu-1 of region eu-west (mydvpn://super/eu-west/sn-eu-1) but it claims SuperNode sn-eu-1 of region us-east", entry.Message);
    }

    [Fact]
    public void A_match_is_not_logged()
    {
        var logger = new RecordingLogger(output);

        CallerIdentity.Check(SnEu1, "sn-eu-1", "eu-west", "/m", "peer", logger);

        Assert.Empty(logger.Entries);
    }
}
