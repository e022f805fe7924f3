using Grpc.Core;

namespace MyDvpn.Protocol;

/// <summary>
/// The request header of a control stream that tells the SuperNode which certificate revocation list the peer holds
/// (its CRL number), so the AuthChallenge carries the SuperNode's list only when it is newer (<c>AuthChallenge.crl</c>).
/// </summary>
public static class CrlNumberHeader
{
    public const string Name = "mydvpn-crl-number";

    /// <summary>The number the headers name; 0 when they name none or something that is not a number (it only costs a longer challenge).</summary>
    public static ulong Read(Metadata headers) =>
        headers.GetValue(Name) is { } value && ulong.TryParse(value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var number)
            ? number
            : 0;

    public static Metadata For(ulong number) => new() { { Name, number.ToString(System.Globalization.CultureInfo.InvariantCulture) } };
}
