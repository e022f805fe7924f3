using System.CommandLine;
using System.CommandLine.Parsing;
using System.Text;

namespace MyDvpn.Cli.Commands;

/// <summary>
/// An option (or argument) whose value is one of an enum's members, given by name in kebab case (<c>key-compromise</c> for
/// <c>KeyCompromise</c>; case and hyphens do not matter). Anything else is refused naming the option and the values it
/// takes — never the enum's type name — and the values are its shell completions.
/// </summary>
public static class EnumOption
{
    public static Option<T> Create<T>(string name, string description)
        where T : struct, Enum
    {
        var option = new Option<T>(name)
        {
            Description = description,
            HelpName = string.Join('|', NamesOf(typeof(T))),
            CustomParser = result => Parse<T>(name, result),
        };
        // System.CommandLine completes an enum with its C# names; the names it takes replace them.
        option.CompletionSources.Clear();
        option.CompletionSources.Add(NamesOf(typeof(T)).ToArray());
        return option;
    }

    /// <summary>An argument that is one of <typeparamref name="T"/>'s members, likewise.</summary>
    public static Argument<T> Argument<T>(string name, string description)
        where T : struct, Enum
    {
        var argument = new Argument<T>(name)
        {
            Description = description,
            CustomParser = result => Parse<T>(name, result),
        };
        argument.CompletionSources.Clear();
        argument.CompletionSources.Add(NamesOf(typeof(T)).ToArray());
        return argument;
    }

    /// <summary>The name a member is given by on the command line: <c>KeyCompromise</c> → <c>key-compromise</c>.</summary>
    public static string NameOf(Enum value) => Kebab(value.ToString());

    public static IEnumerable<string> NamesOf(Type enumType) => Enum.GetValues(enumType).Cast<Enum>().Select(NameOf);

    /// <summary>The member named <paramref name="text"/> (kebab case or its C# name, any case; never a number).</summary>
    public static bool TryParse(Type enumType, string text, out object? value)
    {
        var bare = text.Replace("-", "", StringComparison.Ordinal);
        value = Enum.GetValues(enumType).Cast<Enum>()
            .FirstOrDefault(member => string.Equals(member.ToString(), bare, StringComparison.OrdinalIgnoreCase));
        return value is not null;
    }

    private static T Parse<T>(string name, ArgumentResult result)
        where T : struct, Enum
    {
        var text = result.Tokens.Count > 0 ? result.Tokens[^1].Value : "";
        if (TryParse(typeof(T), text, out var value))
            return (T)value!;
        result.AddError($"{name} '{text}' is not one of {string.Join(", ", NamesOf(typeof(T)))}");
        return default;
    }

    private static string Kebab(string name)
    {
        var text = new StringBuilder(name.Length + 4);
        for (var i = 0; i < name.Length; i++)
        {
            if (i > 0 && char.IsUpper(name[i]))
                text.Append('-');
            text.Append(char.ToLowerInvariant(name[i]));
        }
        return text.ToString();
    }
}
