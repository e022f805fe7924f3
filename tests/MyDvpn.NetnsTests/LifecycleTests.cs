using System.Diagnostics;
using System.Security.Cryptography;
using MyDvpn.HostOs;
using MyDvpn.Testbed;
using static MyDvpn.NetnsTests.NetnsTestHelpers;

namespace MyDvpn.NetnsTests;

public sealed class LifecycleTests
{
    [Fact]
    public async Task Dispose_deletes_every_namespace_and_kills_the_processes_running_in_them()
    {
        using var logs = new TempDirectory();
        await using var testbed = await CreateTestbedAsync();
        var listedBefore = await ListNamespacesAsync();
        Assert.All(testbed.Namespaces.All, name => Assert.Contains(name, listedBefore));

        var tracked = await testbed.StartAsync(TestbedRoles.Exit, "sleep", ["300"], null, logs.Sub("sleep.log"));
        // Started by a caller itself, not through the testbed: dispose still finds it in the namespace.
        using var untracked = Process.Start(testbed.For(TestbedRoles.Client).StartInfo("sleep", ["300"]))!;
        await EventuallyAsync(async () => (await PidsInAsync(testbed.Namespaces.Exit)).Contains(tracked.Id), "sleep runs in exit");
        await EventuallyAsync(async () => (await PidsInAsync(testbed.Namespaces.Client)).Contains(untracked.Id), "sleep runs in client");

        await testbed.DisposeAsync();

        Assert.True(tracked.HasExited);
        await untracked.WaitForExitAsync().WaitAsync(Bound);
        Assert.DoesNotContain(await ListNamespacesAsync(), name => name.StartsWith(testbed.Id + "-", StringComparison.Ordinal));
        Assert.False(File.Exists(testbed.OwnerFile));
    }

    [Fact]
    public async Task A_testbed_whose_owner_is_gone_is_removed_as_a_leftover_and_a_live_one_is_kept()
    {
        using var logs = new TempDirectory();
        using var bound = TestBound();
        await using var orphaned = await CreateTestbedAsync();
        await using var live = await CreateTestbedAsync();
        var stranded = await orphaned.StartAsync(TestbedRoles.Exit, "sleep", ["300"], null, logs.Sub("stranded.log"));
        await EventuallyAsync(async () => (await PidsInAsync(orphaned.Namespaces.Exit)).Contains(stranded.Id), "sleep runs in exit");

        // The orphan's owner becomes a process that has exited, as after a killed test run.
        using (var gone = Process.Start(new ProcessStartInfo("true"))!)
        {
            await gone.WaitForExitAsync(bound.Token);
            await File.WriteAllTextAsync(orphaned.OwnerFile, $"{gone.Id} 0\n", bound.Token);
        }

        var removed = await NetnsTestbed.RemoveLeftoversAsync(bound.Token);

        // (Another test's CreateAsync may have removed the orphan first: what counts is that it is gone.)
        Assert.DoesNotContain(live.Id, removed);
        var listed = await ListNamespacesAsync();
        Assert.DoesNotContain(listed, name => name.StartsWith(orphaned.Id + "-", StringComparison.Ordinal));
        Assert.All(live.Namespaces.All, name => Assert.Contains(name, listed));
        Assert.False(File.Exists(orphaned.OwnerFile));
        await stranded.WaitForExitAsync().WaitAsync(Bound);
        Assert.Equal("198.51.100.21", await live.HttpGetAsync(TestbedRoles.Client, live.EchoUrl, Bound));
    }

    [Fact]
    public async Task Namespaces_named_like_a_testbed_without_an_owner_file_are_leftovers_and_others_are_not_touched()
    {
        NetnsTestbed.CheckPrerequisites();
        using var bound = TestBound();
        var id = "tb" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(3));
        var leftover = $"{id}-sn-a";
        var unrelated = $"{id}-not-a-role";
        try
        {
            await HostCommand.Host.RunCheckedAsync("ip", ["netns", "add", leftover], cancellationToken: bound.Token);
            await HostCommand.Host.RunCheckedAsync("ip", ["netns", "add", unrelated], cancellationToken: bound.Token);

            await NetnsTestbed.RemoveLeftoversAsync(bound.Token);

            var listed = await ListNamespacesAsync();
            Assert.DoesNotContain(leftover, listed);
            Assert.Contains(unrelated, listed);
        }
        finally
        {
            foreach (var name in new[] { leftover, unrelated })
                await HostCommand.Host.RunAsync("ip", ["netns", "delete", name]);
        }
    }
}
