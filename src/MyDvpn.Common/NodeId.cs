using System.Text.RegularExpressions;

namespace MyDvpn.Common;

/// <summary>Ids of SuperNodes and peers: what appears in logs, metrics labels and certificates.</summary>
public static partial class NodeId
{
    public static bool IsValid(string? id, out string reason)
    {
        reason = "";
        if (string.IsNullOrEmpty(id))
            reason = "is empty";
        else if (!Pattern().IsMatch(id))
            reason = "must be 1-64 characters of letters, digits, '.', '_' and '-', starting with a letter or digit";
        return reason.Length == 0;
    }

    // \z, not $: $ also matches before a trailing newline.
    [GeneratedRegex(@"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\z")]
    private static partial Regex Pattern();
}
