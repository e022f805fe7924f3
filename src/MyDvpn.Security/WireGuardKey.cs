using System.Security.Cryptography;
using Org.BouncyCastle.Crypto.Parameters;

namespace MyDvpn.Security;

/// <summary>
/// A WireGuard key pair (X25519 over Curve25519, BouncyCastle): the private key stays on the host, the public key is
/// what the other end of a tunnel accepts. Saved in <c>wg</c>'s own format, so <c>wg pubkey &lt; FILE</c> reads it.
/// </summary>
public sealed class WireGuardKey
{
    public const int KeyLength = 32;

    private readonly byte[] privateKey;
    private readonly byte[] publicKey;

    private WireGuardKey(byte[] privateKey)
    {
        this.privateKey = privateKey;
        publicKey = new X25519PrivateKeyParameters(privateKey).GeneratePublicKey().GetEncoded();
        PublicKeyBase64 = Convert.ToBase64String(publicKey);
    }

    /// <summary>The 32-byte public key; a copy, so callers cannot change the key.</summary>
    public byte[] PublicKey => (byte[])publicKey.Clone();

    public string PublicKeyBase64 { get; }

    /// <summary>The 32-byte private key, for configuring the interface (the data plane); a copy.</summary>
    public byte[] PrivateKey => (byte[])privateKey.Clone();

    /// <summary>A new random key, clamped as <c>wg genkey</c> clamps it.</summary>
    public static WireGuardKey Generate()
    {
        var key = RandomNumberGenerator.GetBytes(KeyLength);
        key[0] &= 0xF8;
        key[31] &= 0x7F;
        key[31] |= 0x40;
        return new WireGuardKey(key);
    }

    /// <summary>The key pair of a 32-byte private key (used as given: X25519 clamps it when computing).</summary>
    public static WireGuardKey FromPrivateKey(ReadOnlySpan<byte> privateKey)
    {
        if (privateKey.Length != KeyLength)
            throw new ArgumentException($"a WireGuard private key is {KeyLength} bytes, not {privateKey.Length}", nameof(privateKey));
        return new WireGuardKey(privateKey.ToArray());
    }

    /// <summary>Whether <paramref name="publicKey"/> has the length of a WireGuard public key.</summary>
    public static bool IsPublicKey(ReadOnlySpan<byte> publicKey) => publicKey.Length == KeyLength;

    /// <summary>
    /// Writes the private key as <c>wg genkey</c> does (one line, the base64 of the 32 bytes), readable by the owner
    /// only (mode 0600). The file appears whole or not at all: written to a temporary file, flushed, then renamed.
    /// Refuses to overwrite an existing file, since the old key may still be in use.
    /// </summary>
    public void Save(string path)
    {
        if (File.Exists(path))
            throw new CertificateException($"WireGuard key file '{path}' already exists: refusing to overwrite it. Move the old file away first if that is what you want.");
        var temporary = path + ".tmp";
        try
        {
            var dir = Path.GetDirectoryName(Path.GetFullPath(path));
            if (dir is not null)
                Directory.CreateDirectory(dir);
            var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write, Share = FileShare.None };
            if (!OperatingSystem.IsWindows())
                options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            using (var stream = new FileStream(temporary, options))
            {
                if (!OperatingSystem.IsWindows())
                    File.SetUnixFileMode(stream.SafeFileHandle, UnixFileMode.UserRead | UnixFileMode.UserWrite);
                stream.Write(System.Text.Encoding.ASCII.GetBytes(Convert.ToBase64String(privateKey) + "\n"));
                stream.Flush(flushToDisk: true);
            }
            File.Move(temporary, path, overwrite: false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            TryDelete(temporary);
            throw new CertificateException($"Could not write WireGuard key file '{path}': {e.Message}", e);
        }
    }

    /// <exception cref="CertificateException">The file is missing, unreadable or not a WireGuard private key.</exception>
    public static WireGuardKey Load(string path)
    {
        if (!File.Exists(path))
            throw new CertificateException($"WireGuard key file '{path}' does not exist.");
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CertificateException($"Could not read WireGuard key file '{path}': {e.Message}", e);
        }

        var key = new byte[KeyLength];
        if (!Convert.TryFromBase64String(text.Trim(), key, out var written) || written != KeyLength)
        {
            throw new CertificateException(
                $"WireGuard key file '{path}' is malformed: expected one line with the base64 of a {KeyLength}-byte private key, as `wg genkey` writes it.");
        }
        return new WireGuardKey(key);
    }

    /// <summary>The key in <paramref name="path"/>; a new one saved there first if the file does not exist.</summary>
    /// <exception cref="CertificateException">The file exists but is not a WireGuard private key, or cannot be written.</exception>
    public static WireGuardKey LoadOrCreate(string path)
    {
        if (File.Exists(path))
            return Load(path);
        var key = Generate();
        key.Save(path);
        return key;
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Left behind; the next save overwrites it.
        }
    }
}
