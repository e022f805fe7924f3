using System.Text.Json;
using Google.Protobuf;
using MyDvpn.Protocol.Control;

namespace MyDvpn.Peer.Commands;

/// <summary>
/// <c>commands.jsonl</c> in the state directory: every command and its answer, one JSON object per line
/// (<c>command_id</c>, <c>kind</c>, <c>received_at</c>, <c>deadline</c>, <c>body</c> as protobuf JSON, <c>answer</c>, and
/// <c>result</c> for a SetupExitResult), flushed to disk before the answer is stored. Thread-safe.
/// </summary>
public sealed class CommandLog(string stateDir, TimeProvider time)
{
    public const string FileName = "commands.jsonl";

    private static readonly JsonFormatter BodyFormatter = new(JsonFormatter.Settings.Default.WithPreserveProtoFieldNames(true));

    private readonly SemaphoreSlim gate = new(1, 1);

    public string Path { get; } = System.IO.Path.Combine(stateDir, FileName);

    public async Task AppendAsync(Command command, CommandResponse response, CancellationToken cancellationToken)
    {
        var line = Line(command, response);
        await gate.WaitAsync(cancellationToken);
        try
        {
            await using var stream = OwnerOnly.Open(Path, FileMode.Append, FileAccess.Write, FileShare.Read, FileOptions.Asynchronous);
            await stream.WriteAsync(line, cancellationToken);
            await stream.FlushAsync(cancellationToken);
            stream.Flush(flushToDisk: true);
        }
        finally
        {
            gate.Release();
        }
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
            if (response.Result?.SetupExit is { } result)
            {
                json.WritePropertyName("result");
                json.WriteRawValue(BodyFormatter.Format(result));
            }
            json.WriteEndObject();
        }
        buffer.WriteByte((byte)'\n');
        return buffer.ToArray();
    }

    /// <summary>The body of whichever kind the command carries; null without one.</summary>
    private static IMessage? Body(Command command) =>
        Command.Descriptor.Oneofs.Single(o => o.Name == "body").Accessor.GetCaseFieldDescriptor(command)?.Accessor.GetValue(command) as IMessage;
}
