using MyDvpn.Hosting;

namespace MyDvpn.BaseNode.Enrollment;

/// <summary>Names of the enrollment's sharded entity types.</summary>
public static class EnrollmentEntityTypes
{
    public const string Token = "enrollment-token";
    public const string Revocations = "revocations";
}

/// <summary>Routes <see cref="IWithTokenId"/> messages to the token's <see cref="EnrollmentTokenEntity"/>.</summary>
public sealed class EnrollmentTokenMessageExtractor() : EntityMessageExtractor<IWithTokenId>(ShardCount, message => message.TokenId)
{
    public const int ShardCount = 50;
}

/// <summary>Routes every <see cref="IRevocationsCommand"/> to the single <see cref="RevocationsEntity"/>.</summary>
public sealed class RevocationsMessageExtractor() : EntityMessageExtractor<IRevocationsCommand>(shardCount: 1, _ => RevocationsEntity.EntityId);
