using System.Collections.Immutable;
using Akka.Serialization;
using MyDvpn.BaseNode.Enrollment;

namespace MyDvpn.BaseNode.Tests.Enrollment;

/// <summary>
/// Routing of enrollment messages, and their round trip through Akka's default serializer (they cross the BaseNode
/// cluster; events and snapshots go to the journal).
/// </summary>
public sealed class EnrollmentMessagesTests : Akka.TestKit.Xunit2.TestKit
{
    private static readonly DateTimeOffset At = new(2030, 1, 1, 12, 0, 0, TimeSpan.FromHours(2));
    private const string TokenId = "0123456789abcdef";
    private static readonly string Digest = new('a', 64);
    private static readonly string Key = Convert.ToBase64String(new byte[32]);

    public static TheoryData<object> Records() =>
    [
        new CreateToken(TokenId, Digest, EnrollmentRole.Both, "eu-west", 5, TimeSpan.FromHours(24)),
        new TokenIssued(TokenId, EnrollmentRole.Exit, "eu-west", 5, At),
        new RedeemToken(TokenId, Digest, "peer-1", EnrollmentRole.Client, "eu-west", Key),
        new TokenRedeemAccepted(TokenId, "peer-1", 4, AlreadyRedeemed: true),
        new TokenRedeemRefused(TokenId, "peer-1", TokenRefusal.TokenUsedUp, "used up"),
        new TokenCreated(TokenId, Digest, EnrollmentRole.Client, "eu-west", 1, At.AddDays(1), At),
        new TokenRedeemed("peer-1", Key, At),
        new RevokePeer("peer-1"),
        new PeerRevocationRecorded(new RevocationEntry("peer-1", 7, At), AlreadyRevoked: false),
        new GetRevocationsAfter(3),
        GetRevocationVersion.Instance,
        new RevocationVersion(7),
        new GetRevocation("peer-1"),
        new RevocationOf("peer-1", new RevocationEntry("peer-1", 7, At)),
        new RevocationOf("peer-2", null),
        new PeerRevoked("peer-1", 7, At),
        new TokenRevoked(At, "ops"),
        new RevokeToken(TokenId, "ops"),
        new GetToken(TokenId),
        new UnrevokePeer("peer-1", "ops"),
        new PeerUnrevocationRecorded("peer-1", 8),
        new PeerUnrevoked("peer-1", 8, At, "ops"),
        GetRevokedPeers.Instance,
        new IndexToken(TokenId),
        new TokenIdIndexed(TokenId),
        GetTokenIds.Instance,
        new TokenIndexed(TokenId, At),
        new RecordEnrollment("peer-1", "eu-west", EnrollmentRole.Client, TokenId),
        new PeerEnrollmentRecorded("peer-1", "eu-west", EnrollmentRole.Client, TokenId, At),
        GetEnrolledPeers.Instance,
        new GetEnrolledPeer("peer-1"),
        GetPeerCounts.Instance,
        new PeerCounts([new PeerCount("eu-west", EnrollmentRole.Exit, Connected: true, 3)]),
        new EnrolledPeerOf("peer-1", new EnrolledPeer("peer-1", "eu-west", EnrollmentRole.Both, null, null, At, true)),
    ];

    [Theory]
    [MemberData(nameof(Records))]
    public void Record_round_trips_through_the_default_serializer(object message)
    {
        Assert.Equal(message, RoundTrip(message));
    }

    [Fact]
    public void Revocation_lists_round_trip_with_their_immutable_lists()
    {
        ImmutableList<RevocationEntry> entries = [new("peer-1", 1, At), new("peer-2", 2, At)];

        Assert.Equal(entries, Assert.IsType<RevocationsAfter>(RoundTrip(new RevocationsAfter(entries, 2))).Revocations);
        var snapshot = Assert.IsType<RevocationsSnapshot>(RoundTrip(new RevocationsSnapshot(entries)));
        Assert.Equal(2, RevocationsState.FromSnapshot(snapshot).Version);
    }

    [Fact]
    public void Lifecycle_lists_and_snapshots_round_trip_with_their_immutable_lists()
    {
        ImmutableList<RevocationEntry> changes = [new("peer-1", 1, At), new("peer-1", 2, At, Unrevoked: true)];
        var snapshot = Assert.IsType<RevocationsSnapshot>(RoundTrip(new RevocationsSnapshot(changes)));
        Assert.Equal(changes, snapshot.Revocations);
        Assert.Empty(RevocationsState.FromSnapshot(snapshot).Revoked);

        var view = new TokenView(TokenId, true, EnrollmentRole.Exit, "eu-west", 3, 2, At, At.AddDays(1), false, new TokenRevoked(At, "ops"), ["peer-1"]);
        var back = Assert.IsType<TokenView>(RoundTrip(view));
        Assert.Equal(view with { EnrolledPeers = [] }, back with { EnrolledPeers = [] });
        Assert.Equal(view.EnrolledPeers, back.EnrolledPeers);

        Assert.Equal(["0123456789abcdef", "fedcba9876543210"], Assert.IsType<TokenIds>(RoundTrip(new TokenIds([TokenId, "fedcba9876543210"]))).Ids);

        ImmutableList<PeerSighting> sightings = [new("peer-1", "eu-west", EnrollmentRole.Client, At, true)];
        Assert.Equal(sightings, Assert.IsType<PeersSighted>(RoundTrip(new PeersSighted(sightings))).Sightings);
        Assert.Equal(sightings, Assert.IsType<RecordSightings>(RoundTrip(new RecordSightings("eu-west", sightings))).Sightings);
        var registry = PeerRegistryState.Empty.Apply(new PeerEnrollmentRecorded("peer-1", "eu-west", EnrollmentRole.Client, TokenId, At))
            .Apply(new PeersSighted([new("peer-2", "eu-west", EnrollmentRole.Exit, At, false)]));
        Assert.Equal(registry, PeerRegistryState.FromSnapshot(Assert.IsType<EnrolledPeers>(RoundTrip(registry.ToSnapshot()))));
    }

    [Fact]
    public void Token_messages_go_to_the_token_entity_within_the_fixed_shard_count()
    {
        var extractor = new EnrollmentTokenMessageExtractor();
        object[] messages =
        [
            new CreateToken(TokenId, Digest, EnrollmentRole.Client, "eu-west", 1, TimeSpan.FromHours(1)),
            new RedeemToken(TokenId, Digest, "peer-1", EnrollmentRole.Client, "eu-west", Key),
        ];

        Assert.All(messages, m => Assert.Equal(TokenId, extractor.EntityId(m)));
        var shard = Assert.Single(messages.Select(m => extractor.ShardId(TokenId, m)).Distinct());
        Assert.InRange(int.Parse(shard, System.Globalization.CultureInfo.InvariantCulture), 0, EnrollmentTokenMessageExtractor.ShardCount - 1);
        Assert.Null(extractor.EntityId(new RevokePeer("peer-1")));
        Assert.Null(extractor.EntityId("hello"));
    }

    [Fact]
    public void Revocation_messages_go_to_the_single_revocations_entity()
    {
        var extractor = new RevocationsMessageExtractor();

        Assert.Equal("revocations", extractor.EntityId(new RevokePeer("peer-1")));
        Assert.Equal("revocations", extractor.EntityId(new GetRevocationsAfter(0)));
        Assert.Equal("revocations", extractor.EntityId(GetRevocationVersion.Instance));
        Assert.Equal("revocations", extractor.EntityId(new GetRevocation("peer-1")));
        Assert.Null(extractor.EntityId(new RedeemToken(TokenId, Digest, "peer-1", EnrollmentRole.Client, "eu-west", Key)));
    }

    [Fact]
    public void Entity_type_names_are_stable()
    {
        Assert.Equal("enrollment-token", EnrollmentEntityTypes.Token);
        Assert.Equal("revocations", EnrollmentEntityTypes.Revocations);
        Assert.Equal("enrollment-token-index", EnrollmentEntityTypes.TokenIndex);
        Assert.Equal("enrollment-peer-registry", EnrollmentEntityTypes.PeerRegistry);
    }

    private object RoundTrip(object message)
    {
        var serializer = Sys.Serialization.FindSerializerFor(message);
        var bytes = serializer.ToBinary(message);
        return Sys.Serialization.Deserialize(bytes, serializer.Identifier, Serialization.ManifestFor(serializer, message));
    }
}
