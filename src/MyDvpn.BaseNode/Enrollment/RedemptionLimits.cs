namespace MyDvpn.BaseNode.Enrollment;

/// <summary>
/// How many enrollment tokens the BaseNode redeems (Base:Redemptions:…): per calling SuperNode and from all SuperNodes
/// together, each a burst and a refill per second. Every SuperNode limits the logins with a token it takes per source
/// first; this bounds what the directory's token entities are asked whatever the SuperNodes let through.
/// </summary>
public sealed class RedemptionSettings
{
    public int PerSuperNodeBurst { get; init; } = 200;
    public double PerSuperNodePerSecond { get; init; } = 20;
    public int GlobalBurst { get; init; } = 1000;
    public double GlobalPerSecond { get; init; } = 100;

    public static readonly RedemptionSettings Default = new();

    /// <summary>Throws <see cref="ArgumentException"/> naming the setting that is wrong and why.</summary>
    public void Validate()
    {
        if (PerSuperNodeBurst < 1)
            throw new ArgumentException($"must be at least 1, was {PerSuperNodeBurst}", nameof(PerSuperNodeBurst));
        if (GlobalBurst < 1)
            throw new ArgumentException($"must be at least 1, was {GlobalBurst}", nameof(GlobalBurst));
        if (!(PerSuperNodePerSecond > 0))
            throw new ArgumentException($"must be above 0, was {PerSuperNodePerSecond}", nameof(PerSuperNodePerSecond));
        if (!(GlobalPerSecond > 0))
            throw new ArgumentException($"must be above 0, was {GlobalPerSecond}", nameof(GlobalPerSecond));
    }
}

/// <summary>What <c>mydvpn base</c> binds beside its cluster settings (Base:…).</summary>
public sealed class BaseNodeLimits
{
    public RedemptionSettings Redemptions { get; set; } = new();
}

/// <summary>
/// The BaseNode's limit on token redemptions: token buckets on its clock, one per calling SuperNode (by the id its
/// certificate names) and one for all. <see cref="Admit"/> answers null, or why not in words. Thread-safe.
/// </summary>
public sealed class RedemptionLimits(RedemptionSettings settings, TimeProvider time)
{
    private readonly Dictionary<string, Bucket> perSuperNode = new(StringComparer.Ordinal);
    private readonly Lock gate = new();
    private Bucket? global;

    public string? Admit(string superNodeId)
    {
        var now = time.GetUtcNow();
        lock (gate)
        {
            if (!perSuperNode.TryGetValue(superNodeId, out var own))
                perSuperNode[superNodeId] = own = new Bucket(settings.PerSuperNodeBurst, settings.PerSuperNodePerSecond, now);
            global ??= new Bucket(settings.GlobalBurst, settings.GlobalPerSecond, now);
            if (!own.CanTake(now))
            {
                return $"SuperNode {superNodeId} redeems at most {settings.PerSuperNodePerSecond} enrollment tokens a second "
                       + $"({settings.PerSuperNodeBurst} at once); retry later";
            }
            if (!global.CanTake(now))
                return $"the directory redeems at most {settings.GlobalPerSecond} enrollment tokens a second from all SuperNodes; retry later";
            own.Take();
            global.Take();
            return null;
        }
    }

    /// <summary>A token bucket that starts full.</summary>
    private sealed class Bucket(int burst, double perSecond, DateTimeOffset at)
    {
        private double tokens = burst;

        public bool CanTake(DateTimeOffset now)
        {
            tokens = Math.Min(burst, tokens + (Math.Max(0, (now - at).TotalSeconds) * perSecond));
            at = now;
            return tokens >= 1;
        }

        public void Take() => tokens--;
    }
}
