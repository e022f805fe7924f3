namespace MyDvpn.IntegrationTests;

public static class Eventually
{
    /// <summary>Polls until the condition holds, for at most 45 s.</summary>
    public static async Task Async(Func<Task<bool>> condition, string what, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(45));
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline)
                Assert.Fail($"timed out waiting until {what}");
            await Task.Delay(200);
        }
    }
}
