using Google.Protobuf.Reflection;

namespace MyDvpn.Protocol.Control;

/// <summary>
/// The kinds of <see cref="Command"/> as metrics label them (<c>kind</c>): the name of the command's field in
/// <c>control.proto</c> (<c>setup_exit</c>, <c>relay_teardown</c>), one place for the SuperNode that issues them and the peer
/// that applies them. A bounded set: a command without a body is <c>none</c>.
/// </summary>
public static class CommandKinds
{
    private static readonly OneofDescriptor Body = Command.Descriptor.Oneofs.Single(o => o.Name == "body");

    /// <summary>Every kind, <c>none</c> last.</summary>
    public static IReadOnlyList<string> All { get; } = [.. Body.Fields.Select(f => f.Name), None];

    public const string None = "none";

    public static string Label(Command.BodyOneofCase kind) =>
        Body.Fields.FirstOrDefault(f => f.FieldNumber == (int)kind)?.Name ?? None;

    public static string Label(Command command) => Label(command.BodyCase);
}
