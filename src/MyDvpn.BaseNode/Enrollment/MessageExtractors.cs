using Akka.Cluster.Sharding;

namespace MyDvpn.BaseNode.Enrollment;

/// <summary>Names of the enrollment's sharded entity types.</summary>
public static class EnrollmentEntityTypes
{
    public const string Token = "enrollment-token";
    public const string Revocations = "revocations";
}

/// <summary>Routes <see cref="IWithTokenId"/> messages to the token's <see cref="EnrollmentTokenEntity"/>.</summary>
public sealed class EnrollmentTokenMessageExtractor : HashCodeMessageExtractor
{
    public const int ShardCount = 50;

    public EnrollmentTokenMessageExtractor()
        : base(ShardCount)
    {
    }

    public override string? EntityId(object message) => message switch
    {
        IWithTokenId withTokenId => withTokenId.TokenId,
        _ => null,
    };
}

/// <summary>Routes every <see cref="IRevocationsCommand"/> to the single <see cref="RevocationsEntity"/>.</summary>
public sealed class RevocationsMessageExtractor : HashCodeMessageExtractor
{
    public RevocationsMessageExtractor()
        : base(maxNumberOfShards: 1)
    {
    }

    public override string? EntityId(object message) => message switch
    {
        IRevocationsCommand => RevocationsEntity.EntityId,
        _ => null,
    };
}
