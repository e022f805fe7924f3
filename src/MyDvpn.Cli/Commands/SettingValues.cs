using System.ComponentModel;
using System.Globalization;

namespace MyDvpn.Cli.Commands;

/// <summary>
/// What kind of value a setting takes, in words an operator reads ("a whole number", not <c>System.Int32</c>), and the
/// conversion the configuration binder makes, so that a value it would refuse is refused first with those words.
/// </summary>
public static class SettingValues
{
    /// <summary>The kind of value of <paramref name="type"/> in words; null for text (anything goes) and types not checked here.</summary>
    public static string? Describe(Type type)
    {
        type = Nullable.GetUnderlyingType(type) ?? type;
        if (type.IsEnum)
            return $"one of {string.Join(", ", EnumOption.NamesOf(type))}";
        return Type.GetTypeCode(type) switch
        {
            TypeCode.Byte or TypeCode.SByte or TypeCode.Int16 or TypeCode.UInt16 or TypeCode.Int32 or TypeCode.UInt32 or TypeCode.Int64
                or TypeCode.UInt64 => "a whole number",
            TypeCode.Single or TypeCode.Double or TypeCode.Decimal => "a number",
            TypeCode.Boolean => "true or false",
            _ when type == typeof(TimeSpan) => "a duration such as 00:00:30 (hh:mm:ss) or 1.00:00:00 (a day)",
            _ => null,
        };
    }

    /// <summary>Whether <paramref name="value"/> converts to <paramref name="type"/> as the configuration binder converts it.</summary>
    public static bool TryConvert(string value, Type type, out object? converted)
    {
        type = Nullable.GetUnderlyingType(type) ?? type;
        if (type.IsEnum)
            return EnumOption.TryParse(type, value, out converted);
        try
        {
            converted = TypeDescriptor.GetConverter(type).ConvertFromInvariantString(value);
            return converted is not null;
        }
        catch (Exception ex) when (ex is FormatException or ArgumentException or OverflowException or NotSupportedException)
        {
            converted = null;
            return false;
        }
    }

    /// <summary>The sentence for a value that is not of its kind: <c>'abc' is not a whole number</c>.</summary>
    public static string NotA(string value, Type type) =>
        string.Create(CultureInfo.InvariantCulture, $"'{value}' is not {Describe(type) ?? "a value of the right kind"}");
}
