using Google.Protobuf.WellKnownTypes;
using MyDvpn.Protocol.Directory;

namespace MyDvpn.SuperNode.Tests;

public sealed class DirectoryCacheTests : IDisposable
{
    private readonly TempDirectory temp = new();

    public void Dispose() => temp.Dispose();

    [Fact]
    public void Without_a_file_the_cache_is_empty()
    {
        var cache = new DirectoryCache(temp.Path);

        Assert.Equal(new RegionList(), cache.Regions);
        Assert.Equal(Path.Combine(temp.Path, DirectoryCache.FileName), cache.Path);
        Assert.False(File.Exists(cache.Path));
    }

    [Fact]
    public async Task Saved_regions_are_what_a_new_cache_on_the_same_directory_loads()
    {
        var regions = SampleRegions();
        var cache = new DirectoryCache(temp.Path);

        await cache.SaveAsync(regions, CancellationToken.None);

        Assert.Equal(regions, cache.Regions);
        Assert.Equal(regions, new DirectoryCache(temp.Path).Regions);
    }

    [Fact]
    public async Task A_later_save_replaces_the_earlier_one()
    {
        var cache = new DirectoryCache(temp.Path);
        await cache.SaveAsync(SampleRegions(), CancellationToken.None);
        var latest = new RegionList { Regions = { new RegionEntry { Region = "ap-south" } } };

        await cache.SaveAsync(latest, CancellationToken.None);

        Assert.Equal(latest, cache.Regions);
        Assert.Equal(latest, new DirectoryCache(temp.Path).Regions);
    }

    [Fact]
    public async Task Saving_leaves_no_temporary_file_behind()
    {
        var cache = new DirectoryCache(temp.Path);

        await cache.SaveAsync(SampleRegions(), CancellationToken.None);
        await cache.SaveAsync(SampleRegions(), CancellationToken.None);

        Assert.Equal([cache.Path], Directory.GetFiles(temp.Path));
    }

    [Theory]
    [InlineData("{\"regions\": [{\"region\": \"eu-west\", \"supernodes\": 7}]}")]
    [InlineData("{\"regions\": [], \"fromAFutureVersion\": true}")]
    [InlineData("[1, 2, 3]")]
    public void A_JSON_file_of_the_wrong_shape_gives_an_empty_cache(string content)
    {
        File.WriteAllText(Path.Combine(temp.Path, DirectoryCache.FileName), content);

        var cache = new DirectoryCache(temp.Path);

        Assert.Equal(new RegionList(), cache.Regions);
    }

    [Theory]
    [InlineData("{\"regions\": [{\"region\": \"eu-we")] // cut off mid-write
    [InlineData("this is not JSON")]
    [InlineData("")]
    public void A_file_that_is_not_JSON_gives_an_empty_cache(string content)
    {
        File.WriteAllText(Path.Combine(temp.Path, DirectoryCache.FileName), content);

        var cache = new DirectoryCache(temp.Path);

        Assert.Equal(new RegionList(), cache.Regions);
    }

    [Fact]
    public async Task A_damaged_file_is_replaced_by_the_next_save()
    {
        File.WriteAllText(Path.Combine(temp.Path, DirectoryCache.FileName), "{\"regions\": 5}");
        var cache = new DirectoryCache(temp.Path);

        await cache.SaveAsync(SampleRegions(), CancellationToken.None);

        Assert.Equal(SampleRegions(), new DirectoryCache(temp.Path).Regions);
    }

    internal static RegionList SampleRegions()
    {
        var at = Timestamp.FromDateTime(new DateTime(2025, 3, 1, 12, 30, 0, DateTimeKind.Utc));
        return new RegionList
        {
            Regions =
            {
                new RegionEntry
                {
                    Region = "eu-west",
                    Supernodes =
                    {
                        new SuperNodeEntry
                        {
                            Registration = new SuperNodeRegistration
                            {
                                SupernodeId = "super-1",
                                Region = "eu-west",
                                GrpcEndpoint = "203.0.113.7:7443",
                                PublicIp = "203.0.113.7",
                                RelayPortLow = 40000,
                                RelayPortHigh = 40999,
                                Capacity = 1000,
                            },
                            Load = new SuperNodeLoad { ConnectedPeers = 12, ExitsAvailable = 3 },
                            Status = SuperNodeStatus.Up,
                            RegisteredAt = at,
                            LastReportAt = at,
                        },
                    },
                },
                new RegionEntry { Region = "us-east" },
            },
        };
    }
}
