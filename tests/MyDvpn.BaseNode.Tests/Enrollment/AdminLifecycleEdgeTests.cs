using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using MyDvpn.BaseNode.Enrollment;
using MyDvpn.Protocol.Admin;
using MyDvpn.Protocol.Directory;
using MyDvpn.Protocol.SuperNode;
using PeerRole = MyDvpn.Protocol.Control.PeerRole;

namespace MyDvpn.BaseNode.Tests.Enrollment;

/// <summary>The lifecycle of tokens, revocations and enrolled peers in the admin API, on the same real edge as the tests of enrollment.</summary>
public sealed partial class EnrollmentEdgeTests
{
    [Fact]
    public async Task Token_list_shows_every_token_with_its_uses_left_and_never_its_secret()
    {
        var first = await _admin.CreateTokenAsync(new CreateTokenRequest { Role = 1, Region = "eu-west", Uses = 2 });
        var second = await _admin.CreateTokenAsync(new CreateTokenRequest { Role = 2, Region = "us-east", TtlSeconds = 60 });
        await _directory.RedeemTokenAsync(Redeem(first.Token, "peer-1"));
        _clock.Advance(TimeSpan.FromSeconds(60));

        var list = await _admin.ListTokensAsync(new ListTokensRequest());

        Assert.Equal([first.TokenId, second.TokenId], list.Tokens.Select(t => t.TokenId));
        var one = list.Tokens[0];
        Assert.Equal((PeerRole.Client, "eu-west", 2u, 1u, TokenState.Active), (one.Role, one.Region, one.Uses, one.UsesLeft, one.State));
        Assert.Equal(["peer-1"], one.EnrolledPeers);
        Assert.Equal(first.ExpiresAt, one.ExpiresAt);
        Assert.Equal(TokenState.Expired, list.Tokens[1].State);
        Assert.True(TokenCredential.TryParse(first.Token, out var credential, out _));
        var text = list.ToString();
        Assert.DoesNotContain(first.Token[(TokenCredential.TokenIdLength + 1)..], text, StringComparison.Ordinal);
        Assert.DoesNotContain(credential!.SecretSha256, text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_revoked_token_enrolls_nobody_new_and_lists_as_revoked_by_the_admin()
    {
        var token = await _admin.CreateTokenAsync(new CreateTokenRequest { Role = 1, Region = "eu-west", Uses = 3 });
        await _directory.RedeemTokenAsync(Redeem(token.Token, "peer-1"));

        var revoked = await _admin.RevokeTokenAsync(new RevokeTokenRequest { TokenId = token.TokenId });

        Assert.Equal((TokenState.Revoked, "ops", 2u), (revoked.State, revoked.RevokedBy, revoked.UsesLeft));
        var refused = await RefusedAsync(Redeem(token.Token, "peer-2", keyByte: 2));
        Assert.Equal(["BAD_TOKEN"], ReasonsIn(refused));
        Assert.Contains("revoked", refused.Status.Detail, StringComparison.Ordinal);
        // The peer it enrolled stays enrolled: its retry with the same key is still its enrollment.
        Assert.Equal(token.TokenId, (await _directory.RedeemTokenAsync(Redeem(token.Token, "peer-1"))).TokenId);
        var listed = Assert.Single((await _admin.ListTokensAsync(new ListTokensRequest())).Tokens);
        Assert.Equal((TokenState.Revoked, 2u, _clock.GetUtcNow()), (listed.State, listed.UsesLeft, listed.RevokedAt.ToDateTimeOffset()));
    }

    [Theory]
    [InlineData("0123456789abcdef", StatusCode.NotFound)]
    [InlineData("not-a-token-id", StatusCode.InvalidArgument)]
    public async Task Revoking_a_token_that_does_not_exist_is_refused_saying_why(string tokenId, StatusCode code)
    {
        var refused = await Assert.ThrowsAsync<RpcException>(() => _admin.RevokeTokenAsync(new RevokeTokenRequest { TokenId = tokenId }).ResponseAsync);

        Assert.Equal(code, refused.StatusCode);
        Assert.Contains("token", refused.Status.Detail, StringComparison.Ordinal);
        Assert.Empty((await _admin.ListTokensAsync(new ListTokensRequest())).Tokens);
    }

    [Fact]
    public async Task Revoking_a_peer_that_never_enrolled_needs_force_and_without_it_changes_nothing()
    {
        var eu = await StartSuperNodeAsync("sn-eu", "eu-west");

        var refused = await Assert.ThrowsAsync<RpcException>(() =>
            _admin.RevokePeerAsync(new RevokePeerRequest { PeerId = "peer-typo" }).ResponseAsync);

        Assert.Equal(StatusCode.FailedPrecondition, refused.StatusCode);
        Assert.Contains("never enrolled", refused.Status.Detail, StringComparison.Ordinal);
        Assert.Contains("--force", refused.Status.Detail, StringComparison.Ordinal);
        Assert.Empty((await _admin.ListRevocationsAsync(new ListRevocationsRequest())).Peers);
        Assert.Empty(eu.Revoked);

        var forced = await _admin.RevokePeerAsync(new RevokePeerRequest { PeerId = "peer-typo", Force = true });

        Assert.Equal(1ul, forced.Version);
        Assert.Equal(["peer-typo"], (await _admin.ListRevocationsAsync(new ListRevocationsRequest())).Peers.Select(p => p.PeerId));
    }

    [Fact]
    public async Task An_enrolled_peer_is_revoked_without_force()
    {
        var token = await _admin.CreateTokenAsync(new CreateTokenRequest { Role = 1, Region = "eu-west" });
        await _directory.RedeemTokenAsync(Redeem(token.Token, "peer-1"));

        // The registry records an enrollment without holding the redemption up: it may lag it a moment.
        await AwaitAssertAsync(async () =>
            Assert.Equal(1ul, (await _admin.RevokePeerAsync(new RevokePeerRequest { PeerId = "peer-1" })).Version));
    }

    [Fact]
    public async Task Unrevoking_takes_the_revocation_back_with_the_next_version_tells_the_SuperNodes_and_the_peer_enrolls_again()
    {
        var eu = await StartSuperNodeAsync("sn-eu", "eu-west");
        var token = await _admin.CreateTokenAsync(new CreateTokenRequest { Role = 1, Region = "eu-west" });
        await _admin.RevokePeerAsync(new RevokePeerRequest { PeerId = "peer-1", Force = true });
        Assert.Equal(["REVOKED"], ReasonsIn(await RefusedAsync(Redeem(token.Token, "peer-1"))));

        var unrevoked = await _admin.UnrevokePeerAsync(new UnrevokePeerRequest { PeerId = "peer-1" });

        Assert.Equal(2ul, unrevoked.Version);
        Assert.Equal(["sn-eu"], unrevoked.NotifiedSupernodes);
        Assert.Equal([new UnrevokeRequest { PeerId = "peer-1", Version = 2 }], eu.Unrevoked);
        var revocations = await _admin.ListRevocationsAsync(new ListRevocationsRequest());
        Assert.Empty(revocations.Peers);
        Assert.Equal(2ul, revocations.Version);
        // A SuperNode that was away catches up on the change in order: the revocation, then its taking back.
        var changes = await _directory.GetRevocationsAsync(new GetRevocationsRequest { AfterVersion = 0 });
        Assert.Equal([("peer-1", 1ul, false), ("peer-1", 2ul, true)], changes.Revocations.Select(r => (r.PeerId, r.Version, r.Unrevoked)));
        Assert.Equal(2ul, (await ReportAsync("sn-eu", "eu-west", "127.0.0.1:1")).RevocationVersion);
        Assert.Equal(token.TokenId, (await _directory.RedeemTokenAsync(Redeem(token.Token, "peer-1"))).TokenId);
    }

    [Fact]
    public async Task Unrevoking_a_peer_that_is_not_revoked_is_a_failed_precondition_and_persists_nothing()
    {
        var refused = await Assert.ThrowsAsync<RpcException>(() =>
            _admin.UnrevokePeerAsync(new UnrevokePeerRequest { PeerId = "peer-1" }).ResponseAsync);

        Assert.Equal(StatusCode.FailedPrecondition, refused.StatusCode);
        Assert.Contains("not revoked", refused.Status.Detail, StringComparison.Ordinal);
        Assert.Equal(0ul, (await _admin.ListRevocationsAsync(new ListRevocationsRequest())).Version);
    }

    [Fact]
    public async Task Peers_lists_the_enrolled_peers_online_from_their_SuperNode_and_offline_ones_with_when_they_were_last_seen()
    {
        var token = await _admin.CreateTokenAsync(new CreateTokenRequest { Role = 3, Region = "eu-west", Uses = 2 });
        await _directory.RedeemTokenAsync(Redeem(token.Token, "peer-on"));
        await _directory.RedeemTokenAsync(Redeem(token.Token, "peer-off", keyByte: 2));
        // The redemption tells the registry without waiting for it, and the registry stamps an enrollment when it records
        // it: the clock moves only once both are recorded (moved before, peer-on was once enrolled 5 min late).
        await AwaitAssertAsync(async () =>
            Assert.Equal(2, (await _admin.ListPeersAsync(new ListPeersRequest())).Peers.Count(p => p.EnrolledAt is not null)));
        var enrolledAt = _clock.GetUtcNow();
        var left = _clock.Advance(TimeSpan.FromMinutes(5));
        var eu = await StartSuperNodeAsync("sn-eu", "eu-west", Session("peer-on", "eu-west", "sn-eu"));
        // sn-eu saw peer-off's stream end, and a peer enrolled before the directory kept enrollments connect.
        // Reported by a second SuperNode of the region (the first one's report would move its endpoint).
        var report = ReportOf("sn-eu2", "eu-west", "127.0.0.1:1");
        report.PeersSeen.Add(new Protocol.Directory.PeerSighting { PeerId = "peer-off", Role = 3, At = Timestamp.FromDateTimeOffset(left), Connected = false });
        report.PeersSeen.Add(new Protocol.Directory.PeerSighting { PeerId = "peer-old", Role = 1, At = Timestamp.FromDateTimeOffset(left), Connected = true });
        await DirectoryAs("sn-eu2", "eu-west").ReportAsync(report);
        await _admin.RevokePeerAsync(new RevokePeerRequest { PeerId = "peer-old", Force = true });

        await AwaitAssertAsync(async () =>
        {
            var peers = (await _admin.ListPeersAsync(new ListPeersRequest())).Peers.ToDictionary(p => p.PeerId);
            Assert.Equal(["peer-off", "peer-old", "peer-on"], peers.Keys.Order(StringComparer.Ordinal));
            var on = peers["peer-on"];
            Assert.Equal((true, "sn-eu", PeerRole.Client, token.TokenId, enrolledAt), (on.Online, on.SupernodeId, on.Role, on.TokenId, on.EnrolledAt.ToDateTimeOffset()));
            Assert.NotNull(on.LastSeen);
            var off = peers["peer-off"];
            Assert.Equal((false, "", left, false), (off.Online, off.SupernodeId, off.LastSeen.ToDateTimeOffset(), off.Revoked));
            var old = peers["peer-old"];
            Assert.Equal((false, "", PeerRole.Client, left, true), (old.Online, old.TokenId, old.Role, old.LastSeen.ToDateTimeOffset(), old.Revoked));
            Assert.Null(old.EnrolledAt);
        });
        Assert.Empty((await _admin.ListPeersAsync(new ListPeersRequest { Region = "us-east" })).Peers);
        Assert.Empty(eu.Unrevoked);
    }

    [Fact]
    public async Task A_token_for_a_region_the_directory_does_not_know_is_made_and_says_so()
    {
        await ReportAsync("sn-eu", "eu-west", "127.0.0.1:1");

        var known = await _admin.CreateTokenAsync(new CreateTokenRequest { Role = 1, Region = "eu-west" });
        var typo = await _admin.CreateTokenAsync(new CreateTokenRequest { Role = 1, Region = "eu-wset" });

        Assert.False(known.RegionUnknown);
        Assert.True(typo.RegionUnknown);
        Assert.Equal([known.TokenId, typo.TokenId], (await _admin.ListTokensAsync(new ListTokensRequest())).Tokens.Select(t => t.TokenId));
    }
}
