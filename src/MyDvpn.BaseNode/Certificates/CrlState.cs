namespace MyDvpn.BaseNode.Certificates;

/// <summary>
/// The certificate revocation list the directory holds: the latest the operator published, by CRL number. Pure:
/// <see cref="DecidePublish"/> turns an upload into an event or a refusal, <see cref="Apply"/> folds the event in.
/// </summary>
/// <param name="Number">The CRL number held; 0: none.</param>
/// <param name="Der">The list as signed (DER); empty when none.</param>
public sealed record CrlState(ulong Number, byte[] Der, DateTimeOffset? PublishedAt)
{
    public static readonly CrlState Empty = new(0, [], null);

    /// <summary>
    /// A list with a higher number than the one held becomes <see cref="CrlPublished"/>; any other is refused in words
    /// (an old list replayed would take revocations back). The list's signature was checked before.
    /// </summary>
    public (CrlPublished? Published, string Refusal) DecidePublish(ulong number, byte[] der, DateTimeOffset now) =>
        number > Number
            ? (new CrlPublished(number, der, now), "")
            : (null, number == Number
                ? $"the directory holds CRL number {Number} already; write a new list with `mydvpn ca crl` or `mydvpn ca revoke`"
                : $"CRL number {number} is older than CRL number {Number}, which the directory holds; publish the CA's current ca.crl");

    public CrlState Apply(CrlPublished evt)
    {
        if (evt.Number <= Number)
            throw new InvalidOperationException($"CRL number {evt.Number} follows CRL number {Number}: the numbers only grow");
        return new CrlState(evt.Number, evt.Der, evt.At);
    }

    /// <summary>Value equality over the contents (an array compares by reference).</summary>
    public bool Equals(CrlState? other) =>
        other is not null && Number == other.Number && PublishedAt == other.PublishedAt && Der.AsSpan().SequenceEqual(other.Der);

    public override int GetHashCode() => Number.GetHashCode();
}
