namespace MyDvpn.BaseNode.Directory;

/// <summary>
/// Timing of a region's directory. SuperNodes report every <paramref name="ReportInterval"/>; one silent for longer
/// than <paramref name="DownAfter"/> is marked down. A snapshot is saved every <paramref name="SnapshotEvery"/> events.
/// </summary>
public sealed record DirectorySettings(TimeSpan ReportInterval, TimeSpan DownAfter, int SnapshotEvery)
{
    public static readonly DirectorySettings Default = new(TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(6), 100);

    /// <summary>How often the entity looks for silent SuperNodes: a third of the grace period.</summary>
    public TimeSpan SilenceCheckInterval => DownAfter / 3;

    /// <summary>Throws <see cref="ArgumentException"/> naming the setting that is wrong and why.</summary>
    public void Validate()
    {
        if (ReportInterval <= TimeSpan.Zero)
        {
            throw new ArgumentException(
                $"{nameof(ReportInterval)} must be positive, was {ReportInterval}.", nameof(ReportInterval));
        }

        if (DownAfter <= ReportInterval)
        {
            throw new ArgumentException(
                $"{nameof(DownAfter)} ({DownAfter}) must be longer than {nameof(ReportInterval)} ({ReportInterval}), "
                + "or every SuperNode would be marked down between two reports.",
                nameof(DownAfter));
        }

        if (SnapshotEvery < 1)
        {
            throw new ArgumentException(
                $"{nameof(SnapshotEvery)} must be at least 1, was {SnapshotEvery}.", nameof(SnapshotEvery));
        }
    }
}
