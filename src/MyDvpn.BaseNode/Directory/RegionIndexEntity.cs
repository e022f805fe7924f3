using System.Collections.Immutable;
using Akka.Actor;
using Akka.Persistence;
using MyDvpn.Common;

namespace MyDvpn.BaseNode.Directory;

/// <summary>
/// The set of known regions (sharded entity type <see cref="DirectoryEntityTypes.RegionIndex"/>, a single entity
/// <see cref="EntityId"/>). Regions are few and each is persisted once, so the journal stays short and no snapshots
/// are taken.
/// </summary>
public sealed class RegionIndexEntity : ReceivePersistentActor
{
    public const string EntityId = "regions";

    private ImmutableSortedSet<string> _regions = ImmutableSortedSet.Create<string>(StringComparer.Ordinal);

    public RegionIndexEntity()
    {
        Recover<RegionIndexed>(evt => _regions = _regions.Add(evt.Region));

        Command<AddRegion>(HandleAdd);
        Command<GetRegionNames>(_ => Sender.Tell(new RegionNames(_regions)));
    }

    public override string PersistenceId => "directory-region-index";

    public static Props Props() => Akka.Actor.Props.Create(() => new RegionIndexEntity());

    private void HandleAdd(AddRegion add)
    {
        var sender = Sender;
        if (!RegionName.IsValid(add.Region, out var reason))
        {
            // The edges validate first; an invalid name here is a bug in the caller and must not enter the journal.
            sender.Tell(new Status.Failure(new ArgumentException(reason, nameof(add))));
            return;
        }

        if (_regions.Contains(add.Region))
        {
            sender.Tell(new RegionAdded(add.Region));
            return;
        }

        Persist(new RegionIndexed(add.Region), evt =>
        {
            _regions = _regions.Add(evt.Region);
            sender.Tell(new RegionAdded(evt.Region));
        });
    }
}
