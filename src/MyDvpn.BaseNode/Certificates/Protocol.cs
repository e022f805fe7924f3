namespace MyDvpn.BaseNode.Certificates;

/// <summary>A message for the directory's certificate revocation list (one entity, <see cref="CrlEntity.EntityId"/>).</summary>
public interface ICrlCommand
{
}

/// <summary>
/// Stores a list whose signature the caller verified against the operator CA. Reply: <see cref="CrlRecorded"/> or
/// <see cref="CrlRefused"/> (its number is not higher than the one held).
/// </summary>
public sealed record PublishCrl(ulong Number, byte[] Der) : ICrlCommand;

public sealed record CrlRecorded(ulong Number);

public sealed record CrlRefused(ulong HeldNumber, string Reason);

/// <summary>Reply: <see cref="CurrentCrl"/>. Cheap: every SuperNode report asks.</summary>
public sealed record GetCrl : ICrlCommand
{
    public static readonly GetCrl Instance = new();
}

/// <param name="Number">0: the directory holds no list.</param>
/// <param name="Der">Empty when none.</param>
public sealed record CurrentCrl(ulong Number, byte[] Der);
