namespace MyDvpn.Security.Tests;

public sealed class WireGuardKeyTests : IDisposable
{
    // RFC 7748 §6.1: Alice's private key and the public key X25519 derives from it.
    private const string AlicePrivate = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
    private const string AlicePublic = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";

    private readonly TempDirectory temp = new();

    public void Dispose() => temp.Dispose();

    [Fact]
    public void Public_key_is_the_rfc_7748_x25519_public_key_of_the_private_key()
    {
        var key = WireGuardKey.FromPrivateKey(Convert.FromHexString(AlicePrivate));

        Assert.Equal(AlicePublic, Convert.ToHexStringLower(key.PublicKey));
        Assert.Equal(Convert.ToBase64String(Convert.FromHexString(AlicePublic)), key.PublicKeyBase64);
    }

    [Fact]
    public void Saved_key_is_one_base64_line_readable_by_the_owner_only_and_loads_back()
    {
        var path = temp.Sub("wireguard.key");
        var key = WireGuardKey.FromPrivateKey(Convert.FromHexString(AlicePrivate));

        key.Save(path);

        Assert.Equal(Convert.ToBase64String(Convert.FromHexString(AlicePrivate)) + "\n", File.ReadAllText(path));
        if (!OperatingSystem.IsWindows())
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        var loaded = WireGuardKey.Load(path);
        Assert.Equal(key.PublicKey, loaded.PublicKey);
        Assert.Equal(key.PrivateKey, loaded.PrivateKey);
    }

    [Fact]
    public void Generated_keys_are_clamped_distinct_and_round_trip()
    {
        var path = temp.Sub("wireguard.key");

        var first = WireGuardKey.LoadOrCreate(path);
        var again = WireGuardKey.LoadOrCreate(path);
        var other = WireGuardKey.Generate();

        Assert.Equal(first.PublicKeyBase64, again.PublicKeyBase64);
        Assert.NotEqual(first.PublicKeyBase64, other.PublicKeyBase64);
        Assert.Equal(WireGuardKey.KeyLength, first.PublicKey.Length);
        var secret = first.PrivateKey;
        Assert.Equal(0, secret[0] & 0x07);
        Assert.Equal(0x40, secret[31] & 0xC0);
    }

    [Fact]
    public void Save_refuses_to_overwrite_a_key()
    {
        var path = temp.Sub("wireguard.key");
        var original = WireGuardKey.Generate();
        original.Save(path);

        Assert.Throws<CertificateException>(() => WireGuardKey.Generate().Save(path));
        Assert.Equal(original.PublicKeyBase64, WireGuardKey.Load(path).PublicKeyBase64);
    }

    [Theory]
    [InlineData("")]
    [InlineData("not base64 at all")]
    [InlineData("AAAA")]
    [InlineData("dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCoA")]
    public void Damaged_file_is_refused_saying_what_a_key_file_holds(string content)
    {
        var path = temp.Sub("wireguard.key");
        File.WriteAllText(path, content);

        var problem = Assert.Throws<CertificateException>(() => WireGuardKey.LoadOrCreate(path));

        Assert.Contains(path, problem.Message, StringComparison.Ordinal);
        Assert.Contains("malformed", problem.Message, StringComparison.Ordinal);
        Assert.Contains("32-byte private key", problem.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Private_key_of_the_wrong_length_is_refused()
    {
        Assert.Throws<ArgumentException>(() => WireGuardKey.FromPrivateKey(new byte[31]));
    }
}
