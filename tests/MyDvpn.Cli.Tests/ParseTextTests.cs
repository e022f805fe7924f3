using System.CommandLine;
using System.Net;
using MyDvpn.Security;

namespace MyDvpn.Cli.Tests;

/// <summary>What a person reads when a command line or a setting is wrong: the flag, the value, the fix — never a type name.</summary>
public sealed class ParseTextTests : IDisposable
{
    private readonly TempDirectory temp = new();

    public void Dispose() => temp.Dispose();

    private static string[] Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    [Fact]
    public async Task An_unknown_command_is_said_first_with_the_commands_there_are()
    {
        var (exitCode, _, error) = await CliRunner.RunAsync("frobnicate");

        Assert.Equal(2, exitCode);
        Assert.StartsWith("error: unknown command 'frobnicate' for `mydvpn`; its commands are keygen, ca, base, super, peer", Lines(error)[0], StringComparison.Ordinal);
        Assert.DoesNotContain("Required command", error, StringComparison.Ordinal);
        Assert.Equal("Run `mydvpn --help` for usage.", Lines(error)[^1]);
    }

    [Theory]
    [InlineData(new[] { "admn" }, "error: unknown command 'admn' for `mydvpn`; did you mean `admin`?")]
    [InlineData(new[] { "admin", "sesions" }, "error: unknown command 'sesions' for `mydvpn admin`; did you mean `sessions`?")]
    [InlineData(new[] { "keygen", "--ot", "k" }, "error: unknown option '--ot' for `mydvpn keygen`; did you mean `--out`?")]
    public async Task A_mistyped_name_is_answered_with_the_nearest_one(string[] args, string first)
    {
        var (exitCode, _, error) = await CliRunner.RunAsync(args);

        Assert.Equal(2, exitCode);
        Assert.Equal(first, Lines(error)[0]);
    }

    [Fact]
    public async Task A_command_group_without_its_command_lists_its_commands()
    {
        var (exitCode, _, error) = await CliRunner.RunAsync("ca");

        Assert.Equal(2, exitCode);
        Assert.Equal("error: `mydvpn ca` needs a command: init, issue, revoke, crl", Lines(error)[0]);
    }

    [Theory]
    [InlineData(new[] { "ca", "issue", "--dir", "d", "--name", "n", "--out", "o", "--role", "node" }, "error: --role 'node' is not one of base, super, admin")]
    [InlineData(new[] { "ca", "revoke", "--dir", "d", "--serial", "01", "--reason", "stolen" },
        "error: --reason 'stolen' is not one of unspecified, key-compromise, superseded, cessation-of-operation, affiliation-changed")]
    [InlineData(new[] { "peer", "--log-format", "xml" }, "error: --log-format 'xml' is not one of text, json")]
    [InlineData(new[] { "completion", "tcsh" }, "error: SHELL 'tcsh' is not one of bash, zsh, fish")]
    public async Task An_unknown_value_of_a_choice_names_the_values_it_takes(string[] args, string first)
    {
        var (exitCode, _, error) = await CliRunner.RunAsync(args);

        Assert.Equal(2, exitCode);
        Assert.Equal(first, Lines(error)[0]);
        Assert.DoesNotContain("MyDvpn.", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Every_choice_in_the_command_tree_is_parsed_by_name_so_that_a_refusal_names_the_values()
    {
        // System.CommandLine's own enum conversion says "as expected type 'MyDvpn.…'": every enum option and argument
        // must have a parser of ours (EnumOption, or the admin's role parser).
        var choices = Symbols(CliApplication.BuildRoot(TextWriter.Null)).Where(s => s.ValueType.IsEnum).ToList();

        Assert.NotEmpty(choices);
        Assert.All(choices, s => Assert.True(s.HasParser, $"{s.Path} has no parser of ours"));
    }

    [Fact]
    public async Task The_PEER_ID_of_disconnect_is_the_peer_to_disconnect()
    {
        var (_, output, _) = await CliRunner.RunAsync("admin", "disconnect", "--help");

        Assert.Contains("The peer to disconnect", output, StringComparison.Ordinal);
        Assert.DoesNotContain("revoke", output, StringComparison.Ordinal);
    }

    [Fact]
    public void No_argument_or_option_object_is_shared_by_two_commands()
    {
        // One object in two commands shows one description in both (disconnect's PEER_ID read "The peer to revoke").
        var owners = new Dictionary<Symbol, string>(ReferenceEqualityComparer.Instance);
        foreach (var (command, path) in Commands(CliApplication.BuildRoot(TextWriter.Null), "mydvpn"))
        {
            foreach (Symbol symbol in command.Arguments.Cast<Symbol>().Concat(command.Options))
            {
                if (owners.TryGetValue(symbol, out var other))
                    Assert.Fail($"{symbol.Name} belongs to `{other}` and `{path}`");
                owners[symbol] = path;
            }
        }
    }

    [Fact]
    public async Task Every_missing_required_setting_is_named_in_one_run()
    {
        var (exitCode, _, error) = await CliRunner.RunAsync("super");

        Assert.Equal(2, exitCode);
        var lines = Lines(error);
        foreach (var flag in new[] { "--data-dir", "--cluster", "--listen", "--tls", "--region", "--id", "--base", "--public-ip", "--relay-ports" })
            Assert.Contains(lines, line => line.StartsWith($"error: {flag}: is required", StringComparison.Ordinal));
        Assert.Contains("error: --region: is required: Region this SuperNode serves (e.g. eu-west) (or Super:Region in --config FILE, or MYDVPN__SUPER__REGION)", lines);

        (exitCode, _, error) = await CliRunner.RunAsync("peer", "--id", "laptop-1");

        Assert.Equal(2, exitCode);
        Assert.Equal(["--role", "--region", "--key", "--ca", "--supernode"],
            Lines(error).Select(line => line["error: ".Length..line.IndexOf(':', "error: ".Length)]).ToArray());
    }

    [Fact]
    public async Task A_flag_of_the_wrong_kind_says_what_it_takes_in_words()
    {
        var (exitCode, _, error) = await CliRunner.RunAsync("super", "--max-streams", "lots");

        Assert.Equal(2, exitCode);
        Assert.Equal("error: --max-streams 'lots' is not a whole number", Lines(error)[0]);
        Assert.DoesNotContain("System.", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_setting_of_the_wrong_kind_is_named_with_its_flag_value_and_source_every_one_at_once()
    {
        File.WriteAllText(temp.Sub("config.json"), """{ "Super": { "MaxStreams": "lots", "Edge": { "AuthTimeout": "soon" } } }""");

        var (exitCode, _, error) = await CliRunner.RunAsync([.. SuperArgs(), "--config", temp.Sub("config.json")]);

        Assert.Equal(2, exitCode);
        Assert.Equal(
        [
            $"error: --max-streams: 'lots' is not a whole number (from --config {temp.Sub("config.json")})",
            $"error: Super:Edge:AuthTimeout: 'soon' is not a duration such as 00:00:30 (hh:mm:ss) or 1.00:00:00 (a day) (from --config {temp.Sub("config.json")})",
        ], Lines(error));
    }

    private string[] SuperArgs()
    {
        CertificateAuthority.Init(temp.Sub("ca")).Dispose();
        CertificateAuthority.IssueNode(temp.Sub("ca"), NodeIdentity.Super("sn-1", "eu-west"), [IPAddress.Loopback], [], temp.Sub("node")).Dispose();
        return
        [
            "super", "--data-dir", temp.Sub("data"), "--region", "eu-west", "--id", "sn-1", "--cluster", "127.0.0.1:1", "--base", "127.0.0.1:2",
            "--listen", "127.0.0.1:3", "--public-ip", "127.0.0.1", "--relay-ports", "40000-40099", "--tls", temp.Sub("node"),
        ];
    }

    private sealed record Choice(string Path, Type ValueType, bool HasParser);

    private static IEnumerable<Choice> Symbols(Command root)
    {
        foreach (var (command, path) in Commands(root, "mydvpn"))
        {
            foreach (var option in command.Options)
                yield return new Choice($"{path} {option.Name}", option.ValueType, CustomParserOf(option) is not null);
            foreach (var argument in command.Arguments)
                yield return new Choice($"{path} {argument.Name}", argument.ValueType, CustomParserOf(argument) is not null);
        }
    }

    private static object? CustomParserOf(Symbol symbol) => symbol.GetType().GetProperty("CustomParser")?.GetValue(symbol);

    private static IEnumerable<(Command Command, string Path)> Commands(Command command, string path)
    {
        yield return (command, path);
        foreach (var sub in command.Subcommands)
        {
            foreach (var nested in Commands(sub, $"{path} {sub.Name}"))
                yield return nested;
        }
    }
}
