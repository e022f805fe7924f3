using System.Diagnostics.CodeAnalysis;

namespace MyDvpn.Common;

/// <summary>
/// The rule for region names: 1–32 characters of lowercase ASCII letters, digits and '-', starting with a letter
/// and not ending with '-' (so a name is safe in a cluster role, a persistence id and a DNS label).
/// </summary>
public static class RegionName
{
    public const int MaxLength = 32;

    /// <param name="region">The candidate name.</param>
    /// <param name="reason">Why the name is invalid; empty when it is valid.</param>
    public static bool IsValid([NotNullWhen(true)] string? region, out string reason)
    {
        reason = Check(region) ?? string.Empty;
        return reason.Length == 0;
    }

    private static string? Check(string? region)
    {
        if (string.IsNullOrEmpty(region))
        {
            return "a region name must not be empty";
        }

        if (region.Length > MaxLength)
        {
            return $"region name '{region}' is {region.Length} characters long; at most {MaxLength} are allowed";
        }

        if (region[0] is < 'a' or > 'z')
        {
            return $"region name '{region}' must start with a lowercase letter (a-z)";
        }

        if (region[^1] == '-')
        {
            return $"region name '{region}' must not end with '-'";
        }

        var bad = region.FirstOrDefault(c => c is not ((>= 'a' and <= 'z') or (>= '0' and <= '9') or '-'));
        return bad == default
            ? null
            : $"region name '{region}' contains '{bad}'; only lowercase letters (a-z), digits and '-' are allowed";
    }
}
