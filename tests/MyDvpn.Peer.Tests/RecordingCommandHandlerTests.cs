using System.Text.Json;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using MyDvpn.Peer.Commands;
using MyDvpn.Protocol.Control;

namespace MyDvpn.Peer.Tests;

public sealed class RecordingCommandHandlerTests : IDisposable
{
    private readonly TempDirectory temp = new();

    public void Dispose() => temp.Dispose();

    [Fact]
    public async Task Each_command_is_recorded_as_one_json_line_and_acknowledged_done()
    {
        var handler = new RecordingCommandHandler(temp.Path, TimeProvider.System);
        var deadline = new DateTimeOffset(2030, 1, 2, 3, 4, 5, TimeSpan.Zero);

        var relay = await handler.HandleAsync(new Command
        {
            CommandId = "cmd-1",
            Deadline = Timestamp.FromDateTimeOffset(deadline),
            RelaySetup = new RelaySetup { AssignmentId = "a-1", PeerPublicKey = ByteString.CopyFrom(1, 2, 3), RelayEndpoint = "198.51.100.1:40001" },
        }, CancellationToken.None);
        var disconnect = await handler.HandleAsync(new Command { CommandId = "cmd-2", Disconnect = new Disconnect { Reason = "drain" } }, CancellationToken.None);

        Assert.Equal(CommandResult.BodyOneofCase.Done, relay.Result.BodyCase);
        Assert.Equal(CommandResult.BodyOneofCase.Done, disconnect.Result.BodyCase);
        var lines = File.ReadAllLines(Path.Combine(temp.Path, RecordingCommandHandler.FileName));
        Assert.Equal(2, lines.Length);
        using var first = JsonDocument.Parse(lines[0]);
        var root = first.RootElement;
        Assert.Equal("cmd-1", root.GetProperty("command_id").GetString());
        Assert.Equal("relay_setup", root.GetProperty("kind").GetString());
        Assert.Equal(deadline, root.GetProperty("deadline").GetDateTimeOffset());
        Assert.True(root.GetProperty("received_at").TryGetDateTimeOffset(out _));
        Assert.Equal("198.51.100.1:40001", root.GetProperty("body").GetProperty("relay_endpoint").GetString());
        Assert.Equal("AQID", root.GetProperty("body").GetProperty("peer_public_key").GetString());
        Assert.Equal("done", root.GetProperty("answer").GetString());
        using var second = JsonDocument.Parse(lines[1]);
        Assert.Equal("disconnect", second.RootElement.GetProperty("kind").GetString());
        Assert.Equal("drain", second.RootElement.GetProperty("body").GetProperty("reason").GetString());
    }

    [Fact]
    public async Task SetupExit_is_answered_unsupported_rather_than_with_a_made_up_key()
    {
        var handler = new RecordingCommandHandler(temp.Path, TimeProvider.System);

        var answer = await handler.HandleAsync(new Command
        {
            CommandId = "cmd-1",
            SetupExit = new SetupExit { AssignmentId = "a-1", Peer = new WireGuardPeer { Endpoint = "198.51.100.2:51820" } },
        }, CancellationToken.None);

        Assert.Equal(CommandResponse.OutcomeOneofCase.Failure, answer.OutcomeCase);
        Assert.Equal(CommandError.Unsupported, answer.Failure.Code);
        Assert.Equal("the data plane arrives with a later issue", answer.Failure.Reason);
        var line = Assert.Single(File.ReadAllLines(handler.Path));
        Assert.Contains("\"kind\":\"setup_exit\"", line, StringComparison.Ordinal);
        Assert.Contains("COMMAND_ERROR_UNSUPPORTED", line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Command_without_a_body_is_answered_invalid()
    {
        var handler = new RecordingCommandHandler(temp.Path, TimeProvider.System);

        var answer = await handler.HandleAsync(new Command { CommandId = "cmd-1" }, CancellationToken.None);

        Assert.Equal(CommandError.Invalid, answer.Failure.Code);
    }
}
