namespace MyDvpn.Packaging.Tests;

/// <summary>This repository's files, found from the test's build output (tests/…/bin/…) upwards.</summary>
internal static class Repository
{
    public static string Root { get; } = Find();

    public static string PathOf(string relative) => Path.Combine(Root, relative);

    private static string Find()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "myDvpn.sln")))
                return directory.FullName;
        }
        throw new InvalidOperationException($"no myDvpn.sln above {AppContext.BaseDirectory}: the tests read the repository's files");
    }
}
