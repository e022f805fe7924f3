using System.Text;

namespace MyDvpn.Security.Tests;

public sealed class IdentityKeyTests : IDisposable
{
    private static readonly byte[] Message = Encoding.UTF8.GetBytes("join region eu-west as peer 7");

    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void Signature_made_with_a_key_verifies_with_its_public_key()
    {
        var key = IdentityKey.Generate();

        var signature = key.Sign(Message);

        Assert.Equal(64, signature.Length);
        Assert.Equal(32, key.PublicKey.Length);
        Assert.Equal(Convert.ToBase64String(key.PublicKey), key.PublicKeyBase64);
        Assert.True(IdentityKey.Verify(key.PublicKey, Message, signature));
    }

    [Fact]
    public void Tampered_message_does_not_verify()
    {
        var key = IdentityKey.Generate();
        var signature = key.Sign(Message);
        var tampered = (byte[])Message.Clone();
        tampered[0] ^= 1;

        Assert.False(IdentityKey.Verify(key.PublicKey, tampered, signature));
    }

    [Fact]
    public void Signature_does_not_verify_under_another_key()
    {
        var signature = IdentityKey.Generate().Sign(Message);

        Assert.False(IdentityKey.Verify(IdentityKey.Generate().PublicKey, Message, signature));
    }

    [Theory]
    [InlineData(31, 64)]
    [InlineData(33, 64)]
    [InlineData(32, 63)]
    [InlineData(32, 0)]
    [InlineData(0, 64)]
    public void Verify_returns_false_for_wrong_lengths(int publicKeyLength, int signatureLength)
    {
        var key = IdentityKey.Generate();
        var publicKey = key.PublicKey.Concat(new byte[1]).Take(publicKeyLength).ToArray();
        var signature = key.Sign(Message).Concat(new byte[1]).Take(signatureLength).ToArray();

        Assert.False(IdentityKey.Verify(publicKey, Message, signature));
    }

    [Fact]
    public void Verify_returns_false_for_a_public_key_that_is_not_a_curve_point()
    {
        var signature = IdentityKey.Generate().Sign(Message);
        var notAPoint = Enumerable.Repeat((byte)0xFF, 32).ToArray(); // y >= p

        Assert.False(IdentityKey.Verify(notAPoint, Message, signature));
    }

    [Fact]
    public void PublicKey_cannot_be_changed_through_the_returned_array()
    {
        var key = IdentityKey.Generate();
        var expected = key.PublicKeyBase64;

        key.PublicKey[0] ^= 1;

        Assert.Equal(expected, Convert.ToBase64String(key.PublicKey));
    }

    [Fact]
    public void Saved_key_loads_back_as_the_same_identity()
    {
        var path = _temp.Sub("identity.key");
        var key = IdentityKey.Generate();

        key.Save(path);
        var loaded = IdentityKey.Load(path);

        Assert.Equal(key.PublicKeyBase64, loaded.PublicKeyBase64);
        Assert.True(IdentityKey.Verify(key.PublicKey, Message, loaded.Sign(Message)));
        var text = File.ReadAllText(path);
        Assert.StartsWith("mydvpn-ed25519-private-key:", text);
        Assert.EndsWith("\n", text);
        Assert.Single(text.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public void Saved_key_file_is_readable_by_the_owner_only()
    {
        if (OperatingSystem.IsWindows())
        {
            return; // No Unix file modes there.
        }

        var path = _temp.Sub("identity.key");

        IdentityKey.Generate().Save(path);

        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
    }

    [Fact]
    public void Save_refuses_to_overwrite_an_existing_key()
    {
        var path = _temp.Sub("identity.key");
        var original = IdentityKey.Generate();
        original.Save(path);

        var error = Assert.Throws<CertificateException>(() => IdentityKey.Generate().Save(path));

        Assert.Contains("already exists", error.Message);
        Assert.Equal(original.PublicKeyBase64, IdentityKey.Load(path).PublicKeyBase64);
    }

    [Fact]
    public void Loading_a_missing_key_file_names_it()
    {
        var path = _temp.Sub("absent.key");

        var error = Assert.Throws<CertificateException>(() => IdentityKey.Load(path));

        Assert.Contains(path, error.Message);
        Assert.Contains("does not exist", error.Message);
    }

    [Theory]
    [InlineData("")]
    [InlineData("garbage")]
    [InlineData("mydvpn-ed25519-private-key:")]
    [InlineData("mydvpn-ed25519-private-key:not base64!")]
    [InlineData("mydvpn-ed25519-private-key:AAAA\n")] // 3 bytes
    [InlineData("mydvpn-ed25519-private-key:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n")] // 36 bytes
    [InlineData("wrong-prefix:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")]
    public void Loading_a_malformed_key_file_says_what_the_format_is(string content)
    {
        var path = _temp.Sub("bad.key");
        File.WriteAllText(path, content);

        var error = Assert.Throws<CertificateException>(() => IdentityKey.Load(path));

        Assert.Contains(path, error.Message);
        Assert.Contains("malformed", error.Message);
        Assert.Contains("mydvpn-ed25519-private-key:", error.Message);
    }

    [Fact]
    public void Key_file_with_a_CRLF_line_ending_still_loads()
    {
        var path = _temp.Sub("identity.key");
        var key = IdentityKey.Generate();
        key.Save(path);
        File.WriteAllText(path, File.ReadAllText(path).Replace("\n", "\r\n"));

        Assert.Equal(key.PublicKeyBase64, IdentityKey.Load(path).PublicKeyBase64);
    }
}

public sealed class PeerAuthTranscriptTests
{
    private static readonly byte[] ServerA = System.Security.Cryptography.SHA256.HashData("certificate A"u8);
    private static readonly byte[] ServerB = System.Security.Cryptography.SHA256.HashData("certificate B"u8);

    [Fact]
    public void A_signature_for_one_server_certificate_does_not_verify_for_another()
    {
        var key = IdentityKey.Generate();
        var challenge = new byte[32];
        Random.Shared.NextBytes(challenge);

        var signature = key.Sign(PeerAuthTranscript.Encode("peer-1", 1, "eu-west", challenge, "sn-1", ServerA));

        Assert.True(IdentityKey.Verify(key.PublicKey, PeerAuthTranscript.Encode("peer-1", 1, "eu-west", challenge, "sn-1", ServerA), signature));
        Assert.False(IdentityKey.Verify(key.PublicKey, PeerAuthTranscript.Encode("peer-1", 1, "eu-west", challenge, "sn-1", ServerB), signature));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(31)]
    [InlineData(33)]
    public void A_channel_binding_that_is_not_a_SHA256_is_refused(int length)
    {
        var error = Assert.Throws<ArgumentException>(() => PeerAuthTranscript.Encode("p", 1, "r", [9], "s", new byte[length]));

        Assert.Contains($"got {length}", error.Message);
    }

    [Fact]
    public void Moving_bytes_between_fields_changes_the_transcript()
    {
        var challenge = new byte[] { 1, 2, 3 };
        Assert.NotEqual(
            PeerAuthTranscript.Encode("ab", 1, "c", challenge, "sn", ServerA),
            PeerAuthTranscript.Encode("a", 1, "bc", challenge, "sn", ServerA));
    }

    [Fact]
    public void A_signature_over_the_transcript_verifies_only_for_the_same_fields()
    {
        var key = IdentityKey.Generate();
        var challenge = new byte[32];
        Random.Shared.NextBytes(challenge);
        var signature = key.Sign(PeerAuthTranscript.Encode("peer-1", 1, "eu-west", challenge, "sn-1", ServerA));
        Assert.True(IdentityKey.Verify(key.PublicKey, PeerAuthTranscript.Encode("peer-1", 1, "eu-west", challenge, "sn-1", ServerA), signature));
        Assert.False(IdentityKey.Verify(key.PublicKey, PeerAuthTranscript.Encode("peer-1", 2, "eu-west", challenge, "sn-1", ServerA), signature));
        Assert.False(IdentityKey.Verify(key.PublicKey, PeerAuthTranscript.Encode("peer-1", 1, "eu-west", challenge, "sn-2", ServerA), signature));
    }

    [Fact]
    public void An_exit_offer_is_under_the_signature()
    {
        var key = IdentityKey.Generate();
        var challenge = new byte[32];
        Random.Shared.NextBytes(challenge);
        var signature = key.Sign(PeerAuthTranscript.Encode("exit-1", 2, "eu-west", challenge, "sn-1", ServerA, 10));

        Assert.True(IdentityKey.Verify(key.PublicKey, PeerAuthTranscript.Encode("exit-1", 2, "eu-west", challenge, "sn-1", ServerA, 10), signature));
        Assert.False(IdentityKey.Verify(key.PublicKey, PeerAuthTranscript.Encode("exit-1", 2, "eu-west", challenge, "sn-1", ServerA, 10_000), signature));
        Assert.False(IdentityKey.Verify(key.PublicKey, PeerAuthTranscript.Encode("exit-1", 2, "eu-west", challenge, "sn-1", ServerA), signature));
    }

    [Fact]
    public void The_transcript_is_version_3()
    {
        // v2 had no exit offer: a v2 signature must never verify as this one.
        Assert.Equal("mydvpn/peer-auth/v3", System.Text.Encoding.ASCII.GetString(PeerAuthTranscript.DomainTag));
    }

    [Fact]
    public void The_transcript_starts_with_the_domain_tag_length_prefixed()
    {
        var encoded = PeerAuthTranscript.Encode("p", 1, "r", [9], "s", ServerA);
        Assert.Equal(new byte[] { 0, 0, 0, (byte)PeerAuthTranscript.DomainTag.Length }, encoded[..4]);
        Assert.Equal(PeerAuthTranscript.DomainTag.ToArray(), encoded[4..(4 + PeerAuthTranscript.DomainTag.Length)]);
    }
}
