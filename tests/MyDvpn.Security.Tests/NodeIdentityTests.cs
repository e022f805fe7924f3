namespace MyDvpn.Security.Tests;

public sealed class NodeIdentityTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void A_SuperNode_certificate_carries_its_role_region_and_id_and_reads_back()
    {
        var pki = new Pki(_temp);
        using var material = TlsMaterial.Load(pki.IssueSuper("sn-eu-1", "eu-west"));

        Assert.True(NodeIdentity.TryRead(material.Certificate, out var identity, out var problem), problem);

        Assert.Equal(NodeRole.Super, identity.Role);
        Assert.Equal("sn-eu-1", identity.Id);
        Assert.Equal("eu-west", identity.Region);
        Assert.Equal("mydvpn://super/eu-west/sn-eu-1", identity.Uri);
        Assert.Equal(identity, material.Identity);
    }

    [Fact]
    public void A_BaseNode_certificate_carries_its_role_and_id_and_no_region()
    {
        using var material = TlsMaterial.Load(new Pki(_temp).IssueBase("Base_1"));

        Assert.Equal(NodeIdentity.Base("Base_1"), material.Identity);
        Assert.Null(material.Identity!.Region);
        Assert.Equal("mydvpn://base/Base_1", material.Identity.Uri);
    }

    [Theory]
    [InlineData("mydvpn://base/base-1", NodeRole.Base, "base-1", null)]
    [InlineData("mydvpn://super/eu-west/sn-eu-1", NodeRole.Super, "sn-eu-1", "eu-west")]
    [InlineData("mydvpn://super/us-east-2/SN.2", NodeRole.Super, "SN.2", "us-east-2")]
    public void Parse_round_trips(string uri, NodeRole role, string id, string? region)
    {
        Assert.True(NodeIdentity.TryParse(uri, out var identity, out var problem), problem);

        Assert.Equal((role, id, region), (identity.Role, identity.Id, identity.Region));
        Assert.Equal(uri, identity.Uri);
    }

    [Theory]
    [InlineData("https://base/base-1")]
    [InlineData("mydvpn://base")]
    [InlineData("mydvpn://base/")]
    [InlineData("mydvpn://base/eu-west/base-1")]
    [InlineData("mydvpn://super/sn-1")]
    [InlineData("mydvpn://super/EU/sn-1")]
    [InlineData("mydvpn://super/eu-west/sn 1")]
    [InlineData("mydvpn://super/eu-west/sn-1/")]
    [InlineData("mydvpn://admin/alice")]
    [InlineData("MYDVPN://base/base-1")]
    [InlineData("")]
    public void Malformed_identities_do_not_parse_and_say_why(string uri)
    {
        Assert.False(NodeIdentity.TryParse(uri, out var identity, out var problem));

        Assert.Null(identity);
        Assert.Contains(uri.Length == 0 ? "''" : uri, problem);
    }

    [Fact]
    public void A_node_certificate_without_an_identity_has_none()
    {
        using var certificate = new Pki(_temp).NodeWithUris();

        Assert.False(NodeIdentity.TryRead(certificate, out var identity, out var problem));

        Assert.Null(identity);
        Assert.Contains("names no node identity", problem);
    }

    [Fact]
    public void Other_URIs_are_not_an_identity()
    {
        using var certificate = new Pki(_temp).NodeWithUris("https://example.org/node", "spiffe://example.org/sn-1");

        Assert.False(NodeIdentity.TryRead(certificate, out _, out var problem));

        Assert.Contains("names no node identity", problem);
    }

    [Fact]
    public void A_malformed_identity_is_refused()
    {
        using var certificate = new Pki(_temp).NodeWithUris("mydvpn://super/sn-eu-1");

        Assert.False(NodeIdentity.TryRead(certificate, out var identity, out var problem));

        Assert.Null(identity);
        Assert.Contains("malformed node identity", problem);
    }

    [Fact]
    public void A_certificate_naming_two_identities_is_refused()
    {
        using var certificate = new Pki(_temp).NodeWithUris("mydvpn://super/eu-west/sn-eu-1", "mydvpn://base/base-1");

        Assert.False(NodeIdentity.TryRead(certificate, out var identity, out var problem));

        Assert.Null(identity);
        Assert.Contains("names 2 node identities", problem);
    }

    [Fact]
    public void A_second_identity_in_another_letter_case_still_counts_as_a_second_one()
    {
        using var certificate = new Pki(_temp).NodeWithUris("mydvpn://super/eu-west/sn-eu-1", "MyDvpn://super/us-east/sn-us-1");

        Assert.False(NodeIdentity.TryRead(certificate, out _, out var problem));

        Assert.Contains("names 2 node identities", problem);
    }

    [Fact]
    public void ValidateNode_returns_the_identity_of_a_node_certificate_and_refuses_an_admin_one()
    {
        var pki = new Pki(_temp);
        using var node = TlsMaterial.Load(pki.IssueSuper("sn-1", "eu-west"));
        using var admin = TlsMaterial.Load(pki.IssueAdmin("alice"));

        Assert.True(node.ValidateNode(node.Certificate, out var identity, out var reason), reason);
        Assert.Equal(NodeIdentity.Super("sn-1", "eu-west"), identity);
        Assert.False(node.ValidateNode(admin.Certificate, out _, out reason));
        Assert.Contains("Admin certificate where a Node certificate is required", reason);
    }

    [Fact]
    public void Identities_share_a_cluster_only_with_the_same_role_and_region()
    {
        Assert.True(NodeIdentity.Super("a", "eu-west").SharesClusterWith(NodeIdentity.Super("b", "eu-west")));
        Assert.False(NodeIdentity.Super("a", "eu-west").SharesClusterWith(NodeIdentity.Super("a", "us-east")));
        Assert.False(NodeIdentity.Super("a", "eu-west").SharesClusterWith(NodeIdentity.Base("a")));
        Assert.True(NodeIdentity.Base("a").SharesClusterWith(NodeIdentity.Base("b")));
    }

    [Theory]
    [InlineData("sn 1", "eu-west")]
    [InlineData("sn-1", "EU")]
    [InlineData("", "eu-west")]
    public void Invalid_ids_and_regions_are_refused_when_an_identity_is_made(string id, string region) =>
        Assert.Throws<CertificateException>(() => NodeIdentity.Super(id, region));
}
