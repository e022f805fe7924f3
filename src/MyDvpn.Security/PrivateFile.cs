namespace MyDvpn.Security;

/// <summary>Writes secrets so that only the owner can read them (mode 0600 on Unix).</summary>
internal static class PrivateFile
{
    private const UnixFileMode OwnerReadWrite = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    /// <summary>Writes <paramref name="content"/>; with <paramref name="overwrite"/> false an existing file is an <see cref="IOException"/>.</summary>
    public static void Write(string path, string content, bool overwrite)
    {
        var options = new FileStreamOptions
        {
            Mode = overwrite ? FileMode.Create : FileMode.CreateNew,
            Access = FileAccess.Write,
            Share = FileShare.None,
        };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = OwnerReadWrite;
        }

        using var stream = new FileStream(path, options);
        if (!OperatingSystem.IsWindows())
        {
            // UnixCreateMode only applies to a new file; an overwritten one may have been readable by others.
            File.SetUnixFileMode(stream.SafeFileHandle, OwnerReadWrite);
        }

        using var writer = new StreamWriter(stream);
        writer.Write(content);
    }
}
