using System.Runtime.InteropServices;
using Akka.Actor;
using Akka.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using MyDvpn.Hosting;
using MyDvpn.Peer.Commands;
using MyDvpn.Peer.Control;
using MsLogLevel = Microsoft.Extensions.Logging.LogLevel;

namespace MyDvpn.Peer;

/// <summary>
/// <c>mydvpn peer</c>: a generic host with a local (non-clustered) actor system holding the peer's
/// <see cref="ControlChannel"/> and <see cref="CommandExecutor"/>.
/// </summary>
public static class PeerHost
{
    public const string ActorSystemName = "mydvpn-peer";

    /// <param name="handler">The command handler; the <see cref="RecordingCommandHandler"/> if null.</param>
    /// <param name="logging">Replaces the JSON console logging (tests send logs elsewhere).</param>
    /// <exception cref="ConfigurationException">The state directory is in use by another agent or its store cannot be opened.</exception>
    public static PeerAgent Build(PeerSettings settings, ICommandHandler? handler = null, Action<ILoggingBuilder>? logging = null)
    {
        var stateLock = StateDirectoryLock.Acquire(settings.StateDir);
        AppliedCommandStore store;
        try
        {
            store = AppliedCommandStore.Open(settings.StateDir);
        }
        catch (Exception ex) when (ex is Microsoft.Data.Sqlite.SqliteException or IOException or UnauthorizedAccessException)
        {
            stateLock.Dispose();
            throw new ConfigurationException("--state-dir",
                $"cannot open {Path.Combine(settings.StateDir, AppliedCommandStore.FileName)} ({ex.Message})", ex);
        }

        try
        {
            var status = new PeerStatus();
            var outcome = new PeerOutcome();
            return new PeerAgent(BuildHost(settings, handler, logging, store, status, outcome), status, outcome, store, stateLock);
        }
        catch
        {
            store.Dispose();
            stateLock.Dispose();
            throw;
        }
    }

    private static IHost BuildHost(PeerSettings settings, ICommandHandler? handler, Action<ILoggingBuilder>? logging,
        AppliedCommandStore store, PeerStatus status, PeerOutcome outcome)
    {
        var enrolled = EnrollmentRecord.IsEnrolled(settings.StateDir, settings.Id, settings.Key.PublicKeyBase64);
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings
        {
            EnvironmentName = "Production",
            ContentRootPath = settings.StateDir,
        });
        if (logging is null)
            AddJsonConsole(builder.Logging);
        else
            logging(builder.Logging);

        builder.Services.AddSingleton(settings);
        builder.Services.AddSingleton(status);
        builder.Services.AddSingleton(outcome);
        builder.Services.AddSingleton(store);
        builder.Services.AddSingleton(TimeProvider.System);
        if (handler is null)
            builder.Services.AddSingleton<ICommandHandler>(services => new RecordingCommandHandler(settings.StateDir, services.GetRequiredService<TimeProvider>()));
        else
            builder.Services.AddSingleton(handler);
        // PeerAgent.RunAsync decides when the agent stops (its token, SIGINT, SIGTERM); the host installs no handlers.
        builder.Services.AddSingleton<IHostLifetime, CallerLifetime>();

        builder.Services.AddAkka(ActorSystemName, (akka, services) =>
        {
            akka.AddHocon("""
                akka.log-dead-letters = off
                akka.log-dead-letters-during-shutdown = off
                # The agent stops through the host (RunAsync handles SIGINT and SIGTERM), not on process exit.
                akka.coordinated-shutdown.run-by-clr-shutdown-hook = off
                """, HoconAddMode.Prepend);
            akka.ConfigureLoggers(loggers =>
            {
                loggers.LogLevel = Akka.Event.LogLevel.WarningLevel;
                loggers.ClearLoggers();
                loggers.AddLoggerFactory();
            });
            akka.WithActors((system, registry) =>
            {
                var loggers = services.GetRequiredService<ILoggerFactory>();
                var time = services.GetRequiredService<TimeProvider>();
                var executor = system.ActorOf(CommandExecutor.Props(
                    store,
                    services.GetRequiredService<ICommandHandler>(),
                    time,
                    loggers.CreateLogger<CommandExecutor>(),
                    settings.Id,
                    settings.Region), "commands");
                registry.Register<CommandExecutor>(executor);
                var control = system.ActorOf(ControlChannel.Props(
                    settings, executor, status, outcome, time, loggers.CreateLogger<ControlChannel>(), Random.Shared, enrolled), "control");
                registry.Register<ControlChannel>(control);
            });
        });

        return builder.Build();
    }

    private static void AddJsonConsole(ILoggingBuilder logging)
    {
        logging.ClearProviders();
        logging.AddJsonConsole(o =>
        {
            o.IncludeScopes = true;
            o.UseUtcTimestamp = true;
            o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ";
        });
        logging.SetMinimumLevel(MsLogLevel.Information);
    }

    private sealed class CallerLifetime : IHostLifetime
    {
        public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}

/// <summary>A running (or runnable) peer agent. Dispose stops it and releases its state directory.</summary>
public sealed class PeerAgent : IAsyncDisposable
{
    private readonly IHost host;
    private readonly PeerOutcome outcome;
    private readonly AppliedCommandStore store;
    private readonly StateDirectoryLock stateLock;
    private int started;
    private int disposed;

    internal PeerAgent(IHost host, PeerStatus status, PeerOutcome outcome, AppliedCommandStore store, StateDirectoryLock stateLock)
    {
        this.host = host;
        this.outcome = outcome;
        this.store = store;
        this.stateLock = stateLock;
        Status = status;
    }

    public PeerStatus Status { get; }

    /// <summary>Completes when the agent decides to stop by itself (a permanent refusal).</summary>
    public Task<PeerStop> Stopped => outcome.Stopped;

    public IServiceProvider Services => host.Services;

    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        Interlocked.Exchange(ref started, 1);
        await host.StartAsync(cancellationToken);
    }

    /// <summary>
    /// Runs until <paramref name="cancellationToken"/> is cancelled or the process gets SIGINT or SIGTERM (exit code
    /// 0), the agent stops by itself (its <see cref="PeerStop.ExitCode"/>) or the host stops for another reason (1).
    /// </summary>
    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        var requested = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        // A signal stops the agent cleanly (stream closed, store closed) instead of ending the process on the spot.
        using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        using var terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        await using var cancelled = cancellationToken.Register(() => requested.TrySetResult());

        await StartAsync(cancellationToken);
        var lifetime = host.Services.GetRequiredService<IHostApplicationLifetime>();
        var hostStopping = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using (lifetime.ApplicationStopping.Register(() => hostStopping.TrySetResult()))
        {
            await Task.WhenAny(outcome.Stopped, requested.Task, hostStopping.Task);
        }
        await host.StopAsync(CancellationToken.None);
        if (outcome.Stopped.IsCompletedSuccessfully)
            return outcome.Stopped.Result.ExitCode;
        return requested.Task.IsCompleted ? 0 : 1;

        void OnSignal(PosixSignalContext context)
        {
            context.Cancel = true;
            requested.TrySetResult();
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref disposed, 1) == 1)
            return;
        try
        {
            if (Volatile.Read(ref started) == 1)
                await host.StopAsync(CancellationToken.None);
        }
        finally
        {
            host.Dispose();
            store.Dispose();
            stateLock.Dispose();
        }
    }
}

/// <summary>One agent per state directory: a second one would apply the same commands again.</summary>
internal sealed class StateDirectoryLock : IDisposable
{
    public const string FileName = "agent.lock";

    private readonly FileStream stream;

    private StateDirectoryLock(FileStream stream) => this.stream = stream;

    public static StateDirectoryLock Acquire(string stateDir)
    {
        var path = Path.Combine(stateDir, FileName);
        try
        {
            var stream = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            stream.SetLength(0);
            stream.Write(System.Text.Encoding.UTF8.GetBytes($"{Environment.ProcessId}\n"));
            stream.Flush();
            return new StateDirectoryLock(stream);
        }
        catch (IOException ex)
        {
            throw new ConfigurationException("--state-dir",
                $"'{stateDir}' is in use by another mydvpn peer ({path} is locked); give each agent a state directory of its own", ex);
        }
        catch (UnauthorizedAccessException ex)
        {
            throw new ConfigurationException("--state-dir", $"cannot write {path} ({ex.Message})", ex);
        }
    }

    public void Dispose() => stream.Dispose();
}
