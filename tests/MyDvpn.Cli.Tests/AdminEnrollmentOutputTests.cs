using System.Collections.Concurrent;
using System.Text.Json;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using MyDvpn.Protocol.Admin;
using MyDvpn.Protocol.SuperNode;

namespace MyDvpn.Cli.Tests;

/// <summary>
/// What <c>mydvpn admin token create</c>, <c>revoke</c> and <c>sessions</c> send and print, against an admin API
/// served by real Kestrel with mutual TLS that answers with fixed replies.
/// </summary>
public sealed class AdminEnrollmentOutputTests : FixedAdminApiTestKit<AdminEnrollmentOutputTests.FixedAdmin>
{
    private static readonly DateTimeOffset Expiry = new(2030, 1, 2, 3, 4, 5, TimeSpan.Zero);

    [Fact]
    public async Task Token_create_sends_the_role_and_leaves_uses_and_ttl_to_the_defaults()
    {
        var (exitCode, output, error) = await Admin("token", "create", "--role", "exit", "--region", "eu-west");

        Assert.Equal((0, ""), (exitCode, error));
        var request = Assert.Single(Service.TokenRequests);
        Assert.Equal(new CreateTokenRequest { Role = 2, Region = "eu-west", Uses = 1, TtlSeconds = 0 }, request);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("0123456789abcdef.secret", lines[0]);
        Assert.Contains("token 0123456789abcdef: exit, region eu-west, 1 use(s), expires 2030-01-02 03:04:05Z", lines[1], StringComparison.Ordinal);
    }

    [Fact]
    public async Task Token_create_sends_uses_and_ttl_in_seconds()
    {
        var (exitCode, _, _) = await Admin("token", "create", "--role", "both", "--region", "us-east", "--uses", "5", "--ttl", "7d");

        Assert.Equal(0, exitCode);
        Assert.Equal(new CreateTokenRequest { Role = 3, Region = "us-east", Uses = 5, TtlSeconds = 7 * 86400 }, Assert.Single(Service.TokenRequests));
    }

    [Fact]
    public async Task Token_create_as_json_holds_the_token_and_its_expiry()
    {
        var (exitCode, output, _) = await Admin("token", "create", "--role", "client", "--region", "eu-west", "--json");

        Assert.Equal(0, exitCode);
        var json = JsonDocument.Parse(output).RootElement;
        Assert.Equal("0123456789abcdef.secret", json.GetProperty("token").GetString());
        Assert.Equal("2030-01-02T03:04:05Z", json.GetProperty("expiresAt").GetString());
    }

    [Fact]
    public async Task Revoke_prints_the_version_and_which_supernodes_were_told()
    {
        var (exitCode, output, _) = await Admin("revoke", "peer-7");

        Assert.Equal(0, exitCode);
        Assert.Equal(["peer-7"], Service.Revoked);
        Assert.Contains("Peer peer-7 is revoked (revocation version 4).", output, StringComparison.Ordinal);
        Assert.Contains("Told at once: sn-a", output, StringComparison.Ordinal);
        Assert.Contains("sn-down", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Sessions_table_shows_each_session_and_the_supernodes_that_did_not_answer()
    {
        var (exitCode, output, _) = await Admin("sessions", "--region", "eu-west");

        Assert.Equal(0, exitCode);
        Assert.Equal("eu-west", Assert.Single(Service.SessionRequests).Region);
        foreach (var expected in new[] { "peer id", "RTT ms", "commands in flight", "peer-a", "client", "sn-a", "2030-01-01 00:00:00Z", "1.5", "connected", "Not included, did not answer: sn-down" })
            Assert.Contains(expected, output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Sessions_as_json_list_the_sessions()
    {
        var (exitCode, output, _) = await Admin("sessions", "--json");

        Assert.Equal(0, exitCode);
        var json = JsonDocument.Parse(output).RootElement;
        Assert.Equal("peer-a", json.GetProperty("sessions")[0].GetProperty("peerId").GetString());
        Assert.Equal("sn-down", json.GetProperty("unreachableSupernodes")[0].GetString());
    }

    public sealed class FixedAdmin : MyDvpn.Protocol.Admin.Admin.AdminBase
    {
        public ConcurrentQueue<CreateTokenRequest> TokenRequests { get; } = new();

        public ConcurrentQueue<string> Revoked { get; } = new();

        public ConcurrentQueue<ListSessionsRequest> SessionRequests { get; } = new();

        public override Task<EnrollmentToken> CreateToken(CreateTokenRequest request, ServerCallContext context)
        {
            TokenRequests.Enqueue(request);
            return Task.FromResult(new EnrollmentToken
            {
                Token = "0123456789abcdef.secret",
                TokenId = "0123456789abcdef",
                ExpiresAt = Timestamp.FromDateTimeOffset(Expiry),
                Uses = request.Uses,
            });
        }

        public override Task<RevokePeerResponse> RevokePeer(RevokePeerRequest request, ServerCallContext context)
        {
            Revoked.Enqueue(request.PeerId);
            return Task.FromResult(new RevokePeerResponse { Version = 4, NotifiedSupernodes = { "sn-a" }, UnreachableSupernodes = { "sn-down" } });
        }

        public override Task<SessionList> ListSessions(ListSessionsRequest request, ServerCallContext context)
        {
            SessionRequests.Enqueue(request);
            return Task.FromResult(new SessionList
            {
                Sessions =
                {
                    new Session
                    {
                        PeerId = "peer-a",
                        Role = "client",
                        Region = "eu-west",
                        SupernodeId = "sn-a",
                        ConnectedSince = Timestamp.FromDateTimeOffset(new DateTimeOffset(2030, 1, 1, 0, 0, 0, TimeSpan.Zero)),
                        RttMicros = 1500,
                        State = "connected",
                        CommandsInFlight = 2,
                    },
                },
                UnreachableSupernodes = { "sn-down" },
            });
        }
    }
}
