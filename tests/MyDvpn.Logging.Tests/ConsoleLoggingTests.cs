using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging.Console;
using Microsoft.Extensions.Options;

namespace MyDvpn.Logging.Tests;

/// <summary>What each <c>--log-format</c> writes for one entry, through the formatter and options the host ends up with.</summary>
public sealed class ConsoleLoggingTests
{
    [Fact]
    public void Text_is_one_line_with_time_level_category_scope_and_message()
    {
        var line = Write(LogFormat.Text);

        Assert.Matches(@"^\d\d:\d\d:\d\d info: MyDvpn\.Peer\.Control\.ControlChannel\[0\] => peer_id=laptop-1 Connecting to SuperNode 10\.0\.0\.1:7443$", line);
    }

    [Fact]
    public void Json_is_one_object_per_line_with_the_state_and_scopes_as_fields()
    {
        var line = Write(LogFormat.Json);

        var record = JsonDocument.Parse(line).RootElement;
        Assert.Equal("Connecting to SuperNode 10.0.0.1:7443", record.GetProperty("Message").GetString());
        Assert.Equal("10.0.0.1:7443", record.GetProperty("State").GetProperty("Endpoint").GetString());
        Assert.Equal("laptop-1", record.GetProperty("Scopes")[0].GetProperty("peer_id").GetString());
        Assert.EndsWith("Z", record.GetProperty("Timestamp").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Json_written_while_a_span_is_current_carries_its_trace_and_span_ids()
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        ConsoleLogging.Use(builder.Logging, LogFormat.Json);
        var scopes = new ScopesOfTheFactory();
        builder.Logging.AddProvider(scopes);
        using var host = builder.Build();
        // The factory hands its providers the scopes it tracks, the console provider's as this one's.
        _ = host.Services.GetRequiredService<ILoggerFactory>().CreateLogger("test");
        var name = host.Services.GetRequiredService<IOptionsMonitor<ConsoleLoggerOptions>>().CurrentValue.FormatterName;
        var formatter = host.Services.GetServices<ConsoleFormatter>().Single(f => f.Name == name);
        using var span = new System.Diagnostics.Activity("apply SetupExit").SetIdFormat(System.Diagnostics.ActivityIdFormat.W3C).Start();

        using var text = new StringWriter();
        formatter.Write(new LogEntry<LogValues>(LogLevel.Information, "MyDvpn.Peer.Commands.CommandExecutor", 0,
            new LogValues("Applying command {Kind}", ("Kind", "setup_exit")), null, (s, _) => s.ToString()), scopes.Provider!, text);

        var record = JsonDocument.Parse(text.ToString()).RootElement;
        var ids = record.GetProperty("Scopes").EnumerateArray().Single(s => s.ValueKind == JsonValueKind.Object && s.TryGetProperty("TraceId", out _));
        Assert.Equal(span.TraceId.ToHexString(), ids.GetProperty("TraceId").GetString());
        Assert.Equal(span.SpanId.ToHexString(), ids.GetProperty("SpanId").GetString());
    }

    /// <summary>A provider that keeps the scope provider the logger factory gives every provider.</summary>
    private sealed class ScopesOfTheFactory : ILoggerProvider, ISupportExternalScope
    {
        public IExternalScopeProvider? Provider { get; private set; }

        public void SetScopeProvider(IExternalScopeProvider scopeProvider) => Provider = scopeProvider;

        public ILogger CreateLogger(string categoryName) => NullLogger.Instance;

        public void Dispose()
        {
        }
    }

    /// <summary>One Information entry with a scope, as the console provider of a host configured by <see cref="ConsoleLogging.Use"/> formats it.</summary>
    private static string Write(LogFormat format)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        ConsoleLogging.Use(builder.Logging, format);
        using var host = builder.Build();
        var name = host.Services.GetRequiredService<IOptionsMonitor<ConsoleLoggerOptions>>().CurrentValue.FormatterName;
        var formatter = host.Services.GetServices<ConsoleFormatter>().Single(f => f.Name == name);
        var scopes = new LoggerExternalScopeProvider();
        using var scope = scopes.Push(new Scope([new("peer_id", "laptop-1")]));
        var state = new LogValues("Connecting to SuperNode {Endpoint}", ("Endpoint", "10.0.0.1:7443"));
        using var text = new StringWriter();
        formatter.Write(new LogEntry<LogValues>(LogLevel.Information, "MyDvpn.Peer.Control.ControlChannel", 0, state, null, (s, _) => s.ToString()),
            scopes, text);
        // No colour codes when the writer is not a terminal.
        return Assert.Single(text.ToString().Split(Environment.NewLine, StringSplitOptions.RemoveEmptyEntries));
    }

    /// <summary>A scope as the agents' <c>LogScope</c>: key/value pairs that read <c>peer_id=laptop-1</c>.</summary>
    private sealed class Scope(List<KeyValuePair<string, object?>> pairs) : List<KeyValuePair<string, object?>>(pairs)
    {
        public override string ToString() => string.Join(", ", this.Select(p => $"{p.Key}={p.Value}"));
    }

    /// <summary>A message template's state, as <c>LoggerMessage</c> gives it: its values and <c>{OriginalFormat}</c>.</summary>
    private sealed class LogValues(string template, params (string Key, object? Value)[] values) : List<KeyValuePair<string, object?>>(
        values.Select(v => new KeyValuePair<string, object?>(v.Key, v.Value)).Append(new KeyValuePair<string, object?>("{OriginalFormat}", template)))
    {
        public override string ToString() => values.Aggregate(template, (text, v) => text.Replace($"{{{v.Key}}}", $"{v.Value}", StringComparison.Ordinal));
    }
}
