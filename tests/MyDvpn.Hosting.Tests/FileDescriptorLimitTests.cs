namespace MyDvpn.Hosting.Tests;

public sealed class FileDescriptorLimitTests
{
    [Fact]
    public void The_limit_is_read_on_Linux_and_matches_proc()
    {
        Assert.True(OperatingSystem.IsLinux(), "the SuperNode's file-descriptor check is for Linux hosts");
        var line = File.ReadLines("/proc/self/limits").Single(l => l.StartsWith("Max open files", StringComparison.Ordinal));
        var soft = line["Max open files".Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries)[0];
        var expected = soft == "unlimited" ? ulong.MaxValue : ulong.Parse(soft, System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal(expected, FileDescriptorLimit.Current());
    }
}
