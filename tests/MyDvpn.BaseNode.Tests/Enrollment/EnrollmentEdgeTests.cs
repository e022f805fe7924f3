using Akka.Actor;
using Akka.Hosting;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using MyDvpn.BaseNode.Certificates;
using MyDvpn.BaseNode.Directory;
using MyDvpn.BaseNode.Enrollment;
using MyDvpn.BaseNode.Web;
using MyDvpn.Common;
using MyDvpn.Hosting;
using MyDvpn.Protocol.Admin;
using MyDvpn.Protocol.Directory;
using MyDvpn.Protocol.SuperNode;
using MyDvpn.Security;
using Xunit.Abstractions;

namespace MyDvpn.BaseNode.Tests.Enrollment;

/// <summary>
/// The BaseNode's gRPC edge over real Kestrel with mutual TLS, real entities on a real SQLite journal and real
/// SuperNode peer services; only the shard regions are stood in for by a local router.
/// </summary>
public sealed partial class EnrollmentEdgeTests(ITestOutputHelper output) : SqliteTestKit(output), IAsyncLifetime
{
    private const string Reason = "mydvpn-reason";

    /// <summary>Above what any other test here redeems; the limit's own test runs into them.</summary>
    private static readonly RedemptionSettings Redemptions = new() { PerSuperNodeBurst = 6, PerSuperNodePerSecond = 1, GlobalBurst = 9, GlobalPerSecond = 1 };

    private readonly ManualTimeProvider _clock = new();
    private readonly TestOutputLogger _directoryLog = new(output, nameof(DirectoryEntity));
    private readonly TestOutputLogger _tokenLog = new(output, nameof(EnrollmentTokenEntity));
    private readonly TestOutputLogger _revocationsLog = new(output, nameof(RevocationsEntity));
    private readonly TestPki _pki = new();
    private readonly List<TlsGrpcTestServer> _servers = [];
    private readonly List<GrpcChannel> _channels = [];
    private TlsMaterial _nodeTls = null!;
    private NodeCrlStore _baseCrl = null!;
    /// <summary>The directory as SuperNode sn-test of eu-west calls it.</summary>
    private SuperNodeDirectory.SuperNodeDirectoryClient _directory = null!;
    /// <summary>The directory as BaseNode base-1 calls it.</summary>
    private SuperNodeDirectory.SuperNodeDirectoryClient _baseNodeDirectory = null!;
    private readonly Dictionary<NodeIdentity, SuperNodeDirectory.SuperNodeDirectoryClient> _superNodes = [];
    private HostPort _baseAddress = null!;
    private Admin.AdminClient _admin = null!;

    public async Task InitializeAsync()
    {
        var baseTls = _pki.Issue(NodeIdentity.Base("base-1"));
        _nodeTls = _pki.Issue(NodeIdentity.Super("sn-test", "eu-west"));
        var adminTls = _pki.IssueAdmin("ops");

        var directory = Sys.ActorOf(ShardStandIn.Props(new DirectoryMessageExtractor(),
            region => DirectoryEntity.Props(region, DirectorySettings.Default, _clock, _directoryLog)));
        var regionIndex = Sys.ActorOf(ShardStandIn.Props(new RegionIndexMessageExtractor(), _ => RegionIndexEntity.Props()));
        var tokens = Sys.ActorOf(ShardStandIn.Props(new EnrollmentTokenMessageExtractor(), id => EnrollmentTokenEntity.Props(id, _clock, _tokenLog)));
        var revocations = Sys.ActorOf(ShardStandIn.Props(new RevocationsMessageExtractor(), _ => RevocationsEntity.Props(_clock, logger: _revocationsLog)));
        var crl = Sys.ActorOf(ShardStandIn.Props(new CrlMessageExtractor(), _ => CrlEntity.Props(_clock)));
        var tokenIndex = Sys.ActorOf(ShardStandIn.Props(new TokenIndexMessageExtractor(), _ => TokenIndexEntity.Props(_clock)));
        var peerRegistry = Sys.ActorOf(ShardStandIn.Props(new PeerRegistryMessageExtractor(), _ => PeerRegistryEntity.Props(_clock)));
        _baseCrl = NodeCrlStore.Open(System.IO.Directory.CreateDirectory(_pki.Sub("base-data")).FullName, crlFile: null, baseTls);

        var server = await StartServerAsync(baseTls, BaseNodeHost.Policy, services =>
        {
            services.AddSingleton<IRequiredActor<DirectoryShard>>(new StandInRegistryEntry<DirectoryShard>(directory));
            services.AddSingleton<IRequiredActor<RegionIndexShard>>(new StandInRegistryEntry<RegionIndexShard>(regionIndex));
            services.AddSingleton<IRequiredActor<EnrollmentTokenShard>>(new StandInRegistryEntry<EnrollmentTokenShard>(tokens));
            services.AddSingleton<IRequiredActor<RevocationsShard>>(new StandInRegistryEntry<RevocationsShard>(revocations));
            services.AddSingleton<IRequiredActor<CrlShard>>(new StandInRegistryEntry<CrlShard>(crl));
            services.AddSingleton<IRequiredActor<TokenIndexShard>>(new StandInRegistryEntry<TokenIndexShard>(tokenIndex));
            services.AddSingleton<IRequiredActor<PeerRegistryShard>>(new StandInRegistryEntry<PeerRegistryShard>(peerRegistry));
            services.AddSingleton(_baseCrl);
            services.AddSingleton<CrlQueries>();
            services.AddSingleton<CrlPublication>();
            services.AddSingleton(Sys);
            services.AddSingleton<DirectoryQueries>();
            services.AddSingleton<EnrollmentQueries>();
            services.AddSingleton(new RedemptionLimits(Redemptions, _clock));
            services.AddSingleton<SuperNodeClients>();
            services.AddSingleton<TopologyQueries>();
            services.AddSingleton(WebSettings.Off);
            services.AddSingleton(new WebTokens(_clock));
        }, app =>
        {
            app.MapGrpcService<DirectoryGrpcService>();
            app.MapGrpcService<AdminGrpcService>();
        });
        _baseAddress = server.Address;
        _directory = new SuperNodeDirectory.SuperNodeDirectoryClient(Channel(server.Address, _nodeTls));
        _baseNodeDirectory = new SuperNodeDirectory.SuperNodeDirectoryClient(Channel(server.Address, baseTls));
        _admin = new Admin.AdminClient(Channel(server.Address, adminTls));
    }

    public async Task DisposeAsync()
    {
        _channels.ForEach(channel => channel.Dispose());
        foreach (var server in _servers)
            await server.DisposeAsync();
        _pki.Dispose();
    }

    [Fact]
    public async Task Token_made_by_an_admin_enrolls_one_peer_and_then_is_refused_as_used_up_in_the_trailer()
    {
        var token = await _admin.CreateTokenAsync(new CreateTokenRequest { Role = 1, Region = "eu-west" });

        Assert.Equal(_clock.GetUtcNow().AddHours(24), token.ExpiresAt.ToDateTimeOffset());
        Assert.Equal(1u, token.Uses);
        Assert.StartsWith(token.TokenId + ".", token.Token, StringComparison.Ordinal);
        var enrolled = await _directory.RedeemTokenAsync(Redeem(token.Token, "peer-1"));
        Assert.Equal((token.TokenId, 0u), (enrolled.TokenId, enrolled.UsesLeft));

        var refused = await RefusedAsync(Redeem(token.Token, "peer-2", keyByte: 2));

        Assert.Equal(StatusCode.PermissionDenied, refused.StatusCode);
        Assert.Contains("used up", refused.Status.Detail, StringComparison.Ordinal);
        Assert.Equal(["TOKEN_USED_UP"], ReasonsIn(refused));
    }

    [Fact]
    public async Task Same_peer_and_key_redeeming_again_succeeds_without_spending_a_use()
    {
        var token = await _admin.CreateTokenAsync(new CreateTokenRequest { Role = 1, Region = "eu-west", Uses = 2 });

        await _directory.RedeemTokenAsync(Redeem(token.Token, "peer-1"));
        var again = await _directory.RedeemTokenAsync(Redeem(token.Token, "peer-1"));

        Assert.Equal(1u, again.UsesLeft);
    }

    [Fact]
    public async Task Each_refusal_goes_back_with_its_reason_name()
    {
        var token = await _admin.CreateTokenAsync(new CreateTokenRequest { Role = 2, Region = "eu-west", TtlSeconds = 60 });
        var wrongSecret = token.TokenId + TokenCredential.Generate().Text[TokenCredential.TokenIdLength..];

        Assert.Equal(["BAD_TOKEN"], ReasonsIn(await RefusedAsync(Redeem(wrongSecret, "peer-1", role: 2))));
        Assert.Equal(["ROLE_NOT_ALLOWED"], ReasonsIn(await RefusedAsync(Redeem(token.Token, "peer-1", role: 1))));
        Assert.Equal(["ROLE_NOT_ALLOWED"], ReasonsIn(await RefusedAsync(Redeem(token.Token, "peer-1", role: 4))));
        // A SuperNode of us-east may enroll a peer of us-east, but the token is for eu-west.
        Assert.Equal(["WRONG_REGION"], ReasonsIn(await Assert.ThrowsAsync<RpcException>(() =>
            DirectoryAs("sn-us", "us-east").RedeemTokenAsync(Redeem(token.Token, "peer-1", role: 2, region: "us-east")).ResponseAsync)));
        _clock.Advance(TimeSpan.FromSeconds(60));
        Assert.Equal(["TOKEN_EXPIRED"], ReasonsIn(await RefusedAsync(Redeem(token.Token, "peer-1", role: 2))));
    }

    /// <summary>
    /// Issue 13: random tokens all reached the directory. Now a SuperNode gets its share (6 at once, 1 a second here) and
    /// all SuperNodes together theirs (9, 1 a second); over either, RESOURCE_EXHAUSTED with RATE_LIMITED, and no token
    /// entity is asked.
    /// </summary>
    [Fact]
    public async Task Redemptions_are_limited_per_SuperNode_and_in_all()
    {
        string Junk() => TokenCredential.Generate().Text;
        var fromTest = new List<string>();
        for (var i = 0; i < 7; i++)
            fromTest.AddRange(ReasonsIn(await RefusedAsync(Redeem(Junk(), $"peer-{i}"))));
        var us = DirectoryAs("sn-us", "us-east");
        var fromUs = new List<string>();
        for (var i = 0; i < 4; i++)
        {
            fromUs.AddRange(ReasonsIn(await Assert.ThrowsAsync<RpcException>(() =>
                us.RedeemTokenAsync(Redeem(Junk(), $"peer-us-{i}", region: "us-east")).ResponseAsync)));
        }
        var limited = await RefusedAsync(Redeem(Junk(), "peer-late"));

        Assert.Equal([.. Enumerable.Repeat("BAD_TOKEN", 6), "RATE_LIMITED"], fromTest);
        Assert.Equal([.. Enumerable.Repeat("BAD_TOKEN", 3), "RATE_LIMITED"], fromUs);
        Assert.Equal(StatusCode.ResourceExhausted, limited.StatusCode);
        Assert.Contains("sn-test", limited.Status.Detail, StringComparison.Ordinal);

        _clock.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(["BAD_TOKEN"], ReasonsIn(await RefusedAsync(Redeem(Junk(), "peer-after"))));
    }

    [Fact]
    public async Task Revoked_peer_cannot_enroll_and_spends_no_use()
    {
        var token = await _admin.CreateTokenAsync(new CreateTokenRequest { Role = 1, Region = "eu-west" });
        await _admin.RevokePeerAsync(new RevokePeerRequest { PeerId = "peer-1", Force = true });

        var refused = await RefusedAsync(Redeem(token.Token, "peer-1"));

        Assert.Equal(["REVOKED"], ReasonsIn(refused));
        Assert.Equal(0u, (await _directory.RedeemTokenAsync(Redeem(token.Token, "peer-2", keyByte: 2))).UsesLeft);
    }

    [Theory]
    [InlineData("not-a-token", "peer-1", 32)]
    [InlineData(null, "bad peer!", 32)]
    [InlineData(null, "peer-1", 31)]
    public async Task Malformed_redeem_is_an_invalid_argument(string? token, string peerId, int keyLength)
    {
        var issued = await _admin.CreateTokenAsync(new CreateTokenRequest { Role = 1, Region = "eu-west" });
        var request = Redeem(token ?? issued.Token, peerId);
        request.PublicKey = ByteString.CopyFrom(new byte[keyLength]);

        var refused = await RefusedAsync(request);

        Assert.Equal(StatusCode.InvalidArgument, refused.StatusCode);
        Assert.Empty(ReasonsIn(refused));
    }

    [Fact]
    public async Task Supernode_token_is_an_invalid_argument()
    {
        var ex = await Assert.ThrowsAsync<RpcException>(() =>
            _admin.CreateTokenAsync(new CreateTokenRequest { Role = 4, Region = "eu-west" }).ResponseAsync);

        Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
    }

    [Fact]
    public async Task Report_acknowledges_with_the_revocation_version_and_revocations_after_a_version_are_listed()
    {
        Assert.Equal(0ul, (await ReportAsync("sn-a", "eu-west", "127.0.0.1:1")).RevocationVersion);
        await _admin.RevokePeerAsync(new RevokePeerRequest { PeerId = "peer-a", Force = true });
        await _admin.RevokePeerAsync(new RevokePeerRequest { PeerId = "peer-b", Force = true });

        Assert.Equal(2ul, (await ReportAsync("sn-a", "eu-west", "127.0.0.1:1")).RevocationVersion);
        var after = await _directory.GetRevocationsAsync(new GetRevocationsRequest { AfterVersion = 1 });
        Assert.Equal(2ul, after.Version);
        var only = Assert.Single(after.Revocations);
        Assert.Equal(("peer-b", 2ul, _clock.GetUtcNow()), (only.PeerId, only.Version, only.RevokedAt.ToDateTimeOffset()));
    }

    [Fact]
    public async Task A_SuperNode_whose_certificate_names_another_region_than_the_directory_lists_is_not_called()
    {
        // sn-us is listed in us-east, but its server presents a certificate of eu-west.
        var eu = await StartSuperNodeAsync("sn-eu", "eu-west");
        var impostor = new FakeSuperNode(new SessionList());
        var server = await StartServerAsync(_pki.Issue(NodeIdentity.Super("sn-us", "eu-west")),
            new CertificatePolicy().Allow(SuperNodePeers.Descriptor.FullName, Callers.BaseNodes), services => services.AddSingleton(impostor),
            app => app.MapGrpcService<FakeSuperNode>());
        await ReportAsync("sn-us", "us-east", server.Address.ToString());

        var revoked = await _admin.RevokePeerAsync(new RevokePeerRequest { PeerId = "peer-x", Force = true });

        Assert.Equal(["sn-eu"], revoked.NotifiedSupernodes);
        Assert.Equal(["sn-us"], revoked.UnreachableSupernodes);
        Assert.Equal(["peer-x"], eu.Revoked.Select(r => r.PeerId));
        Assert.Empty(impostor.Revoked);
    }

    [Fact]
    public async Task A_published_CRL_is_enforced_at_once_acknowledged_in_reports_and_served_to_SuperNodes()
    {
        Assert.Equal(0ul, (await _directory.ReportAsync(ReportOf("sn-test", "eu-west", "127.0.0.1:1"))).CrlNumber);
        var list = CaRevocations.RevokeSerial(_pki.CaDir, CertificateRevocationList.SerialOf(_nodeTls.Certificate),
            System.Security.Cryptography.X509Certificates.X509RevocationReason.KeyCompromise, _clock.GetUtcNow()).List;
        var otherDirectory = DirectoryAs("sn-other", "eu-west");

        var published = await _admin.PublishCrlAsync(new PublishCrlRequest { Crl = ByteString.CopyFrom(list.Der) });

        Assert.Equal((1ul, 1u), (published.Number, published.Revoked));
        // The connection of sn-test's certificate was opened before the revocation; its next call is refused.
        var refused = await Assert.ThrowsAsync<RpcException>(() => _directory.ReportAsync(ReportOf("sn-test", "eu-west", "127.0.0.1:1")).ResponseAsync);
        Assert.Equal(Protocol.Control.RefusalReason.CertificateRevoked, Protocol.Control.RefusalReasons.Of(refused));
        Assert.Equal(1ul, (await otherDirectory.ReportAsync(ReportOf("sn-other", "eu-west", "127.0.0.1:1"))).CrlNumber);
        var served = await otherDirectory.GetCrlAsync(new GetCrlRequest());
        Assert.Equal(1ul, served.Number);
        Assert.Equal(list.Der, served.Der.ToByteArray());
        var view = await _admin.GetCrlAsync(new GetCrlRequest());
        Assert.Equal(CertificateRevocationList.SerialOf(_nodeTls.Certificate), Assert.Single(view.Revoked).Serial);
        Assert.Equal("key compromise", view.Revoked[0].Reason);
        Assert.Equal(1ul, _baseCrl.Number);
    }

    [Fact]
    public async Task Publishing_an_older_list_or_one_of_another_CA_is_refused_saying_why()
    {
        var (one, _) = CaRevocations.Reissue(_pki.CaDir, _clock.GetUtcNow());
        var (two, _) = CaRevocations.Reissue(_pki.CaDir, _clock.GetUtcNow());
        using var foreignPki = new TestPki();
        var (foreign, _) = CaRevocations.Reissue(foreignPki.CaDir, _clock.GetUtcNow());
        await _admin.PublishCrlAsync(new PublishCrlRequest { Crl = ByteString.CopyFrom(two.Der) });

        var older = await Assert.ThrowsAsync<RpcException>(() => _admin.PublishCrlAsync(new PublishCrlRequest { Crl = ByteString.CopyFrom(one.Der) }).ResponseAsync);
        var stranger = await Assert.ThrowsAsync<RpcException>(() => _admin.PublishCrlAsync(new PublishCrlRequest { Crl = ByteString.CopyFrom(foreign.Der) }).ResponseAsync);

        Assert.Equal(StatusCode.FailedPrecondition, older.StatusCode);
        Assert.Contains("CRL number 1 is older than CRL number 2, which the directory holds", older.Status.Detail, StringComparison.Ordinal);
        Assert.Equal(StatusCode.InvalidArgument, stranger.StatusCode);
        Assert.Contains("signature is not this network's CA's", stranger.Status.Detail, StringComparison.Ordinal);
        Assert.Equal(2ul, _baseCrl.Number);
    }

    [Fact]
    public async Task Revocation_is_told_to_every_up_supernode_of_every_region_and_unreachable_ones_are_named()
    {
        var eu = await StartSuperNodeAsync("sn-eu", "eu-west");
        var us = await StartSuperNodeAsync("sn-us", "us-east");
        await ReportAsync("sn-gone", "us-east", "127.0.0.1:1");
        var left = await StartSuperNodeAsync("sn-left", "eu-west");
        await DirectoryAs("sn-left", "eu-west").DeregisterAsync(new DeregisterRequest { SupernodeId = "sn-left", Region = "eu-west" });

        var revoked = await _admin.RevokePeerAsync(new RevokePeerRequest { PeerId = "peer-1", Force = true });

        Assert.Equal(1ul, revoked.Version);
        Assert.Equal(["sn-eu", "sn-us"], revoked.NotifiedSupernodes);
        Assert.Equal(["sn-gone"], revoked.UnreachableSupernodes);
        Assert.Equal([new RevokeRequest { PeerId = "peer-1", Version = 1 }], eu.Revoked);
        Assert.Equal([new RevokeRequest { PeerId = "peer-1", Version = 1 }], us.Revoked);
        Assert.Empty(left.Revoked);
    }

    [Fact]
    public async Task Revoking_again_keeps_the_version_and_tells_the_supernodes_again()
    {
        var eu = await StartSuperNodeAsync("sn-eu", "eu-west");
        await _admin.RevokePeerAsync(new RevokePeerRequest { PeerId = "peer-1", Force = true });
        await _admin.RevokePeerAsync(new RevokePeerRequest { PeerId = "peer-2", Force = true });

        var again = await _admin.RevokePeerAsync(new RevokePeerRequest { PeerId = "peer-1", Force = true });

        Assert.Equal(1ul, again.Version);
        Assert.Equal([1ul, 2ul, 1ul], eu.Revoked.Select(r => r.Version));
    }

    [Fact]
    public async Task Sessions_are_gathered_from_up_supernodes_ordered_by_region_then_peer()
    {
        await StartSuperNodeAsync("sn-eu", "eu-west", Session("peer-b", "eu-west", "sn-eu"), Session("peer-a", "eu-west", "sn-eu"));
        await StartSuperNodeAsync("sn-us", "us-east", Session("peer-c", "us-east", "sn-us"));
        await ReportAsync("sn-gone", "us-east", "127.0.0.1:1");

        var all = await _admin.ListSessionsAsync(new ListSessionsRequest());
        var usEast = await _admin.ListSessionsAsync(new ListSessionsRequest { Region = "us-east" });
        var unknown = await _admin.ListSessionsAsync(new ListSessionsRequest { Region = "ap-south" });

        Assert.Equal(["eu-west/peer-a", "eu-west/peer-b", "us-east/peer-c"], all.Sessions.Select(s => $"{s.Region}/{s.PeerId}"));
        Assert.Equal(["sn-gone"], all.UnreachableSupernodes);
        Assert.Equal(["peer-c"], usEast.Sessions.Select(s => s.PeerId));
        Assert.Equal(["sn-gone"], usEast.UnreachableSupernodes);
        Assert.Empty(unknown.Sessions);
        Assert.Empty(unknown.UnreachableSupernodes);
    }

    [Fact]
    public async Task Sessions_of_an_invalid_region_are_an_invalid_argument()
    {
        var ex = await Assert.ThrowsAsync<RpcException>(() =>
            _admin.ListSessionsAsync(new ListSessionsRequest { Region = "EU_West" }).ResponseAsync);

        Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
    }

    [Theory]
    [InlineData("", "must not be empty")]
    [InlineData("EU_West", "must start with a lowercase letter")]
    public async Task Exits_of_an_invalid_region_are_an_invalid_argument_saying_why(string region, string why)
    {
        var ex = await Assert.ThrowsAsync<RpcException>(() =>
            _admin.ListExitsAsync(new ListExitsRequest { Region = region }).ResponseAsync);

        Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
        Assert.StartsWith("region: ", ex.Status.Detail, StringComparison.Ordinal);
        Assert.Contains(why, ex.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Exits_come_from_an_up_supernode_of_the_region_asked_with_the_basenodes_node_certificate()
    {
        await ReportAsync("sn-a-gone", "eu-west", "127.0.0.1:1");
        var pool = new ExitPoolView { Region = "eu-west", Exits = { new ExitView { PeerId = "exit-1", Online = true, Capacity = 10 } } };
        var eu = await StartExitPoolAsync("sn-eu", "eu-west", _ => pool);
        var us = await StartExitPoolAsync("sn-us", "us-east", request => new ExitPoolView { Region = request.Region });

        var answer = await _admin.ListExitsAsync(new ListExitsRequest { Region = "eu-west" });

        Assert.Equal(pool, answer);
        Assert.Equal([(new ListExitsRequest { Region = "eu-west" }, "base-1")], eu.Asked);
        Assert.Empty(us.Asked);
    }

    [Fact]
    public async Task Exits_of_a_region_with_no_supernode_up_are_unavailable_naming_the_region()
    {
        await StartExitPoolAsync("sn-us", "us-east", request => new ExitPoolView { Region = request.Region });
        await ReportAsync("sn-gone", "ap-south", "127.0.0.1:1");

        var none = await Assert.ThrowsAsync<RpcException>(() => _admin.ListExitsAsync(new ListExitsRequest { Region = "eu-west" }).ResponseAsync);
        var unreachable = await Assert.ThrowsAsync<RpcException>(() => _admin.ListExitsAsync(new ListExitsRequest { Region = "ap-south" }).ResponseAsync);

        Assert.Equal((StatusCode.Unavailable, "no SuperNode is up for the exits of region eu-west"), (none.StatusCode, none.Status.Detail));
        Assert.Equal(StatusCode.Unavailable, unreachable.StatusCode);
        Assert.StartsWith("no SuperNode answered for the exits of region ap-south (sn-gone: ", unreachable.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Supernodes_refusal_of_exits_comes_back_with_its_status_detail_and_reason()
    {
        await StartExitPoolAsync("sn-eu", "eu-west", _ => throw new RpcException(
            new Grpc.Core.Status(StatusCode.FailedPrecondition, "the exit pool of region eu-west is not ready"),
            new Metadata { { Reason, "NO_EXIT_AVAILABLE" } }));

        var refused = await Assert.ThrowsAsync<RpcException>(() => _admin.ListExitsAsync(new ListExitsRequest { Region = "eu-west" }).ResponseAsync);

        Assert.Equal((StatusCode.FailedPrecondition, "the exit pool of region eu-west is not ready"), (refused.StatusCode, refused.Status.Detail));
        Assert.Equal(["NO_EXIT_AVAILABLE"], ReasonsIn(refused));
    }

    [Theory]
    [InlineData("sn-test", "us-east", "SuperNode sn-test of region us-east")]
    [InlineData("sn-other", "eu-west", "SuperNode sn-other of region eu-west")]
    public async Task A_SuperNode_may_report_only_as_itself_in_its_own_region(string id, string region, string claim)
    {
        var refused = await Assert.ThrowsAsync<RpcException>(() => _directory.ReportAsync(ReportOf(id, region, "127.0.0.1:1")).ResponseAsync);

        Assert.Equal(StatusCode.PermissionDenied, refused.StatusCode);
        Assert.Equal(["CERTIFICATE_MISMATCH"], ReasonsIn(refused));
        Assert.Contains($"names SuperNode sn-test of region eu-west (mydvpn://super/eu-west/sn-test), but the request claims {claim}",
            refused.Status.Detail, StringComparison.Ordinal);
        var regions = await _directory.ListRegionsAsync(new ListRegionsRequest());
        Assert.DoesNotContain(regions.Regions.SelectMany(r => r.Supernodes), s => s.Registration.SupernodeId == id);
    }

    [Fact]
    public async Task A_SuperNode_reporting_as_itself_is_registered()
    {
        await _directory.ReportAsync(ReportOf("sn-test", "eu-west", "127.0.0.1:1"));

        var regions = await _directory.ListRegionsAsync(new ListRegionsRequest());
        Assert.Contains(regions.Regions.Single(r => r.Region == "eu-west").Supernodes, s => s.Registration.SupernodeId == "sn-test");
    }

    [Fact]
    public async Task A_SuperNode_may_not_deregister_another_one()
    {
        await ReportAsync("sn-a", "eu-west", "127.0.0.1:1");

        var refused = await Assert.ThrowsAsync<RpcException>(() =>
            _directory.DeregisterAsync(new DeregisterRequest { SupernodeId = "sn-a", Region = "eu-west" }).ResponseAsync);

        Assert.Equal(StatusCode.PermissionDenied, refused.StatusCode);
        Assert.Equal(["CERTIFICATE_MISMATCH"], ReasonsIn(refused));
        var regions = await _directory.ListRegionsAsync(new ListRegionsRequest());
        Assert.Equal(MyDvpn.Protocol.Directory.SuperNodeStatus.Up, regions.Regions.Single(r => r.Region == "eu-west").Supernodes.Single(s => s.Registration.SupernodeId == "sn-a").Status);
    }

    [Fact]
    public async Task A_SuperNode_may_not_redeem_a_token_for_a_peer_of_another_region_and_the_token_is_not_spent()
    {
        var token = await _admin.CreateTokenAsync(new CreateTokenRequest { Role = 1, Region = "us-east" });

        var refused = await RefusedAsync(Redeem(token.Token, "peer-1", region: "us-east"));

        Assert.Equal(StatusCode.PermissionDenied, refused.StatusCode);
        Assert.Equal(["CERTIFICATE_MISMATCH"], ReasonsIn(refused));
        Assert.Contains("but the request claims a SuperNode of region us-east", refused.Status.Detail, StringComparison.Ordinal);
        var enrolled = await DirectoryAs("sn-us", "us-east").RedeemTokenAsync(Redeem(token.Token, "peer-1", region: "us-east"));
        Assert.Equal(0u, enrolled.UsesLeft);
    }

    [Fact]
    public async Task A_BaseNode_certificate_may_not_call_the_directory()
    {
        var refused = await Assert.ThrowsAsync<RpcException>(() => _baseNodeDirectory.ListRegionsAsync(new ListRegionsRequest()).ResponseAsync);

        Assert.Equal(StatusCode.PermissionDenied, refused.StatusCode);
        Assert.Equal(["CERTIFICATE_MISMATCH"], ReasonsIn(refused));
        Assert.Contains("needs an operator-issued SuperNode certificate: the certificate names BaseNode base-1", refused.Status.Detail, StringComparison.Ordinal);
    }

    private static RedeemTokenRequest Redeem(string token, string peerId, int role = 1, string region = "eu-west", byte keyByte = 1) => new()
    {
        Token = token,
        PeerId = peerId,
        Role = role,
        Region = region,
        PublicKey = ByteString.CopyFrom(Enumerable.Repeat(keyByte, 32).ToArray()),
    };

    private async Task<RpcException> RefusedAsync(RedeemTokenRequest request) =>
        await Assert.ThrowsAsync<RpcException>(() => _directory.RedeemTokenAsync(request).ResponseAsync);

    private static string[] ReasonsIn(RpcException ex) =>
        ex.Trailers.Where(entry => entry.Key == Reason).Select(entry => entry.Value).ToArray();

    private static Session Session(string peerId, string region, string superNodeId) => new()
    {
        PeerId = peerId,
        Region = region,
        SupernodeId = superNodeId,
        Role = "client",
        State = "connected",
        ConnectedSince = Timestamp.FromDateTimeOffset(new DateTimeOffset(2030, 1, 1, 0, 0, 0, TimeSpan.Zero)),
    };

    private async Task<FakeSuperNode> StartSuperNodeAsync(string id, string region, params Session[] sessions)
    {
        var list = new SessionList();
        list.Sessions.AddRange(sessions);
        var fake = new FakeSuperNode(list);
        var policy = new CertificatePolicy().Allow(SuperNodePeers.Descriptor.FullName, Callers.BaseNodes);
        // Its own certificate: the BaseNode takes only a SuperNode of the region the directory lists it in.
        var server = await StartServerAsync(_pki.Issue(NodeIdentity.Super(id, region)), policy, services => services.AddSingleton(fake),
            app => app.MapGrpcService<FakeSuperNode>());
        await ReportAsync(id, region, server.Address.ToString());
        return fake;
    }

    private async Task<FakeExitAllocation> StartExitPoolAsync(string id, string region, Func<ListExitsRequest, ExitPoolView> answer)
    {
        var fake = new FakeExitAllocation(answer);
        var policy = new CertificatePolicy()
            .Allow(ExitAllocation.Descriptor.FullName, Callers.SuperNodes)
            .Allow($"{ExitAllocation.Descriptor.FullName}/ListExits", Callers.SuperNodes | Callers.BaseNodes);
        var server = await StartServerAsync(_pki.Issue(NodeIdentity.Super(id, region)), policy, services => services.AddSingleton(fake),
            app => app.MapGrpcService<FakeExitAllocation>());
        await ReportAsync(id, region, server.Address.ToString());
        return fake;
    }

    /// <summary>Reports SuperNode <paramref name="id"/> of <paramref name="region"/> as that SuperNode does: with its own certificate.</summary>
    private async Task<ReportAck> ReportAsync(string id, string region, string endpoint) =>
        await DirectoryAs(id, region).ReportAsync(ReportOf(id, region, endpoint));

    private static SuperNodeReport ReportOf(string id, string region, string endpoint) => new()
    {
        Registration = new SuperNodeRegistration
        {
            SupernodeId = id,
            Region = region,
            GrpcEndpoint = endpoint,
            PublicIp = "127.0.0.1",
            RelayPortLow = 40000,
            RelayPortHigh = 40099,
            Capacity = 100,
        },
    };

    /// <summary>The directory as SuperNode <paramref name="id"/> of <paramref name="region"/> calls it, with a certificate of its own.</summary>
    private SuperNodeDirectory.SuperNodeDirectoryClient DirectoryAs(string id, string region)
    {
        var identity = NodeIdentity.Super(id, region);
        if (!_superNodes.TryGetValue(identity, out var client))
            _superNodes[identity] = client = new SuperNodeDirectory.SuperNodeDirectoryClient(Channel(_baseAddress, _pki.Issue(identity)));
        return client;
    }

    /// <summary>
    /// Real Kestrel with TLS from a node certificate, requiring client certificates of the operator CA and putting
    /// <see cref="CertificateKindInterceptor"/> in front, as <c>ClusterNodeHost</c> does.
    /// </summary>
    private async Task<TlsGrpcTestServer> StartServerAsync(
        TlsMaterial tls, CertificatePolicy policy, Action<IServiceCollection> addServices, Action<WebApplication> map)
    {
        var server = await TlsGrpcTestServer.StartAsync(
            tls,
            ClientCertificateMode.RequireCertificate,
            services => addServices(services.AddCertificateKindInterceptor(tls, policy)),
            map);
        _servers.Add(server);
        return server;
    }

    private GrpcChannel Channel(HostPort server, TlsMaterial tls)
    {
        var channel = GrpcChannels.MutualTls(server, tls, ExpectedServer.BaseNode);
        _channels.Add(channel);
        return channel;
    }
}
