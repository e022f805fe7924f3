using Google.Protobuf;
using MyDvpn.Protocol.Control;
using MyDvpn.SuperNode.Sessions;

namespace MyDvpn.SuperNode.Tests.Sessions;

/// <summary>The pure parts of a session: its state, its decisions and the retry timing of its settings.</summary>
public sealed class PeerStateTests
{
    private static readonly DateTimeOffset Now = new(2030, 1, 1, 12, 0, 0, TimeSpan.Zero);

    [Theory]
    [InlineData(PeerRole.Both, PeerRole.Client, true)]
    [InlineData(PeerRole.Both, PeerRole.Exit, true)]
    [InlineData(PeerRole.Both, PeerRole.Both, true)]
    [InlineData(PeerRole.Both, PeerRole.Supernode, false)]
    [InlineData(PeerRole.Client, PeerRole.Client, true)]
    [InlineData(PeerRole.Client, PeerRole.Exit, false)]
    [InlineData(PeerRole.Client, PeerRole.Both, false)]
    [InlineData(PeerRole.Exit, PeerRole.Exit, true)]
    [InlineData(PeerRole.Exit, PeerRole.Client, false)]
    [InlineData(PeerRole.Exit, PeerRole.Both, false)]
    [InlineData(PeerRole.Supernode, PeerRole.Supernode, false)]
    public void Enrolled_role_allows_exactly_the_roles_it_covers(PeerRole enrolled, PeerRole claimed, bool allowed)
    {
        Assert.Equal(allowed, PeerIdentity.RoleAllows(enrolled, claimed));
    }

    [Fact]
    public void Only_the_last_remembered_finished_ids_are_kept()
    {
        var state = Enrolled(rememberCompleted: 2);
        foreach (var id in new[] { "a", "b", "c" })
        {
            state = state.Apply(Issued(id)).Apply(new CommandFailed(id, "gone", Now));
        }

        Assert.Equal(["b", "c"], state.Commands.Finished);
        Assert.False(state.Commands.IsFinished("a"));
        Assert.True(state.Commands.IsFinished("c"));
        Assert.Empty(state.Commands.InFlight);
    }

    [Fact]
    public void Answer_completes_only_a_command_in_flight()
    {
        var state = Enrolled().Apply(Issued("a"));

        Assert.Equal("a", state.Commands.DecideAnswer(new CommandResponse { CommandId = "a" }, Now)?.CommandId);
        Assert.Null(state.Commands.DecideAnswer(new CommandResponse { CommandId = "b" }, Now));
        var finished = state.Apply(new CommandCompleted("a", [], Now));
        Assert.Null(finished.Commands.DecideAnswer(new CommandResponse { CommandId = "a" }, Now));
    }

    [Fact]
    public void Retry_decision_fails_at_the_deadline_waits_without_a_stream_and_stops_after_the_attempts()
    {
        var book = Enrolled().Apply(Issued("a", deadline: Now.AddSeconds(10))).Commands;
        var once = book.Delivered("a");
        var thrice = once.Delivered("a").Delivered("a");

        Assert.IsType<CommandStep.Deliver>(once.DecideRetry("a", Now, streamAttached: true, maxAttempts: 3));
        Assert.Equal(new CommandStep.AwaitStream(TimeSpan.FromSeconds(10)),
            thrice.DecideRetry("a", Now, streamAttached: false, maxAttempts: 3));
        Assert.Equal("no answer after 3 deliveries",
            Assert.IsType<CommandStep.Fail>(thrice.DecideRetry("a", Now, true, 3)).Event.Reason);
        Assert.Equal("deadline passed after 1 deliveries without an answer",
            Assert.IsType<CommandStep.Fail>(once.DecideRetry("a", Now.AddSeconds(10), true, 3)).Event.Reason);
        Assert.IsType<CommandStep.Nothing>(once.DecideRetry("b", Now, true, 3));
    }

    [Fact]
    public void Revocation_fails_every_command_in_flight_once()
    {
        var state = Enrolled().Apply(Issued("a")).Apply(Issued("b"));

        var revoked = state.Decide(new RevokePeer("peer-1"), Now, "unused");

        Assert.Equal(
            [new PeerRevoked("peer-1"), new CommandFailed("a", "peer revoked", Now), new CommandFailed("b", "peer revoked", Now)],
            revoked.Events);
        Assert.Empty(revoked.State.Decide(new RevokePeer("peer-1"), Now, "unused").Events);
    }

    [Fact]
    public void Issued_command_is_a_copy_and_the_callers_command_is_left_alone()
    {
        var command = new Command { SetupExit = new SetupExit { AssignmentId = "x" } };

        var issued = Assert.IsType<IssueDecision.Issue>(
            Enrolled().Commands.DecideIssue(new IssueCommand("peer-1", command), "fresh", Now, TimeSpan.FromSeconds(30), Enrolled().Identity));

        Assert.Equal("", command.CommandId);
        Assert.Null(command.Deadline);
        var stored = Command.Parser.ParseFrom(issued.Event.Command);
        Assert.Equal("fresh", stored.CommandId);
        Assert.Equal(Now.AddSeconds(30), stored.Deadline.ToDateTimeOffset());
    }

    [Fact]
    public void Default_settings_back_off_exponentially_up_to_the_cap()
    {
        var settings = PeerSessionSettings.Default;

        Assert.Equal(
            [500, 1000, 2000, 4000, 5000, 5000],
            Enumerable.Range(0, 6).Select(n => settings.Backoff(n).TotalMilliseconds));
        Assert.Equal(TimeSpan.FromMilliseconds(3500), settings.WaitAfterDelivery(1));
        Assert.Equal(TimeSpan.FromMilliseconds(5000), settings.WaitAfterDelivery(3));
        Assert.Equal(TimeSpan.FromSeconds(3), settings.WaitAfterDelivery(settings.MaxAttempts)); // the last: ack timeout only
    }

    [Fact]
    public void Backoff_does_not_overflow_for_many_retries()
    {
        Assert.Equal(TimeSpan.FromSeconds(5), PeerSessionSettings.Default.Backoff(int.MaxValue));
    }

    public static TheoryData<PeerSessionSettings, string> InvalidSettings() => new()
    {
        { PeerSessionSettings.Default with { AckTimeout = TimeSpan.Zero }, "AckTimeout" },
        { PeerSessionSettings.Default with { MaxAttempts = 0 }, "MaxAttempts" },
        { PeerSessionSettings.Default with { MaxRetryBackoff = TimeSpan.FromMilliseconds(100) }, "MaxRetryBackoff" },
        { PeerSessionSettings.Default with { DefaultDeadline = TimeSpan.FromSeconds(-1) }, "DefaultDeadline" },
        { PeerSessionSettings.Default with { RememberCompleted = 0 }, "RememberCompleted" },
        { PeerSessionSettings.Default with { SnapshotEvery = 0 }, "SnapshotEvery" },
        { PeerSessionSettings.Default with { PassivateIdleAfter = TimeSpan.Zero }, "PassivateIdleAfter" },
    };

    [Theory]
    [MemberData(nameof(InvalidSettings))]
    public void Invalid_setting_is_named_when_validated(PeerSessionSettings settings, string name)
    {
        Assert.Equal(name, Assert.Throws<ArgumentException>(settings.Validate).ParamName);
    }

    private static PeerState Enrolled(int rememberCompleted = 10) =>
        PeerState.Empty("peer-1", "eu-west", rememberCompleted)
            .Apply(new PeerEnrolled(PeerRole.Client, new byte[32], "token-1", Now));

    private static CommandIssued Issued(string id, DateTimeOffset? deadline = null) =>
        new(id, new Command
        {
            CommandId = id,
            Deadline = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(deadline ?? Now.AddSeconds(30)),
        }.ToByteArray(), null, Now);
}
