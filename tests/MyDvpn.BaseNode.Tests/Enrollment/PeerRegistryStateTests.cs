using MyDvpn.BaseNode.Enrollment;

namespace MyDvpn.BaseNode.Tests.Enrollment;

/// <summary>The pure registry of enrolled peers: what an enrollment and a SuperNode's sightings change, and what they may not.</summary>
public sealed class PeerRegistryStateTests
{
    private const string TokenId = "0123456789abcdef";
    private static readonly DateTimeOffset T0 = new(2030, 1, 1, 12, 0, 0, TimeSpan.Zero);

    private static PeerSighting Seen(string peerId, DateTimeOffset at, bool connected, string region = "eu-west") =>
        new(peerId, region, EnrollmentRole.Client, at, connected);

    [Fact]
    public void An_enrollment_is_recorded_once_per_token_and_counts_as_seen()
    {
        var record = new RecordEnrollment("peer-1", "eu-west", EnrollmentRole.Exit, TokenId);
        var recorded = PeerRegistryState.Empty.DecideEnrollment(record, T0);
        var state = PeerRegistryState.Empty.Apply(recorded!);

        Assert.Equal(new EnrolledPeer("peer-1", "eu-west", EnrollmentRole.Exit, TokenId, T0, T0, false), Assert.Single(state.Of("peer-1")));
        Assert.Null(state.DecideEnrollment(record, T0.AddMinutes(1)));
        Assert.Null(PeerRegistryState.Empty.DecideEnrollment(record with { PeerId = "not a peer" }, T0));
    }

    [Fact]
    public void Sightings_keep_the_latest_word_on_each_peer_and_add_a_peer_enrolled_before_the_registry()
    {
        var state = PeerRegistryState.Empty.Apply(new PeerEnrollmentRecorded("peer-1", "eu-west", EnrollmentRole.Client, TokenId, T0));

        var sighted = state.DecideSightings(new RecordSightings("eu-west",
        [
            Seen("peer-1", T0.AddMinutes(1), connected: true),
            Seen("peer-1", T0.AddMinutes(3), connected: false),
            Seen("peer-old", T0.AddMinutes(2), connected: true),
        ]));
        state = state.Apply(sighted!);

        Assert.Equal((T0.AddMinutes(3), false, TokenId), state.Of("peer-1").Select(p => (p.LastSeen, p.Connected, p.TokenId)).Single());
        Assert.Equal((T0.AddMinutes(2), true, (string?)null, (DateTimeOffset?)null),
            state.Of("peer-old").Select(p => (p.LastSeen!.Value, p.Connected, p.TokenId, p.EnrolledAt)).Single());
        // An older report arriving late changes nothing.
        Assert.Null(state.DecideSightings(new RecordSightings("eu-west", [Seen("peer-1", T0.AddMinutes(2), connected: true)])));
    }

    [Fact]
    public void A_SuperNode_reports_only_peers_of_its_own_region()
    {
        Assert.Null(PeerRegistryState.Empty.DecideSightings(new RecordSightings("eu-west", [Seen("peer-1", T0, true, region: "us-east")])));
    }

    [Fact]
    public void A_peer_id_of_two_regions_is_two_peers()
    {
        var state = PeerRegistryState.Empty
            .Apply(new PeerEnrollmentRecorded("peer-1", "eu-west", EnrollmentRole.Client, TokenId, T0))
            .Apply(new PeerEnrollmentRecorded("peer-1", "us-east", EnrollmentRole.Exit, TokenId, T0));

        Assert.Equal(["eu-west", "us-east"], state.Of("peer-1").Select(p => p.Region));
    }

    [Fact]
    public void Peers_are_counted_by_region_role_and_whether_they_are_connected()
    {
        var state = PeerRegistryState.Empty
            .Apply(new PeerEnrollmentRecorded("peer-1", "eu-west", EnrollmentRole.Client, TokenId, T0))
            .Apply(new PeerEnrollmentRecorded("peer-2", "eu-west", EnrollmentRole.Client, TokenId, T0))
            .Apply(new PeerEnrollmentRecorded("exit-1", "us-east", EnrollmentRole.Exit, TokenId, T0));
        state = state.Apply(state.DecideSightings(new RecordSightings("eu-west", [Seen("peer-2", T0.AddMinutes(1), connected: true)]))!);

        Assert.Equal(
            new PeerCounts(
            [
                new PeerCount("eu-west", EnrollmentRole.Client, Connected: false, 1),
                new PeerCount("eu-west", EnrollmentRole.Client, Connected: true, 1),
                new PeerCount("us-east", EnrollmentRole.Exit, Connected: false, 1),
            ]),
            state.Counts());
    }

    [Fact]
    public void Snapshot_round_trips()
    {
        var state = PeerRegistryState.Empty
            .Apply(new PeerEnrollmentRecorded("peer-1", "eu-west", EnrollmentRole.Client, TokenId, T0))
            .Apply(new PeersSighted([Seen("peer-2", T0, true)]));

        Assert.Equal(state, PeerRegistryState.FromSnapshot(state.ToSnapshot()));
    }
}
