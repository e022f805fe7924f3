using MyDvpn.Cli.Commands;
using MyDvpn.Security;

namespace MyDvpn.Cli.Tests;

/// <summary><c>mydvpn admin token create</c>, <c>revoke</c> and <c>sessions</c>: parsing and the exit-code contract.</summary>
public sealed class AdminEnrollmentCommandTests : IDisposable
{
    private static readonly string[] Admin = ["admin", "--base", "127.0.0.1:1", "--tls", "/nonexistent/tls"];

    private readonly TempDirectory temp = new();

    public void Dispose() => temp.Dispose();

    [Theory]
    [InlineData("90s", 90)]
    [InlineData("30m", 30 * 60)]
    [InlineData("24h", 24 * 3600)]
    [InlineData("7d", 7 * 86400)]
    [InlineData("1s", 1)]
    [InlineData("0007d", 7 * 86400)]
    public void Duration_is_a_whole_number_and_a_unit(string text, int seconds)
    {
        Assert.True(AdminCommand.TryParseDuration(text, out var duration, out var problem), problem);
        Assert.Equal(TimeSpan.FromSeconds(seconds), duration);
        Assert.Empty(problem);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("24")]
    [InlineData("h")]
    [InlineData("5w")]
    [InlineData("24H")]
    [InlineData("1.5h")]
    [InlineData("-1h")]
    [InlineData("+1h")]
    [InlineData(" 24h")]
    [InlineData("24 h")]
    [InlineData("1h30m")]
    [InlineData("99999999999999999999d")]
    public void Anything_else_is_not_a_duration(string? text)
    {
        Assert.False(AdminCommand.TryParseDuration(text, out var duration, out var problem));
        Assert.Equal(TimeSpan.Zero, duration);
        Assert.Contains("duration", problem, StringComparison.Ordinal);
    }

    [Fact]
    public void Zero_is_not_a_duration()
    {
        Assert.False(AdminCommand.TryParseDuration("0s", out _, out var problem));
        Assert.Contains("positive", problem, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("5w")]
    [InlineData("0h")]
    [InlineData("soon")]
    [InlineData("200000d")] // more seconds than the admin API carries
    public async Task Token_create_with_a_bad_ttl_exits_2_naming_ttl(string ttl)
    {
        var (exitCode, output, error) = await CliRunner.RunAsync(
            [.. Admin, "token", "create", "--role", "client", "--region", "eu-west", "--ttl", ttl]);

        Assert.Equal(2, exitCode);
        Assert.Empty(output);
        Assert.StartsWith("error: --ttl", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("supernode")]
    [InlineData("admin")]
    [InlineData("")]
    public async Task Token_create_with_a_bad_role_exits_2_naming_role(string role)
    {
        var (exitCode, _, error) = await CliRunner.RunAsync(
            [.. Admin, "token", "create", "--role", role, "--region", "eu-west"]);

        Assert.Equal(2, exitCode);
        Assert.StartsWith("error: --role", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Token_create_without_a_role_exits_2_naming_role()
    {
        var (exitCode, _, error) = await CliRunner.RunAsync([.. Admin, "token", "create", "--region", "eu-west"]);

        Assert.Equal(2, exitCode);
        Assert.Contains("--role", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--region", "EU_West", "error: --region")]
    [InlineData("--uses", "0", "error: --uses")]
    [InlineData("--uses", "many", "--uses")]
    public async Task Token_create_with_another_bad_flag_exits_2_naming_it(string flag, string value, string expected)
    {
        var args = new Dictionary<string, string> { ["--role"] = "exit", ["--region"] = "eu-west", [flag] = value };

        var (exitCode, _, error) = await CliRunner.RunAsync(
            [.. Admin, "token", "create", .. args.SelectMany(pair => new[] { pair.Key, pair.Value })]);

        Assert.Equal(2, exitCode);
        Assert.Contains(expected, error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Revoke_of_an_invalid_peer_id_exits_2_naming_it()
    {
        var (exitCode, _, error) = await CliRunner.RunAsync([.. Admin, "revoke", "no spaces allowed"]);

        Assert.Equal(2, exitCode);
        Assert.StartsWith("error: PEER_ID 'no spaces allowed'", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Sessions_of_an_invalid_region_exit_2_naming_region()
    {
        var (exitCode, _, error) = await CliRunner.RunAsync([.. Admin, "sessions", "--region", "EU_West"]);

        Assert.Equal(2, exitCode);
        Assert.StartsWith("error: --region", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("token", "create", "--role", "both", "--region", "eu-west", "--uses", "5", "--ttl", "7d")]
    [InlineData("token", "create", "--role", "client", "--region", "eu-west")]
    [InlineData("revoke", "peer-1")]
    [InlineData("sessions", "--region", "eu-west", "--json")]
    public async Task Valid_command_against_an_unreachable_base_is_a_runtime_failure(params string[] command)
    {
        CertificateAuthority.Init(temp.Sub("ca")).Dispose();
        CertificateAuthority.IssueAdmin(temp.Sub("ca"), "ops", [], [], temp.Sub("admin")).Dispose();

        var (exitCode, output, error) = await CliRunner.RunAsync(["admin", "--base", "127.0.0.1:1", "--tls", temp.Sub("admin"), .. command]);

        Assert.Equal(1, exitCode);
        Assert.Empty(output);
        Assert.Contains("unreachable", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Revocation_text_names_the_version_and_which_supernodes_were_told()
    {
        var revoked = new Protocol.Admin.RevokePeerResponse { Version = 7, NotifiedSupernodes = { "sn-a", "sn-b" }, UnreachableSupernodes = { "sn-c" } };

        var text = AdminCommand.RevocationText("peer-1", revoked);

        Assert.Contains("peer-1 is revoked (revocation version 7)", text, StringComparison.Ordinal);
        Assert.Contains("Told at once: sn-a, sn-b", text, StringComparison.Ordinal);
        Assert.Contains("Unreachable", text, StringComparison.Ordinal);
        Assert.Contains("sn-c", text, StringComparison.Ordinal);
    }
}
