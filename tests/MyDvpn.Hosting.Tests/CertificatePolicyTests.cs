namespace MyDvpn.Hosting.Tests;

public sealed class CertificatePolicyTests
{
    private readonly CertificatePolicy policy = new CertificatePolicy()
        .Allow("mydvpn.admin.v1.Admin", Callers.Admins)
        .Allow("mydvpn.directory.v1.SuperNodeDirectory", Callers.SuperNodes)
        .Allow("mydvpn.supernode.v1.ExitAllocation", Callers.SuperNodes)
        .Allow("mydvpn.supernode.v1.ExitAllocation/ListExits", Callers.SuperNodes | Callers.BaseNodes);

    [Theory]
    [InlineData("/mydvpn.admin.v1.Admin/GetCluster", Callers.Admins)]
    [InlineData("/mydvpn.admin.v1.Admin/ListRegions", Callers.Admins)]
    [InlineData("/mydvpn.directory.v1.SuperNodeDirectory/Report", Callers.SuperNodes)]
    [InlineData("/mydvpn.supernode.v1.ExitAllocation/AllocateExit", Callers.SuperNodes)]
    public void A_method_takes_the_callers_allowed_for_its_service(string method, Callers callers)
    {
        Assert.Equal(callers, policy.AllowedFor(method));
    }

    [Fact]
    public void A_method_named_on_its_own_takes_precedence_over_its_service()
    {
        Assert.Equal(Callers.SuperNodes | Callers.BaseNodes, policy.AllowedFor("/mydvpn.supernode.v1.ExitAllocation/ListExits"));
    }

    [Theory]
    [InlineData("/mydvpn.control.v1.Control/Connect")]
    [InlineData("/grpc.health.v1.Health/Check")]
    [InlineData("/mydvpn.admin.v1.AdminX/GetCluster")]
    [InlineData("/mydvpn.admin.v1/Admin")]
    [InlineData("/MYDVPN.ADMIN.V1.ADMIN/GetCluster")]
    public void A_method_of_an_unregistered_service_is_not_limited(string method)
    {
        Assert.Null(policy.AllowedFor(method));
    }

    [Fact]
    public void A_service_name_without_a_method_is_looked_up_as_is()
    {
        Assert.Equal(Callers.Admins, policy.AllowedFor("/mydvpn.admin.v1.Admin"));
        Assert.Equal(Callers.Admins, policy.AllowedFor("mydvpn.admin.v1.Admin"));
    }

    [Fact]
    public void Allowing_a_service_again_replaces_its_callers()
    {
        policy.Allow("mydvpn.admin.v1.Admin", Callers.BaseNodes);

        Assert.Equal(Callers.BaseNodes, policy.AllowedFor("/mydvpn.admin.v1.Admin/GetCluster"));
    }

    [Fact]
    public void An_empty_policy_limits_nothing()
    {
        Assert.Null(new CertificatePolicy().AllowedFor("/mydvpn.admin.v1.Admin/GetCluster"));
    }

    [Theory]
    [InlineData(Callers.Admins, "admin")]
    [InlineData(Callers.BaseNodes | Callers.SuperNodes, "BaseNode or SuperNode")]
    public void Callers_are_described_in_words(Callers callers, string words)
    {
        Assert.Equal(words, CertificatePolicy.Describe(callers));
    }
}
