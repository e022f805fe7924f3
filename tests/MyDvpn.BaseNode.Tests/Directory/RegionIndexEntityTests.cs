using Akka.Actor;
using MyDvpn.BaseNode.Directory;
using Xunit.Abstractions;

namespace MyDvpn.BaseNode.Tests.Directory;

/// <summary>The region index over a real SQLite journal.</summary>
public sealed class RegionIndexEntityTests(ITestOutputHelper output) : SqliteTestKit(output)
{
    private const string PersistenceId = "directory-region-index";

    [Fact]
    public void Added_regions_are_listed_in_order()
    {
        var index = Sys.ActorOf(RegionIndexEntity.Props());

        Add(index, "us-east");
        Add(index, "eu-west");
        Add(index, "ap-south-1");

        Assert.Equal(["ap-south-1", "eu-west", "us-east"], Names(index));
    }

    [Fact]
    public void Adding_a_known_region_again_is_acknowledged_and_persists_nothing()
    {
        var index = Sys.ActorOf(RegionIndexEntity.Props());

        Add(index, "eu-west");
        Add(index, "eu-west");
        Add(index, "eu-west");

        Assert.Equal(["eu-west"], Names(index));
        Assert.Equal([new RegionIndexed("eu-west")], JournalEvents(PersistenceId));
    }

    [Fact]
    public void Regions_come_back_from_the_journal_after_a_restart()
    {
        var index = Sys.ActorOf(RegionIndexEntity.Props());
        Add(index, "eu-west");
        Add(index, "us-east");
        Stop(index);

        var recovered = Sys.ActorOf(RegionIndexEntity.Props());

        Assert.Equal(["eu-west", "us-east"], Names(recovered));
        Add(recovered, "eu-west");
        Assert.Equal(2, JournalEvents(PersistenceId).Count);
    }

    [Fact]
    public void Invalid_region_name_is_refused_and_not_persisted()
    {
        var index = Sys.ActorOf(RegionIndexEntity.Props());

        index.Tell(new AddRegion("EU_West"));

        var failure = ExpectMsg<Status.Failure>();
        Assert.IsType<ArgumentException>(failure.Cause);
        Assert.Empty(Names(index));
        Assert.Empty(JournalEvents(PersistenceId));
    }

    private void Add(IActorRef index, string region)
    {
        index.Tell(new AddRegion(region));
        ExpectMsg(new RegionAdded(region));
    }

    private IReadOnlyCollection<string> Names(IActorRef index)
    {
        index.Tell(GetRegionNames.Instance);
        return ExpectMsg<RegionNames>().Regions;
    }
}
