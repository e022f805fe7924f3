namespace MyDvpn.Packaging.Tests;

/// <summary>The systemd units of packaging/systemd: what they start, checked against the real command tree.</summary>
public sealed class SystemdUnitTests
{
    public static TheoryData<string> Units => new(Directory.GetFiles(Repository.PathOf("packaging/systemd"), "*.service").Select(Path.GetFileName)!);

    [Theory]
    [MemberData(nameof(Units))]
    public void Unit_starts_the_packaged_mydvpn_with_a_command_the_cli_accepts(string unit)
    {
        var execStart = Assert.Single(File.ReadAllLines(Repository.PathOf($"packaging/systemd/{unit}")), line => line.StartsWith("ExecStart=", StringComparison.Ordinal));
        var words = execStart["ExecStart=".Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(DebianPackageTests.Executable, words[0]);
        // Specifiers as systemd expands them: the state root, the credentials directory, the instance.
        var arguments = words.Skip(1).Select(word => word.Replace("%S", "/var/lib", StringComparison.Ordinal)
            .Replace("%d", $"/run/credentials/{unit}", StringComparison.Ordinal).Replace("%i", "laptop-1", StringComparison.Ordinal)).ToList();
        Assert.DoesNotContain(arguments, argument => argument.Contains('%', StringComparison.Ordinal));
        CommandTree.AssertAccepts(arguments, unit);
    }
}
