using System.Runtime.Serialization;
using Akka.Actor;
using Akka.Configuration;
using Akka.Serialization;
using Google.Protobuf;
using MyDvpn.Protocol.Control;

namespace MyDvpn.SuperNode.Sessions;

/// <summary>
/// Serializes the session messages that carry protobuf messages between the nodes of a region (the edge of a stream
/// and the session of its peer are often on different SuperNodes). Akka's default JSON serializer cannot read a
/// <see cref="ByteString"/> back, so these go as protobuf wire format: one field per record member, protobuf messages
/// embedded as bytes, unknown fields skipped (a newer node may add some). Bind it with <see cref="Configuration"/>.
/// </summary>
public sealed class PeerSessionSerializer(ExtendedActorSystem system) : SerializerWithStringManifest(system)
{
    public const int SerializerId = 7_410_101;

    private const string DeliverCommandManifest = "deliver-command";
    private const string CommandAnsweredManifest = "command-answered";
    private const string IssueCommandManifest = "issue-command";
    private const string CommandOutcomeManifest = "command-outcome";
    private const string CommandOutcomeForManifest = "command-outcome-for";
    private const string SendToPeerManifest = "send-to-peer";

    /// <summary>The message types this serializer is for.</summary>
    public static readonly IReadOnlyList<Type> BoundTypes =
        [typeof(DeliverCommand), typeof(CommandAnswered), typeof(IssueCommand), typeof(CommandOutcome), typeof(CommandOutcomeFor), typeof(SendToPeer)];

    /// <summary>HOCON that registers this serializer as <c>peer-session</c> and binds <see cref="BoundTypes"/> to it.</summary>
    public static Config Configuration { get; } = ConfigurationFactory.ParseString(
        $"akka.actor.serializers.peer-session = \"{TypeName(typeof(PeerSessionSerializer))}\"\n"
        + string.Concat(BoundTypes.Select(t => $"akka.actor.serialization-bindings.\"{TypeName(t)}\" = peer-session\n")));

    public override int Identifier => SerializerId;

    public override string Manifest(object o) => o switch
    {
        DeliverCommand => DeliverCommandManifest,
        CommandAnswered => CommandAnsweredManifest,
        IssueCommand => IssueCommandManifest,
        CommandOutcome => CommandOutcomeManifest,
        CommandOutcomeFor => CommandOutcomeForManifest,
        SendToPeer => SendToPeerManifest,
        _ => throw new ArgumentException($"{nameof(PeerSessionSerializer)} cannot serialize {o.GetType()}", nameof(o)),
    };

    public override byte[] ToBinary(object obj) => obj switch
    {
        DeliverCommand m => Write(w => w.Message(1, m.Command)),
        CommandAnswered m => Write(w => w.String(1, m.PeerId).Message(2, m.Response)),
        IssueCommand m => Write(w => w.String(1, m.PeerId).Message(2, m.Command).String(3, m.ReplyToPeerId)),
        CommandOutcome m => Write(w => WriteOutcome(w, m)),
        CommandOutcomeFor m => Write(w => w.String(1, m.PeerId).Bytes(2, Write(o => WriteOutcome(o, m.Outcome)))),
        SendToPeer m => Write(w => w.Message(1, m.Message)),
        _ => throw new ArgumentException($"{nameof(PeerSessionSerializer)} cannot serialize {obj.GetType()}", nameof(obj)),
    };

    public override object FromBinary(byte[] bytes, string manifest)
    {
        var fields = Read(bytes);
        return manifest switch
        {
            DeliverCommandManifest => new DeliverCommand(fields.Message(1, Command.Parser)),
            CommandAnsweredManifest => new CommandAnswered(fields.String(1), fields.Message(2, CommandResponse.Parser)),
            IssueCommandManifest => new IssueCommand(fields.String(1), fields.Message(2, Command.Parser), fields.OptionalString(3)),
            CommandOutcomeManifest => ReadOutcome(fields),
            CommandOutcomeForManifest => new CommandOutcomeFor(fields.String(1), ReadOutcome(Read(fields.Bytes(2)))),
            SendToPeerManifest => new SendToPeer(fields.Message(1, ControlMessage.Parser)),
            _ => throw new SerializationException($"{nameof(PeerSessionSerializer)} does not know manifest '{manifest}'"),
        };
    }

    private static string TypeName(Type type) => $"{type.FullName}, {type.Assembly.GetName().Name}";

    private static FieldWriter WriteOutcome(FieldWriter w, CommandOutcome outcome) =>
        w.String(1, outcome.PeerId).String(2, outcome.CommandId).Message(3, outcome.Response).String(4, outcome.FailureReason);

    private static CommandOutcome ReadOutcome(Fields fields) =>
        new(fields.String(1), fields.String(2), fields.OptionalMessage(3, CommandResponse.Parser), fields.OptionalString(4));

    private static byte[] Write(Action<FieldWriter> write)
    {
        using var buffer = new MemoryStream();
        using (var output = new CodedOutputStream(buffer, leaveOpen: true))
        {
            write(new FieldWriter(output));
        }

        return buffer.ToArray();
    }

    private static Fields Read(byte[] bytes)
    {
        var fields = new Dictionary<int, ByteString>();
        var input = new CodedInputStream(bytes);
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            if (WireFormat.GetTagWireType(tag) == WireFormat.WireType.LengthDelimited)
            {
                fields[WireFormat.GetTagFieldNumber(tag)] = input.ReadBytes();
            }
            else
            {
                input.SkipLastField();
            }
        }

        return new Fields(fields);
    }

    /// <summary>Writes length-delimited fields; a null value is left out (that is how "absent" is told apart).</summary>
    private sealed class FieldWriter(CodedOutputStream output)
    {
        public FieldWriter String(int field, string? value) => value is null ? this : Bytes(field, ByteString.CopyFromUtf8(value));

        public FieldWriter Message(int field, IMessage? value) => value is null ? this : Bytes(field, value.ToByteString());

        public FieldWriter Bytes(int field, byte[] value) => Bytes(field, ByteString.CopyFrom(value));

        private FieldWriter Bytes(int field, ByteString value)
        {
            output.WriteTag(field, WireFormat.WireType.LengthDelimited);
            output.WriteBytes(value);
            return this;
        }
    }

    private sealed class Fields(Dictionary<int, ByteString> fields)
    {
        public string String(int field) =>
            OptionalString(field) ?? throw new SerializationException($"field {field} is missing");

        public string? OptionalString(int field) => fields.TryGetValue(field, out var value) ? value.ToStringUtf8() : null;

        public T Message<T>(int field, MessageParser<T> parser)
            where T : class, IMessage<T> =>
            OptionalMessage(field, parser) ?? throw new SerializationException($"field {field} is missing");

        public T? OptionalMessage<T>(int field, MessageParser<T> parser)
            where T : class, IMessage<T> =>
            fields.TryGetValue(field, out var value) ? parser.ParseFrom(value) : null;

        public byte[] Bytes(int field) =>
            fields.TryGetValue(field, out var value) ? value.ToByteArray() : throw new SerializationException($"field {field} is missing");
    }
}
