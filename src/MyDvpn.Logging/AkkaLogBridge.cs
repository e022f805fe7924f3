using System.Collections;
using Akka.Actor;
using Akka.Dispatch;
using Akka.Event;
using Akka.Hosting;
using Microsoft.Extensions.Logging;
using AkkaLogLevel = Akka.Event.LogLevel;
using MsLogLevel = Microsoft.Extensions.Logging.LogLevel;

namespace MyDvpn.Logging;

/// <summary>
/// Akka.NET's own log events (remoting, cluster, sharding, persistence, and any actor still logging through an
/// <c>ILoggingAdapter</c>) as entries of the host's <see cref="ILoggerFactory"/>, one clean record each: the category is the
/// class that logged (<c>Akka.Cluster.Cluster</c>, <c>Akka.Remote.EndpointManager</c>…, so filters can pick them), the level
/// is Akka's, the message is the formatted message alone, and where it came from is a field: <c>LogSource</c>, and
/// <c>ActorPath</c> when an actor logged it. The console's own timestamp is the only one.
/// <para>
/// Why not Akka.Hosting's <c>AddLoggerFactory()</c>: its logger writes <c>LogEvent.ToString()</c> as the message, which starts
/// with Akka's own level, timestamp, thread and source (<c>[INFO][12/06/2026 19:32:35.739Z][Thread 0001][remoting …] …</c>), so
/// behind the JSON console every Akka line carried its time twice, all under the one category <c>Akka.Actor.ActorSystem</c>,
/// with the source in a state the console does not print.
/// </para>
/// </summary>
public sealed class AkkaLogBridge : ActorBase, IRequiresMessageQueue<ILoggerMessageQueueSemantics>
{
    private readonly ILoggerFactory _factory;
    private readonly Dictionary<Type, ILogger> _loggers = [];

    public AkkaLogBridge()
    {
        var setup = Context.System.Settings.Setup.Get<AkkaLogBridgeSetup>();
        _factory = setup.HasValue
            ? setup.Value.LoggerFactory
            : throw new InvalidOperationException($"{nameof(AkkaLogBridge)} needs an {nameof(AkkaLogBridgeSetup)}: configure it with {nameof(AkkaLogBridge)}.{nameof(Use)}");
    }

    /// <summary>
    /// Sends the actor system's log events at <paramref name="level"/> and above to <paramref name="loggerFactory"/>, and
    /// nowhere else.
    /// </summary>
    public static AkkaConfigurationBuilder Use(AkkaConfigurationBuilder akka, ILoggerFactory loggerFactory, AkkaLogLevel level)
    {
        ArgumentNullException.ThrowIfNull(akka);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        return akka.AddSetup(new AkkaLogBridgeSetup(loggerFactory)).ConfigureLoggers(loggers =>
        {
            loggers.LogLevel = level;
            loggers.ClearLoggers();
            loggers.AddLogger<AkkaLogBridge>();
        });
    }

    protected override bool Receive(object message)
    {
        switch (message)
        {
            case InitializeLogger:
                Sender.Tell(new LoggerInitialized());
                return true;
            case LogEvent log:
                Write(log);
                return true;
            default:
                return false;
        }
    }

    private void Write(LogEvent log)
    {
        var level = log.LogLevel() switch
        {
            AkkaLogLevel.DebugLevel => MsLogLevel.Debug,
            AkkaLogLevel.InfoLevel => MsLogLevel.Information,
            AkkaLogLevel.WarningLevel => MsLogLevel.Warning,
            _ => MsLogLevel.Error,
        };
        var logger = LoggerFor(log.LogClass);
        if (logger.IsEnabled(level))
            logger.Log(level, default, AkkaLogEntry.Of(log), log.Cause, static (entry, _) => entry.Message);
    }

    private ILogger LoggerFor(Type? logClass)
    {
        // A logger made for a string source (Logging.GetLogger(system, "name")) has a placeholder class.
        var type = logClass is null || logClass == typeof(DummyClassForStringSources) ? typeof(ActorSystem) : logClass;
        if (!_loggers.TryGetValue(type, out var logger))
            _loggers[type] = logger = _factory.CreateLogger(type);
        return logger;
    }
}

/// <summary>The <see cref="ILoggerFactory"/> an <see cref="AkkaLogBridge"/> writes to (an actor-system setup).</summary>
public sealed class AkkaLogBridgeSetup(ILoggerFactory loggerFactory) : Akka.Actor.Setup.Setup
{
    public ILoggerFactory LoggerFactory { get; } = loggerFactory;
}

/// <summary>
/// One Akka log event as an <see cref="ILogger"/> entry's state: the formatted message, the named properties of its template
/// (Akka's own templates are positional, <c>{0}</c>, and give none), <c>LogSource</c>, <c>ActorPath</c> when the source is an
/// actor, and the template as <c>{OriginalFormat}</c>, as <c>LoggerMessage</c> states carry it.
/// </summary>
public sealed class AkkaLogEntry : IReadOnlyList<KeyValuePair<string, object?>>
{
    private readonly List<KeyValuePair<string, object?>> _fields;

    private AkkaLogEntry(string message, List<KeyValuePair<string, object?>> fields)
    {
        Message = message;
        _fields = fields;
    }

    public string Message { get; }

    public int Count => _fields.Count;

    public KeyValuePair<string, object?> this[int index] => _fields[index];

    public static AkkaLogEntry Of(LogEvent log)
    {
        var fields = new List<KeyValuePair<string, object?>>();
        string message, template;
        try
        {
            message = log.Message?.ToString() ?? "";
            template = log.GetTemplate();
            if (log.TryGetProperties(out var properties) && properties is not null)
            {
                fields.AddRange(properties
                    .Where(p => !p.Key.All(char.IsAsciiDigit))
                    .Select(p => new KeyValuePair<string, object?>(p.Key, p.Value)));
            }
        }
        catch (FormatException ex)
        {
            // A template whose arguments do not fit: say so rather than lose the event.
            template = log.Message is LogMessage bad ? bad.Format : log.Message?.GetType().Name ?? "";
            message = $"unformattable log message ({ex.Message}): {template}";
            fields.Clear();
        }

        fields.Add(new("LogSource", log.LogSource));
        if (ActorPath.TryParse(log.LogSource, out var path))
            fields.Add(new("ActorPath", path.ToString()));
        fields.Add(new("{OriginalFormat}", template));
        return new AkkaLogEntry(message, fields);
    }

    public IEnumerator<KeyValuePair<string, object?>> GetEnumerator() => _fields.GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    public override string ToString() => Message;
}
