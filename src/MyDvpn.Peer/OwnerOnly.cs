namespace MyDvpn.Peer;

/// <summary>
/// The state directory and what the agent keeps in it are its owner's alone: the directory 0700, its files 0600, set
/// as they are created (never created open and narrowed after) and narrowed on start if an older agent left them
/// wider. Elsewhere than on Unix the modes do not apply and the calls only create.
/// </summary>
internal static class OwnerOnly
{
    public const UnixFileMode DirectoryMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    public const UnixFileMode FileMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    private const UnixFileMode GroupOrOther = ~(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);

    /// <summary>Creates <paramref name="path"/> mode 0700 (missing parents get the default mode); an existing one wider than that is narrowed to it.</summary>
    public static void CreateDirectory(string path)
    {
        if (OperatingSystem.IsWindows())
        {
            Directory.CreateDirectory(path);
            return;
        }
        var directory = Directory.CreateDirectory(path, DirectoryMode);
        if ((directory.UnixFileMode & GroupOrOther) != 0)
            File.SetUnixFileMode(path, DirectoryMode);
    }

    /// <summary>
    /// Opens <paramref name="path"/> as a <see cref="FileStream"/> would with these arguments; a file it creates is
    /// 0600 from the start, and an existing one wider than that is narrowed before anything is written.
    /// </summary>
    public static FileStream Open(string path, System.IO.FileMode mode, FileAccess access, FileShare share, FileOptions options = FileOptions.None)
    {
        var streamOptions = new FileStreamOptions { Mode = mode, Access = access, Share = share, Options = options };
        if (OperatingSystem.IsWindows())
            return new FileStream(path, streamOptions);
        streamOptions.UnixCreateMode = FileMode;
        var stream = new FileStream(path, streamOptions);
        try
        {
            if ((File.GetUnixFileMode(stream.SafeFileHandle) & GroupOrOther) != 0)
                File.SetUnixFileMode(stream.SafeFileHandle, FileMode);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
        return stream;
    }

    /// <summary>Creates <paramref name="path"/> empty and 0600 if it does not exist; narrows it to 0600 if it is wider.</summary>
    public static void Touch(string path)
    {
        using var _ = Open(path, System.IO.FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.ReadWrite);
    }

    /// <summary>Narrows an existing <paramref name="path"/> to 0600; nothing if there is none.</summary>
    public static void NarrowIfExists(string path)
    {
        if (!OperatingSystem.IsWindows() && File.Exists(path) && (File.GetUnixFileMode(path) & GroupOrOther) != 0)
            File.SetUnixFileMode(path, FileMode);
    }
}
