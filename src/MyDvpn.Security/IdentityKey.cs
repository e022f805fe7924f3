using Org.BouncyCastle.Crypto.Parameters;
using Org.BouncyCastle.Crypto.Signers;
using Org.BouncyCastle.Security;

namespace MyDvpn.Security;

/// <summary>An Ed25519 identity key: what a peer signs with, and what others know it by.</summary>
public sealed class IdentityKey
{
    private const string FilePrefix = "mydvpn-ed25519-private-key:";
    private const int SeedLength = 32, PublicKeyLength = 32, SignatureLength = 64;

    private readonly Ed25519PrivateKeyParameters _privateKey;
    private readonly byte[] _publicKey;

    private IdentityKey(Ed25519PrivateKeyParameters privateKey)
    {
        _privateKey = privateKey;
        _publicKey = privateKey.GeneratePublicKey().GetEncoded();
        PublicKeyBase64 = Convert.ToBase64String(_publicKey);
    }

    /// <summary>The 32-byte public key; a copy, so callers cannot change the identity.</summary>
    public byte[] PublicKey => (byte[])_publicKey.Clone();

    public string PublicKeyBase64 { get; }

    public static IdentityKey Generate() => new(new Ed25519PrivateKeyParameters(new SecureRandom()));

    /// <summary>
    /// Writes the key as one line <c>mydvpn-ed25519-private-key:BASE64(seed)</c>, readable by the owner only.
    /// Refuses to overwrite an existing file: replacing a key replaces the identity.
    /// </summary>
    public void Save(string path)
    {
        if (File.Exists(path))
        {
            throw new CertificateException(
                $"Identity key file '{path}' already exists: refusing to overwrite it, since a new key is a new identity. " +
                "Move the old file away first if that is what you want.");
        }

        try
        {
            var dir = Path.GetDirectoryName(Path.GetFullPath(path));
            if (dir is not null)
            {
                Directory.CreateDirectory(dir);
            }

            PrivateFile.Write(path, FilePrefix + Convert.ToBase64String(_privateKey.GetEncoded()) + "\n", overwrite: false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CertificateException($"Could not write identity key file '{path}': {e.Message}", e);
        }
    }

    public static IdentityKey Load(string path)
    {
        if (!File.Exists(path))
        {
            throw new CertificateException($"Identity key file '{path}' does not exist. Check the configured path.");
        }

        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CertificateException($"Could not read identity key file '{path}': {e.Message}", e);
        }

        var line = text.TrimEnd('\r', '\n');
        var seed = new byte[SeedLength];
        if (!line.StartsWith(FilePrefix, StringComparison.Ordinal)
            || !Convert.TryFromBase64String(line[FilePrefix.Length..], seed, out var written)
            || written != SeedLength)
        {
            throw new CertificateException(
                $"Identity key file '{path}' is malformed: expected a single line '{FilePrefix}' followed by the base64 " +
                "of a 32-byte Ed25519 seed. Restore the file from backup.");
        }

        return new IdentityKey(new Ed25519PrivateKeyParameters(seed));
    }

    /// <summary>A 64-byte Ed25519 signature of <paramref name="message"/>.</summary>
    public byte[] Sign(ReadOnlySpan<byte> message)
    {
        var signer = new Ed25519Signer();
        signer.Init(forSigning: true, _privateKey);
        signer.BlockUpdate(message);
        return signer.GenerateSignature();
    }

    /// <summary>Whether <paramref name="signature"/> is <paramref name="publicKey"/>'s signature of <paramref name="message"/>; false for malformed input.</summary>
    public static bool Verify(ReadOnlySpan<byte> publicKey, ReadOnlySpan<byte> message, ReadOnlySpan<byte> signature)
    {
        if (publicKey.Length != PublicKeyLength || signature.Length != SignatureLength)
        {
            return false;
        }

        Ed25519PublicKeyParameters key;
        try
        {
            key = new Ed25519PublicKeyParameters(publicKey);
        }
        catch (ArgumentException)
        {
            return false; // Not a point on the curve.
        }

        var verifier = new Ed25519Signer();
        verifier.Init(forSigning: false, key);
        verifier.BlockUpdate(message);
        return verifier.VerifySignature(signature.ToArray());
    }
}
