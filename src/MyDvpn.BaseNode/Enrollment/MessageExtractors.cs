using MyDvpn.Hosting;

namespace MyDvpn.BaseNode.Enrollment;

/// <summary>Names of the enrollment's sharded entity types.</summary>
public static class EnrollmentEntityTypes
{
    public const string Token = "enrollment-token";
    public const string Revocations = "revocations";
    public const string TokenIndex = "enrollment-token-index";
    public const string PeerRegistry = "enrollment-peer-registry";
}

/// <summary>Routes <see cref="IWithTokenId"/> messages to the token's <see cref="EnrollmentTokenEntity"/>.</summary>
public sealed class EnrollmentTokenMessageExtractor() : EntityMessageExtractor<IWithTokenId>(ShardCount, message => message.TokenId)
{
    public const int ShardCount = 50;
}

/// <summary>Routes every <see cref="IRevocationsCommand"/> to the single <see cref="RevocationsEntity"/>.</summary>
public sealed class RevocationsMessageExtractor() : EntityMessageExtractor<IRevocationsCommand>(shardCount: 1, _ => RevocationsEntity.EntityId);

/// <summary>Routes every <see cref="ITokenIndexCommand"/> to the single <see cref="TokenIndexEntity"/>.</summary>
public sealed class TokenIndexMessageExtractor() : EntityMessageExtractor<ITokenIndexCommand>(shardCount: 1, _ => TokenIndexEntity.EntityId);

/// <summary>Routes every <see cref="IPeerRegistryCommand"/> to the single <see cref="PeerRegistryEntity"/>.</summary>
public sealed class PeerRegistryMessageExtractor() : EntityMessageExtractor<IPeerRegistryCommand>(shardCount: 1, _ => PeerRegistryEntity.EntityId);
