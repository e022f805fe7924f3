using System.Text.Json.Nodes;
using Google.Protobuf;
using Google.Protobuf.Reflection;

namespace MyDvpn.Cli.Commands;

/// <summary>
/// The <c>--json</c> output of <c>mydvpn admin</c>: protobuf's JSON mapping (every field, default values too), with each
/// enum value in lower case without its type's prefix, as the tables show it (<c>up</c>, not <c>SUPER_NODE_STATUS_UP</c>;
/// <c>exit_lost</c>, not <c>ROTATION_REASON_EXIT_LOST</c>). A value this build does not know stays the number protobuf writes.
/// </summary>
public static class AdminJson
{
    private static readonly JsonFormatter Formatter = new(JsonFormatter.Settings.Default.WithFormatDefaultValues(true));

    public static string Format(IMessage message)
    {
        var node = JsonNode.Parse(Formatter.Format(message))!;
        Rewrite(node, message.Descriptor);
        return node.ToJsonString();
    }

    /// <summary><c>SUPER_NODE_STATUS_UP</c> of <c>SuperNodeStatus</c> → <c>up</c>; a name without the prefix just lower-cased.</summary>
    public static string EnumText(EnumValueDescriptor value)
    {
        var prefix = ScreamingSnake(value.EnumDescriptor.Name) + "_";
        var name = value.Name.StartsWith(prefix, StringComparison.Ordinal) && value.Name.Length > prefix.Length ? value.Name[prefix.Length..] : value.Name;
        return name.ToLowerInvariant();
    }

    private static void Rewrite(JsonNode? node, MessageDescriptor descriptor)
    {
        // Well-known types (Timestamp, Duration, …) have JSON forms of their own.
        if (node is not JsonObject json || descriptor.File.Package == "google.protobuf")
            return;
        foreach (var field in descriptor.Fields.InDeclarationOrder())
        {
            var element = field.IsMap ? field.MessageType.FindFieldByNumber(2) : field;
            switch (json[field.JsonName])
            {
                case JsonObject map when field.IsMap:
                    foreach (var key in map.Select(entry => entry.Key).ToList())
                        RewriteSlot(map[key], element, replacement => map[key] = replacement);
                    break;
                case JsonArray array when field.IsRepeated:
                    for (var i = 0; i < array.Count; i++)
                    {
                        var index = i;
                        RewriteSlot(array[i], element, replacement => array[index] = replacement);
                    }
                    break;
                case { } value:
                    RewriteSlot(value, element, replacement => json[field.JsonName] = replacement);
                    break;
            }
        }
    }

    /// <summary>A message is rewritten where it is; an enum's name is replaced through <paramref name="replace"/>.</summary>
    private static void RewriteSlot(JsonNode? value, FieldDescriptor field, Action<JsonNode> replace)
    {
        if (field.FieldType == FieldType.Message)
            Rewrite(value, field.MessageType);
        else if (field.FieldType == FieldType.Enum && value is JsonValue text && text.TryGetValue<string>(out var name)
                 && field.EnumType.FindValueByName(name) is { } known)
            replace(JsonValue.Create(EnumText(known)));
    }

    private static string ScreamingSnake(string pascal)
    {
        var text = new System.Text.StringBuilder(pascal.Length + 8);
        for (var i = 0; i < pascal.Length; i++)
        {
            if (i > 0 && char.IsUpper(pascal[i]) && !char.IsUpper(pascal[i - 1]))
                text.Append('_');
            text.Append(char.ToUpperInvariant(pascal[i]));
        }
        return text.ToString();
    }
}
