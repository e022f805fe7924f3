using System.Text.Json;
using Google.Protobuf;
using MyDvpn.Protocol.Control;

namespace MyDvpn.Peer.Commands;

/// <summary>
/// The handler until the data plane lands: it changes nothing on the host. It appends what it was asked to
/// <c>commands.jsonl</c> in the state directory, one JSON object per line (<c>command_id</c>, <c>kind</c>,
/// <c>received_at</c>, <c>deadline</c>, <c>body</c> as protobuf JSON, <c>answer</c>), and acknowledges with
/// <c>done</c> — except SetupExit, which needs a WireGuard key it does not have: that is answered
/// <c>COMMAND_ERROR_UNSUPPORTED</c> rather than with a made-up key.
/// </summary>
public sealed class RecordingCommandHandler(string stateDir, TimeProvider time) : ICommandHandler
{
    public const string FileName = "commands.jsonl";
    public const string NoDataPlane = "the data plane arrives with a later issue";

    private static readonly JsonFormatter BodyFormatter = new(JsonFormatter.Settings.Default.WithPreserveProtoFieldNames(true));

    private readonly SemaphoreSlim gate = new(1, 1);

    public string Path { get; } = System.IO.Path.Combine(stateDir, FileName);

    public async Task<CommandResponse> HandleAsync(Command command, CancellationToken cancellationToken)
    {
        var response = command.BodyCase switch
        {
            Command.BodyOneofCase.None => CommandResponses.Failed(command.CommandId, CommandError.Invalid, "the command has no body"),
            Command.BodyOneofCase.SetupExit => CommandResponses.Failed(command.CommandId, CommandError.Unsupported, NoDataPlane),
            _ => CommandResponses.Done(command.CommandId),
        };
        await AppendAsync(Line(command, response), cancellationToken);
        return response;
    }

    private byte[] Line(Command command, CommandResponse response)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("command_id", command.CommandId);
            json.WriteString("kind", CommandResponses.KindOf(command));
            json.WriteString("received_at", time.GetUtcNow());
            if (command.Deadline is { } deadline)
                json.WriteString("deadline", deadline.ToDateTimeOffset());
            else
                json.WriteNull("deadline");
            json.WritePropertyName("body");
            if (Body(command) is { } body)
                json.WriteRawValue(BodyFormatter.Format(body));
            else
                json.WriteNullValue();
            json.WriteString("answer", response.OutcomeCase == CommandResponse.OutcomeOneofCase.Result
                ? "done"
                : $"failed: {CommandResponses.NameOf(response.Failure.Code)}: {response.Failure.Reason}");
            json.WriteEndObject();
        }
        buffer.WriteByte((byte)'\n');
        return buffer.ToArray();
    }

    private static IMessage? Body(Command command) => command.BodyCase switch
    {
        Command.BodyOneofCase.SetupExit => command.SetupExit,
        Command.BodyOneofCase.RemoveExit => command.RemoveExit,
        Command.BodyOneofCase.RotatePeer => command.RotatePeer,
        Command.BodyOneofCase.RelaySetup => command.RelaySetup,
        Command.BodyOneofCase.RelayTeardown => command.RelayTeardown,
        Command.BodyOneofCase.Disconnect => command.Disconnect,
        _ => null,
    };

    private async Task AppendAsync(byte[] line, CancellationToken cancellationToken)
    {
        await gate.WaitAsync(cancellationToken);
        try
        {
            await using var stream = new FileStream(Path, FileMode.Append, FileAccess.Write, FileShare.Read, 4096, FileOptions.Asynchronous);
            await stream.WriteAsync(line, cancellationToken);
            await stream.FlushAsync(cancellationToken);
            stream.Flush(flushToDisk: true);
        }
        finally
        {
            gate.Release();
        }
    }
}
