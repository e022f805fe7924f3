using System.Collections.Immutable;
using Akka.Serialization;
using Google.Protobuf;
using MyDvpn.Protocol.Control;
using MyDvpn.SuperNode.Sessions;

namespace MyDvpn.SuperNode.Tests.Sessions;

/// <summary>
/// Events and snapshots go to the journal, and messages cross the region's cluster, through Akka's default serializer
/// — or, for messages carrying protobuf messages, <see cref="PeerSessionSerializer"/> bound as the host binds it:
/// each must come back equal (byte arrays compared by content).
/// </summary>
public sealed class SerializationTests() : Akka.TestKit.Xunit2.TestKit(PeerSessionSerializer.Configuration)
{
    private static readonly DateTimeOffset At = new(2030, 1, 1, 12, 0, 0, TimeSpan.FromHours(2));

    private static readonly Command Command = new()
    {
        CommandId = "cmd-1",
        Deadline = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(At),
        SetupExit = new SetupExit
        {
            AssignmentId = "a-1",
            Peer = new WireGuardPeer { PublicKey = ByteString.CopyFrom(1, 2, 3), Endpoint = "203.0.113.9:51820", AllowedIps = { "10.64.0.2/32" } },
            TunnelAddresses = { "10.64.0.1/32" },
        },
    };

    private static readonly CommandResponse Response = new()
    {
        CommandId = "cmd-1",
        Result = new CommandResult { SetupExit = new SetupExitResult { PublicKey = ByteString.CopyFrom(4, 5), Endpoint = "198.51.100.4:51820" } },
    };

    public static TheoryData<object> Records() =>
    [
        new PeerEnrolled(PeerRole.Both, [1, 2, 3], "token-1", At),
        new SessionStarted("0123456789abcdef0123456789abcdef", PeerRole.Exit, At),
        new PeerRevoked("peer-1"),
        new CommandIssued("cmd-1", Command.ToByteArray(), "client-7", At),
        new CommandIssued("cmd-2", Command.ToByteArray(), null, At),
        new CommandCompleted("cmd-1", Response.ToByteArray(), At),
        new CommandFailed("cmd-1", "peer revoked", At),
        new AuthenticatePeer("peer-1", PeerRole.Client, "eu-west", [1, 2], [3, 4], "token", [5, 6]),
        new AuthenticatePeer("peer-1", PeerRole.Client, "eu-west", [1, 2], [3, 4], null, null),
        new PeerAuthenticated("peer-1", PeerRole.Client, "s-1"),
        new PeerRefused("peer-1", RefusalReason.BadSignature, "no"),
        new StreamAttached("peer-1", "s-1"),
        new CloseStream(RefusalReason.Replaced, "newer"),
        new CommandAccepted("peer-1", "cmd-1"),
        new RevokePeer("peer-1"),
        new GetPeerState("peer-1"),
        StopPeerSession.Instance,
        new PeerSnapshot("peer-1", "eu-west", new PeerEnrolled(PeerRole.Client, [9], "token-1", At), true, "s-1", PeerRole.Client,
            [new CommandIssued("cmd-1", Command.ToByteArray(), "client-7", At)], ["cmd-0"]),
        new PeerSnapshot("peer-1", "eu-west", null, false, null, PeerRole.Unspecified, [], []),
        // From the session to its peer's edge, often on another SuperNode: a moved client's assignment with its last rotation.
        new PeerAssignments("peer-1", [
            new MyDvpn.SuperNode.Exits.ExitAssignmentRecord("a-2", "us-east", "exit-2", [7], "198.51.100.8:51820", "100.96.1.2/32", "100.96.1.1/24", "peer-1",
                "eu-west", [8], "active")
            {
                LastRotation = new ExitRotationRecord("a-1", "exit-1", MyDvpn.Protocol.SuperNode.RotationReason.ExitLost, "exit exit-1 is lost", At),
            },
        ]),
    ];

    [Theory]
    [MemberData(nameof(Records))]
    public void Record_round_trips_through_the_default_serializer(object message)
    {
        Assert.Equivalent(message, RoundTrip(message), strict: true);
    }

    public static TheoryData<object> ProtobufCarriers() =>
    [
        new DeliverCommand(Command),
        new CommandAnswered("peer-1", Response),
        new IssueCommand("peer-1", Command, "client-7"),
        new CommandOutcome("peer-1", "cmd-1", Response, null),
        new IssueCommand("peer-1", new Command()),
        new CommandOutcome("peer-1", "cmd-1", Response, null),
        new CommandOutcome("peer-1", "cmd-1", null, ""),
        new CommandOutcomeFor("client-7", new CommandOutcome("peer-1", "cmd-1", null, "peer revoked")),
        new CommandOutcomeFor("client-7", new CommandOutcome("peer-1", "cmd-1", Response, null)),
    ];

    [Theory]
    [MemberData(nameof(ProtobufCarriers))]
    public void Message_carrying_a_protobuf_message_round_trips_through_the_peer_session_serializer(object message)
    {
        Assert.IsType<PeerSessionSerializer>(Sys.Serialization.FindSerializerFor(message));
        Assert.Equal(message, RoundTrip(message));
    }

    [Fact]
    public void Attach_stream_round_trips_with_its_edge_reference()
    {
        var attach = new AttachStream("peer-1", "s-1", TestActor);

        Assert.Equal(attach, RoundTrip(attach));
    }

    [Fact]
    public void Peer_state_view_round_trips_with_its_immutable_list()
    {
        var view = new PeerStateView("peer-1", true, PeerRole.Both, false, "s-1", true, 2, ["a", "b"]);

        var back = Assert.IsType<PeerStateView>(RoundTrip(view));

        Assert.Equal(view with { InFlightCommandIds = ImmutableList<string>.Empty }, back with { InFlightCommandIds = [] });
        Assert.Equal(view.InFlightCommandIds, back.InFlightCommandIds);
    }

    [Fact]
    public void Peer_state_round_trips_as_a_snapshot()
    {
        var state = PeerState.Empty("peer-1", "eu-west", 10)
            .Apply(new PeerEnrolled(PeerRole.Both, new byte[32], "token-1", At))
            .Apply(new SessionStarted("s-1", PeerRole.Exit, At))
            .Apply(new CommandIssued("done", Command.ToByteArray(), null, At))
            .Apply(new CommandCompleted("done", Response.ToByteArray(), At))
            .Apply(new CommandIssued("cmd-1", Command.ToByteArray(), "client-7", At));

        var back = Assert.IsType<PeerSnapshot>(RoundTrip(state.ToSnapshot()));
        var restored = PeerState.FromSnapshot(back, state.Config);

        Assert.Equivalent(state.View(), restored.View(), strict: true);
        Assert.Equal(state.Commands.InFlight, restored.Commands.InFlight);
        Assert.Equal(state.Commands.Finished, restored.Commands.Finished);
        Assert.True(restored.Commands.IsFinished("done"));
        Assert.Equal(state.Identity.Enrollment!.PublicKey, restored.Identity.Enrollment!.PublicKey);
        Assert.Equal(PeerRole.Exit, restored.Identity.SessionRole);
    }

    private object RoundTrip(object message)
    {
        var serializer = Sys.Serialization.FindSerializerFor(message);
        var bytes = serializer.ToBinary(message);
        return Sys.Serialization.Deserialize(bytes, serializer.Identifier, Serialization.ManifestFor(serializer, message));
    }
}
