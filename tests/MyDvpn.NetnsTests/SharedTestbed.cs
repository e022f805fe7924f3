using MyDvpn.Testbed;

namespace MyDvpn.NetnsTests;

/// <summary>One testbed for a class whose tests only look (no rule changes); created and torn down around the class.</summary>
public sealed class SharedTestbed : IAsyncLifetime
{
    private NetnsTestbed? _testbed;

    /// <summary>Creation fails (not root, a program missing) → every test of the class fails with that reason.</summary>
    public NetnsTestbed Testbed => _testbed ?? throw new InvalidOperationException("the testbed was not created");

    public async Task InitializeAsync() => _testbed = await NetnsTestHelpers.CreateTestbedAsync();

    public async Task DisposeAsync()
    {
        if (_testbed is not null)
            await _testbed.DisposeAsync();
    }
}
