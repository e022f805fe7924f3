using System.Collections.Concurrent;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using MyDvpn.Cli.Commands;
using MyDvpn.Common;
using MyDvpn.Protocol.Admin;

namespace MyDvpn.Cli.Tests;

/// <summary>What <c>mydvpn admin web-token</c> sends and prints, against an admin API that answers with a fixed token.</summary>
public sealed class AdminWebTokenTests : FixedAdminApiTestKit<AdminWebTokenTests.FixedAdmin>
{
    [Fact]
    public async Task Web_token_prints_the_pages_address_with_the_token_and_until_when_it_is_valid()
    {
        var (exitCode, output, error) = await Admin("web-token", "--ttl", "15m");

        Assert.Equal((0, ""), (exitCode, error));
        Assert.Equal(900u, Assert.Single(Service.Requests).TtlSeconds);
        var lines = output.Split('\n');
        Assert.Equal("https://127.0.0.1:7480/?token=v1.YWxpY2U.c2ln", lines[0]);
        Assert.Contains("Valid until 2030-01-01 13:00:00Z", lines[1], StringComparison.Ordinal);
    }

    [Fact]
    public async Task Web_token_without_ttl_leaves_the_lifetime_to_the_BaseNode_and_json_is_the_reply()
    {
        var (exitCode, output, _) = await Admin("web-token", "--json");

        Assert.Equal(0, exitCode);
        Assert.Equal(0u, Assert.Single(Service.Requests).TtlSeconds);
        Assert.Contains("\"webAddress\":\"127.0.0.1:7480\"", output, StringComparison.Ordinal);
        Assert.Contains("\"token\":\"v1.YWxpY2U.c2ln\"", output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("0s")]
    [InlineData("soon")]
    public async Task Web_token_with_a_bad_ttl_exits_2_naming_ttl(string ttl)
    {
        var (exitCode, _, error) = await Admin("web-token", "--ttl", ttl);

        Assert.Equal(2, exitCode);
        Assert.Contains("--ttl", error, StringComparison.Ordinal);
        Assert.Empty(Service.Requests);
    }

    [Theory]
    [InlineData("127.0.0.1:7480", "10.0.0.5:7443", "https://127.0.0.1:7480/?token=a%2Bb")]
    [InlineData("0.0.0.0:7480", "10.0.0.5:7443", "https://10.0.0.5:7480/?token=a%2Bb")]
    [InlineData("[::]:7480", "base.example:7443", "https://base.example:7480/?token=a%2Bb")]
    [InlineData("[::1]:7480", "10.0.0.5:7443", "https://[::1]:7480/?token=a%2Bb")]
    public void The_address_of_a_page_bound_to_every_address_names_the_BaseNodes_host(string web, string baseNode, string expected) =>
        Assert.Equal(expected, AdminCommand.WebUrl(web, HostPort.Parse(baseNode, "--base"), "a+b"));

    public sealed class FixedAdmin : Admin.AdminBase
    {
        public ConcurrentQueue<CreateWebTokenRequest> Requests { get; } = new();

        public override Task<WebToken> CreateWebToken(CreateWebTokenRequest request, ServerCallContext context)
        {
            Requests.Enqueue(request);
            return Task.FromResult(new WebToken
            {
                Token = "v1.YWxpY2U.c2ln",
                ExpiresAt = Timestamp.FromDateTimeOffset(new DateTimeOffset(2030, 1, 1, 13, 0, 0, TimeSpan.Zero)),
                WebAddress = "127.0.0.1:7480",
            });
        }
    }
}
