using System.Collections.Concurrent;
using System.Text.Json;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using MyDvpn.Protocol.Admin;
using MyDvpn.Protocol.Directory;
using MyDvpn.Protocol.SuperNode;
using PeerRole = MyDvpn.Protocol.Control.PeerRole;

namespace MyDvpn.Cli.Tests;

/// <summary>
/// What <c>mydvpn admin token list|revoke</c>, <c>revocations</c>, <c>unrevoke</c>, <c>peers</c> and <c>revoke</c> of an
/// unknown id send and print, and how tables look when the output is not a terminal, against an admin API served by
/// real Kestrel with mutual TLS that answers with fixed replies.
/// </summary>
public sealed class AdminLifecycleOutputTests : FixedAdminApiTestKit<AdminLifecycleOutputTests.FixedAdmin>
{
    private static readonly DateTimeOffset At = new(2030, 1, 2, 3, 4, 5, TimeSpan.Zero);

    [Fact]
    public async Task Token_list_is_plain_aligned_columns_when_the_output_is_not_a_terminal()
    {
        var (exitCode, output, error) = await Admin("token", "list");

        Assert.Equal((0, ""), (exitCode, error));
        var lines = output.TrimEnd('\n').Split('\n');
        Assert.Equal("Enrollment tokens", lines[0]);
        Assert.StartsWith("token id", lines[1], StringComparison.Ordinal);
        // No box: no drawing characters, nothing trailing, and every column starts where its header does.
        Assert.DoesNotContain(output, c => c is '│' or '─' or '┌' or '└' or '|' or '+');
        Assert.All(lines, line => Assert.Equal(line.TrimEnd(), line));
        var state = lines[1].IndexOf("state", StringComparison.Ordinal);
        Assert.Equal("active", lines[2][state..].Split(' ')[0]);
        Assert.Equal("revoked", lines[3][state..].Split(' ')[0]);
        Assert.Contains("by ops at 2030-01-02 03:04:05Z", lines[3], StringComparison.Ordinal);
        Assert.Contains("1/2", lines[2], StringComparison.Ordinal);
        Assert.DoesNotContain("secret", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_BaseNode_that_takes_no_connection_is_passed_over_and_the_next_does_the_command_once()
    {
        var down = Nowhere();

        var (exitCode, output, error) = await AdminVia($"{down},{BaseAddress}", "token", "revoke", "0123456789abcdef");

        Assert.Equal(0, exitCode);
        Assert.Equal(["0123456789abcdef"], Service.RevokedTokens);
        Assert.Contains("is revoked", output, StringComparison.Ordinal);
        Assert.StartsWith($"warning: BaseNode {down} takes no connection", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task When_no_BaseNode_takes_a_connection_the_error_names_each_and_the_exit_code_is_1()
    {
        var (first, second) = (Nowhere(), Nowhere());

        var (exitCode, output, error) = await AdminVia($"{first},{second}", "token", "list");

        Assert.Equal((1, ""), (exitCode, output));
        Assert.Contains($"BaseNode {second} is unreachable", error, StringComparison.Ordinal);
        Assert.Contains($"(before it: {first}: ", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Token_list_as_json_shows_role_and_state_in_lower_case()
    {
        var (exitCode, output, _) = await Admin("token", "list", "--json");

        Assert.Equal(0, exitCode);
        var tokens = JsonDocument.Parse(output).RootElement.GetProperty("tokens");
        Assert.Equal(["client", "exit"], tokens.EnumerateArray().Select(t => t.GetProperty("role").GetString()));
        Assert.Equal(["active", "revoked"], tokens.EnumerateArray().Select(t => t.GetProperty("state").GetString()));
    }

    [Fact]
    public async Task Token_revoke_sends_the_id_and_says_the_peers_it_enrolled_stay()
    {
        var (exitCode, output, _) = await Admin("token", "revoke", "0123456789abcdef");

        Assert.Equal(0, exitCode);
        Assert.Equal(["0123456789abcdef"], Service.RevokedTokens);
        Assert.Contains("Token 0123456789abcdef (client, region eu-west) is revoked", output, StringComparison.Ordinal);
        Assert.Contains("stay enrolled (peer-1)", output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("ffffffffffffffff", "no enrollment token has id ffffffffffffffff")]
    [InlineData("0123456789ABCDEF", "16 lowercase hex characters")]
    [InlineData("0123456789abcdef.secret", "16 lowercase hex characters")]
    public async Task Token_revoke_of_an_id_no_token_has_exits_2_naming_the_argument(string tokenId, string why)
    {
        var (exitCode, output, error) = await Admin("token", "revoke", tokenId);

        Assert.Equal(2, exitCode);
        Assert.Empty(output);
        Assert.StartsWith("error: TOKEN_ID", error, StringComparison.Ordinal);
        Assert.Contains(why, error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Revoke_of_a_peer_that_never_enrolled_exits_2_saying_so_and_how_to_force_it()
    {
        var (exitCode, output, error) = await Admin("revoke", "peer-typo");

        Assert.Equal(2, exitCode);
        Assert.Empty(output);
        Assert.StartsWith("error: PEER_ID: peer peer-typo never enrolled", error, StringComparison.Ordinal);
        Assert.Contains("--force", error, StringComparison.Ordinal);
        Assert.Equal([("peer-typo", false)], Service.RevokedPeers);
    }

    [Fact]
    public async Task Revoke_with_force_sends_force()
    {
        var (exitCode, output, _) = await Admin("revoke", "peer-typo", "--force");

        Assert.Equal(0, exitCode);
        Assert.Equal([("peer-typo", true)], Service.RevokedPeers);
        Assert.Contains("Peer peer-typo is revoked (revocation version 1).", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Unrevoke_says_the_peer_may_connect_again_and_one_not_revoked_exits_2()
    {
        var (exitCode, output, _) = await Admin("unrevoke", "peer-1");
        var (notRevokedExit, _, error) = await Admin("unrevoke", "peer-2");

        Assert.Equal(0, exitCode);
        Assert.Contains("Peer peer-1 may connect again (revocation version 5).", output, StringComparison.Ordinal);
        Assert.Contains("Told at once: sn-a", output, StringComparison.Ordinal);
        Assert.Equal(2, notRevokedExit);
        Assert.StartsWith("error: PEER_ID: peer peer-2 is not revoked", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Revocations_lists_the_revoked_peers()
    {
        var (exitCode, output, _) = await Admin("revocations");

        Assert.Equal(0, exitCode);
        Assert.Contains("peer-1", output, StringComparison.Ordinal);
        Assert.Contains("2030-01-02 03:04:05Z", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Peers_shows_online_and_offline_peers_with_when_they_were_last_seen()
    {
        var (exitCode, output, _) = await Admin("peers", "--region", "eu-west");

        Assert.Equal(0, exitCode);
        Assert.Equal("eu-west", Assert.Single(Service.PeerRequests).Region);
        var lines = output.Split('\n');
        var online = Assert.Single(lines, l => l.StartsWith("peer-on ", StringComparison.Ordinal));
        var offline = Assert.Single(lines, l => l.StartsWith("peer-off ", StringComparison.Ordinal));
        Assert.Contains("online", online, StringComparison.Ordinal);
        Assert.Contains(" now ", online, StringComparison.Ordinal);
        Assert.Contains("offline", offline, StringComparison.Ordinal);
        Assert.Contains("2030-01-02 03:04:05Z (", offline, StringComparison.Ordinal);
        Assert.Contains("Did not answer, their peers may show offline: sn-down", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Token_create_for_a_region_the_directory_does_not_know_warns_on_stderr_and_makes_it()
    {
        var (exitCode, output, error) = await Admin("token", "create", "--role", "client", "--region", "eu-wset");

        Assert.Equal(0, exitCode);
        Assert.StartsWith("0123456789abcdef.secret", output, StringComparison.Ordinal);
        Assert.StartsWith("warning: the directory knows no region 'eu-wset'", error, StringComparison.Ordinal);
        Assert.Contains("token revoke", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Regions_as_json_show_the_status_in_lower_case()
    {
        var (exitCode, output, _) = await Admin("regions", "--json");

        Assert.Equal(0, exitCode);
        var node = JsonDocument.Parse(output).RootElement.GetProperty("regions")[0].GetProperty("supernodes")[0];
        Assert.Equal("up", node.GetProperty("status").GetString());
    }

    public sealed class FixedAdmin : MyDvpn.Protocol.Admin.Admin.AdminBase
    {
        public ConcurrentQueue<string> RevokedTokens { get; } = new();

        public ConcurrentQueue<(string PeerId, bool Force)> RevokedPeers { get; } = new();

        public ConcurrentQueue<ListPeersRequest> PeerRequests { get; } = new();

        private static Timestamp Time => Timestamp.FromDateTimeOffset(At);

        public override Task<TokenList> ListTokens(ListTokensRequest request, ServerCallContext context) => Task.FromResult(new TokenList
        {
            Tokens =
            {
                new TokenView
                {
                    TokenId = "0123456789abcdef", Role = PeerRole.Client, Region = "eu-west", Uses = 2, UsesLeft = 1, CreatedAt = Time, ExpiresAt = Time,
                    State = TokenState.Active, EnrolledPeers = { "peer-1" },
                },
                new TokenView
                {
                    TokenId = "fedcba9876543210", Role = PeerRole.Exit, Region = "us-east", Uses = 1, UsesLeft = 1, CreatedAt = Time, ExpiresAt = Time,
                    State = TokenState.Revoked, RevokedAt = Time, RevokedBy = "ops",
                },
            },
        });

        public override Task<TokenView> RevokeToken(RevokeTokenRequest request, ServerCallContext context)
        {
            RevokedTokens.Enqueue(request.TokenId);
            if (request.TokenId != "0123456789abcdef")
                throw new RpcException(new Status(StatusCode.NotFound, $"no enrollment token has id {request.TokenId}; `mydvpn admin token list` shows them"));
            return Task.FromResult(new TokenView
            {
                TokenId = request.TokenId,
                Role = PeerRole.Client,
                Region = "eu-west",
                State = TokenState.Revoked,
                EnrolledPeers = { "peer-1" },
            });
        }

        public override Task<RevokePeerResponse> RevokePeer(RevokePeerRequest request, ServerCallContext context)
        {
            RevokedPeers.Enqueue((request.PeerId, request.Force));
            if (!request.Force)
                throw new RpcException(new Status(StatusCode.FailedPrecondition, $"peer {request.PeerId} never enrolled ...; revoke it with --force"));
            return Task.FromResult(new RevokePeerResponse { Version = 1 });
        }

        public override Task<RevokePeerResponse> UnrevokePeer(UnrevokePeerRequest request, ServerCallContext context) =>
            request.PeerId == "peer-1"
                ? Task.FromResult(new RevokePeerResponse { Version = 5, NotifiedSupernodes = { "sn-a" } })
                : throw new RpcException(new Status(StatusCode.FailedPrecondition, $"peer {request.PeerId} is not revoked: nothing to take back"));

        public override Task<RevokedPeerList> ListRevocations(ListRevocationsRequest request, ServerCallContext context) =>
            Task.FromResult(new RevokedPeerList { Version = 3, Peers = { new RevokedPeer { PeerId = "peer-1", Version = 3, RevokedAt = Time } } });

        public override Task<PeerList> ListPeers(ListPeersRequest request, ServerCallContext context)
        {
            PeerRequests.Enqueue(request);
            return Task.FromResult(new PeerList
            {
                Peers =
                {
                    new EnrolledPeer { PeerId = "peer-on", Region = "eu-west", Role = PeerRole.Client, Online = true, SupernodeId = "sn-a", LastSeen = Time },
                    new EnrolledPeer { PeerId = "peer-off", Region = "eu-west", Role = PeerRole.Exit, LastSeen = Time, EnrolledAt = Time, TokenId = "0123456789abcdef" },
                },
                UnreachableSupernodes = { "sn-down" },
            });
        }

        public override Task<EnrollmentToken> CreateToken(CreateTokenRequest request, ServerCallContext context) => Task.FromResult(new EnrollmentToken
        {
            Token = "0123456789abcdef.secret",
            TokenId = "0123456789abcdef",
            ExpiresAt = Time,
            Uses = 1,
            RegionUnknown = request.Region == "eu-wset",
        });

        public override Task<RegionList> ListRegions(ListRegionsRequest request, ServerCallContext context) => Task.FromResult(new RegionList
        {
            Regions = { new RegionEntry { Region = "eu-west", Supernodes = { new SuperNodeEntry { Status = SuperNodeStatus.Up } } } },
        });
    }
}
