using MyDvpn.Security;

namespace MyDvpn.Hosting.Tests;

public sealed class CertificatePolicyTests
{
    private readonly CertificatePolicy policy = new CertificatePolicy()
        .Require("mydvpn.admin.v1.Admin", CertificateKind.Admin)
        .Require("mydvpn.directory.v1.SuperNodeDirectory", CertificateKind.Node);

    [Theory]
    [InlineData("/mydvpn.admin.v1.Admin/GetCluster", CertificateKind.Admin)]
    [InlineData("/mydvpn.admin.v1.Admin/ListRegions", CertificateKind.Admin)]
    [InlineData("/mydvpn.directory.v1.SuperNodeDirectory/Report", CertificateKind.Node)]
    public void A_method_requires_the_kind_registered_for_its_service(string method, CertificateKind kind)
    {
        Assert.Equal(kind, policy.RequiredFor(method));
    }

    [Theory]
    [InlineData("/mydvpn.control.v1.Control/Connect")]
    [InlineData("/grpc.health.v1.Health/Check")]
    [InlineData("/mydvpn.admin.v1.AdminX/GetCluster")]
    [InlineData("/mydvpn.admin.v1/Admin")]
    [InlineData("/MYDVPN.ADMIN.V1.ADMIN/GetCluster")]
    public void A_method_of_an_unregistered_service_requires_no_kind(string method)
    {
        Assert.Null(policy.RequiredFor(method));
    }

    [Fact]
    public void A_service_name_without_a_method_is_looked_up_as_is()
    {
        Assert.Equal(CertificateKind.Admin, policy.RequiredFor("/mydvpn.admin.v1.Admin"));
        Assert.Equal(CertificateKind.Admin, policy.RequiredFor("mydvpn.admin.v1.Admin"));
    }

    [Fact]
    public void Requiring_a_service_again_replaces_its_kind()
    {
        policy.Require("mydvpn.admin.v1.Admin", CertificateKind.Node);

        Assert.Equal(CertificateKind.Node, policy.RequiredFor("/mydvpn.admin.v1.Admin/GetCluster"));
    }

    [Fact]
    public void An_empty_policy_requires_nothing()
    {
        Assert.Null(new CertificatePolicy().RequiredFor("/mydvpn.admin.v1.Admin/GetCluster"));
    }
}
