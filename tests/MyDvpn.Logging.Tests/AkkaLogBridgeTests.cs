using System.Collections.Concurrent;
using System.Text.Json;
using Akka.Actor;
using Akka.Event;
using Akka.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging.Console;
using LogLevel = Microsoft.Extensions.Logging.LogLevel;

namespace MyDvpn.Logging.Tests;

/// <summary>
/// Akka's log events through <see cref="AkkaLogBridge"/> into a real host's logging, each written by the JSON console
/// formatter every process uses (<see cref="ConsoleLogging"/>): what an operator reads.
/// </summary>
public sealed class AkkaLogBridgeTests : IAsyncLifetime
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(15);

    private readonly JsonLines _lines = new();
    private IHost? _host;

    private ActorSystem System => _host!.Services.GetRequiredService<ActorSystem>();

    public async Task InitializeAsync()
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        ConsoleLogging.Use(builder.Logging, LogFormat.Json);
        // The console itself stays quiet: the same formatter writes into the test's lines instead.
        builder.Logging.ClearProviders();
        builder.Logging.AddProvider(_lines);
        builder.Logging.SetMinimumLevel(LogLevel.Information);
        builder.Services.AddAkka("bridge-test", (akka, services) =>
            AkkaLogBridge.Use(akka, services.GetRequiredService<ILoggerFactory>(), Akka.Event.LogLevel.InfoLevel));
        _host = builder.Build();
        _lines.Formatter = _host.Services.GetServices<ConsoleFormatter>().Single(f => f.Name == ConsoleFormatterNames.Json);
        await _host.StartAsync();
    }

    public async Task DisposeAsync()
    {
        if (_host is not null)
        {
            await _host.StopAsync();
            _host.Dispose();
        }
    }

    [Fact]
    public async Task An_actors_log_line_is_one_json_record_with_its_class_as_category_its_message_alone_and_its_path_as_a_field()
    {
        Start("chatty", log => log.Warning("Exit {0} lost {1} clients", "exit-1", 3));

        var line = await _lines.FirstAsync(l => l.Message == "Exit exit-1 lost 3 clients");

        Assert.Equal(typeof(Chatty).FullName!.Replace('+', '.'), line.Category);
        Assert.Equal("Warning", line.Level);
        Assert.Equal("akka://bridge-test/user/chatty", line.State.GetProperty("ActorPath").GetString());
        Assert.Equal("Exit {0} lost {1} clients", line.State.GetProperty("{OriginalFormat}").GetString());
        // Akka's own rendering ([WARNING][date][Thread …][source]) is not in the message: the record has one timestamp.
        Assert.Single(line.Json.EnumerateObject(), p => p.Name == "Timestamp");
        Assert.DoesNotContain("[", line.Message);
    }

    [Fact]
    public async Task Akkas_own_components_log_under_their_own_category_at_their_level()
    {
        // Akka reports an undelivered message at Info, from its dead-letter reference, once its dead-letter listener has
        // subscribed (it starts with the system, on its own thread): sent again until then.
        var line = await _lines.FirstAsync(l => l.Message.Contains("was not delivered", StringComparison.Ordinal),
            until: () => System.DeadLetters.Tell("lost in transit"));

        Assert.Equal(typeof(DeadLetterActorRef).FullName, line.Category);
        Assert.Equal("Information", line.Level);
        Assert.StartsWith("Message [String] to [akka://bridge-test/deadLetters] was not delivered.", line.Message, StringComparison.Ordinal);
        Assert.Equal("akka://bridge-test/deadLetters", line.State.GetProperty("ActorPath").GetString());
    }

    [Fact]
    public async Task A_named_source_has_its_name_as_a_field_and_no_actor_path()
    {
        Akka.Event.Logging.GetLogger(System, "relay-hand-over").Info("Handing over {0} chains", 2);

        var line = await _lines.FirstAsync(l => l.Message == "Handing over 2 chains");

        Assert.Equal("Akka.Actor.ActorSystem", line.Category);
        Assert.Equal("relay-hand-over (akka://bridge-test)", line.State.GetProperty("LogSource").GetString());
        Assert.False(line.State.TryGetProperty("ActorPath", out _));
    }

    [Fact]
    public async Task An_error_keeps_its_exception_and_level()
    {
        Start("failing", log => log.Error(new InvalidOperationException("disk full"), "Snapshot failed"));

        var line = await _lines.FirstAsync(l => l.Message == "Snapshot failed");

        Assert.Equal("Error", line.Level);
        Assert.Contains("disk full", line.Json.GetProperty("Exception").GetString());
    }

    [Fact]
    public async Task Levels_below_the_configured_one_are_not_written()
    {
        Start("leveled", log =>
        {
            log.Debug("too fine to show");
            log.Info("shown");
        });

        await _lines.FirstAsync(l => l.Message == "shown");

        Assert.DoesNotContain(_lines.All, l => l.Message == "too fine to show");
    }

    /// <summary>An actor that logs through Akka's adapter as it starts.</summary>
    private void Start(string name, Action<ILoggingAdapter> say) => System.ActorOf(Props.Create(() => new Chatty(say)), name);

    private sealed class Chatty : ReceiveActor
    {
        public Chatty(Action<ILoggingAdapter> say) => say(Context.GetLogger());
    }

    /// <summary>One written line, parsed back.</summary>
    private sealed record JsonLine(JsonElement Json)
    {
        public string Category => Json.GetProperty("Category").GetString()!;

        public string Level => Json.GetProperty("LogLevel").GetString()!;

        public string Message => Json.GetProperty("Message").GetString()!;

        public JsonElement State => Json.GetProperty("State");
    }

    /// <summary>A logger provider that writes each entry with the host's JSON console formatter into a list of lines.</summary>
    private sealed class JsonLines : ILoggerProvider
    {
        private readonly ConcurrentQueue<JsonLine> _lines = new();

        public ConsoleFormatter? Formatter { get; set; }

        public IEnumerable<JsonLine> All => _lines;

        public ILogger CreateLogger(string categoryName) => new Writer(this, categoryName);

        /// <summary>The first line that matches, waiting for it; <paramref name="until"/> runs before each look.</summary>
        public async Task<JsonLine> FirstAsync(Func<JsonLine, bool> match, Action? until = null)
        {
            using var timeout = new CancellationTokenSource(Patience);
            while (true)
            {
                until?.Invoke();
                if (_lines.FirstOrDefault(match) is { } line)
                    return line;
                try
                {
                    await Task.Delay(until is null ? 20 : 250, timeout.Token);
                }
                catch (OperationCanceledException)
                {
                    throw new Xunit.Sdk.XunitException(
                        $"no such line within {Patience.TotalSeconds} s; written:\n{string.Join("\n", _lines.Select(l => l.Json.GetRawText()))}");
                }
            }
        }

        public void Dispose()
        {
        }

        private sealed class Writer(JsonLines lines, string category) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => NullLogger.Instance.BeginScope(state);

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                if (lines.Formatter is not { } json)
                    return;
                using var text = new StringWriter();
                json.Write(new Microsoft.Extensions.Logging.Abstractions.LogEntry<TState>(logLevel, category, eventId, state, exception, formatter),
                    new LoggerExternalScopeProvider(), text);
                foreach (var line in text.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries))
                    lines._lines.Enqueue(new JsonLine(JsonDocument.Parse(line).RootElement.Clone()));
            }
        }
    }
}
