using Google.Protobuf;
using Grpc.Core;
using MyDvpn.BaseNode.Enrollment;
using MyDvpn.Protocol.Admin;
using MyDvpn.Protocol.Control;
using MyDvpn.Protocol.Directory;

namespace MyDvpn.BaseNode.Tests.Enrollment;

public sealed class EnrollmentMappingTests
{
    private static readonly TokenCredential Credential = TokenCredential.Generate();

    [Theory]
    [InlineData(TokenRefusal.BadToken, "BAD_TOKEN")]
    [InlineData(TokenRefusal.TokenExpired, "TOKEN_EXPIRED")]
    [InlineData(TokenRefusal.TokenUsedUp, "TOKEN_USED_UP")]
    [InlineData(TokenRefusal.RoleNotAllowed, "ROLE_NOT_ALLOWED")]
    [InlineData(TokenRefusal.WrongRegion, "WRONG_REGION")]
    public void Refusal_is_named_as_in_the_proto(TokenRefusal refusal, string protoName)
    {
        Assert.Equal(protoName, RefusalReasons.WireName(EnrollmentMapping.ToProto(refusal)));
    }

    [Fact]
    public void Refusal_is_permission_denied_with_the_reason_trailer_once()
    {
        var ex = EnrollmentMapping.Refused(RefusalReason.TokenUsedUp, "token 0123 is used up");

        Assert.Equal(StatusCode.PermissionDenied, ex.StatusCode);
        Assert.Equal("TOKEN_USED_UP: token 0123 is used up", ex.Status.Detail);
        var trailer = Assert.Single(ex.Trailers);
        Assert.Equal(("mydvpn-reason", "TOKEN_USED_UP"), (trailer.Key, trailer.Value));
    }

    [Theory]
    [InlineData(1, EnrollmentRole.Client)]
    [InlineData(2, EnrollmentRole.Exit)]
    [InlineData(3, EnrollmentRole.Both)]
    [InlineData(4, EnrollmentRole.SuperNode)]
    public void Role_numbers_are_those_of_the_proto(int number, EnrollmentRole role)
    {
        Assert.Equal(role, EnrollmentMapping.ToRole(number));
        Assert.Equal(number, (int)Enum.Parse<PeerRole>(role == EnrollmentRole.SuperNode ? "Supernode" : role.ToString()));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(5)]
    [InlineData(-1)]
    public void Unspecified_and_unknown_role_numbers_are_no_role(int number)
    {
        Assert.Null(EnrollmentMapping.ToRole(number));
    }

    [Fact]
    public void Valid_redeem_request_becomes_a_command_with_the_secret_digest_and_base64_key()
    {
        var key = Enumerable.Range(0, 32).Select(i => (byte)i).ToArray();

        var redeem = EnrollmentMapping.ToRedeem(Request(publicKey: key));

        Assert.Equal(
            new RedeemToken(Credential.TokenId, Credential.SecretSha256, "peer-1", EnrollmentRole.Exit, "eu-west", Convert.ToBase64String(key)),
            redeem);
    }

    public static TheoryData<RedeemTokenRequest, string> MalformedRedeems() => new()
    {
        { Request(token: "no-dot"), "token" },
        { Request(token: Credential.TokenId + ".short"), "token" },
        { Request(peerId: "has space"), "peer_id" },
        { Request(peerId: ""), "peer_id" },
        { Request(region: "EU_West"), "region" },
        { Request(role: 0), "role 0" },
        { Request(role: 9), "role 9" },
        { Request(publicKey: new byte[31]), "public_key" },
        { Request(publicKey: []), "public_key" },
    };

    [Theory]
    [MemberData(nameof(MalformedRedeems))]
    public void Malformed_redeem_request_is_invalid_argument_naming_the_field(RedeemTokenRequest request, string field)
    {
        var ex = Assert.Throws<RpcException>(() => EnrollmentMapping.ToRedeem(request));

        Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
        Assert.Contains(field, ex.Status.Detail, StringComparison.Ordinal);
        Assert.DoesNotContain(Credential.Text[17..], ex.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void Create_request_without_uses_and_ttl_gets_one_use_for_24_hours()
    {
        var create = EnrollmentMapping.ToCreate(new CreateTokenRequest { Role = 1, Region = "eu-west" }, Credential);

        Assert.Equal(
            new CreateToken(Credential.TokenId, Credential.SecretSha256, EnrollmentRole.Client, "eu-west", 1, TimeSpan.FromHours(24)),
            create);
    }

    [Fact]
    public void Create_request_keeps_given_uses_and_ttl()
    {
        var create = EnrollmentMapping.ToCreate(
            new CreateTokenRequest { Role = 3, Region = "eu-west", Uses = 10, TtlSeconds = 90 }, Credential);

        Assert.Equal((EnrollmentRole.Both, 10, TimeSpan.FromSeconds(90)), (create.Role, create.Uses, create.Ttl));
    }

    [Theory]
    [InlineData(4, "eu-west", 1u, "SuperNode")]
    [InlineData(0, "eu-west", 1u, "role 0")]
    [InlineData(1, "EU", 1u, "region")]
    [InlineData(1, "eu-west", 1001u, "uses")]
    public void Invalid_create_request_is_invalid_argument(int role, string region, uint uses, string problem)
    {
        var ex = Assert.Throws<RpcException>(() =>
            EnrollmentMapping.ToCreate(new CreateTokenRequest { Role = role, Region = region, Uses = uses }, Credential));

        Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
        Assert.Contains(problem, ex.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void Issued_token_carries_the_full_token_text_once()
    {
        var issued = new TokenIssued(Credential.TokenId, EnrollmentRole.Client, "eu-west", 2, new DateTimeOffset(2030, 1, 2, 0, 0, 0, TimeSpan.Zero));

        var proto = EnrollmentMapping.ToProto(issued, Credential);

        Assert.Equal(Credential.Text, proto.Token);
        Assert.Equal(Credential.TokenId, proto.TokenId);
        Assert.Equal(2u, proto.Uses);
        Assert.Equal(issued.ExpiresAt, proto.ExpiresAt.ToDateTimeOffset());
    }

    private static RedeemTokenRequest Request(
        string? token = null,
        string peerId = "peer-1",
        int role = 2,
        string region = "eu-west",
        byte[]? publicKey = null) => new()
        {
            Token = token ?? Credential.Text,
            PeerId = peerId,
            Role = role,
            Region = region,
            PublicKey = ByteString.CopyFrom(publicKey ?? new byte[32]),
        };
}
