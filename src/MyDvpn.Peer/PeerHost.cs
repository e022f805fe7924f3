using Akka.Actor;
using Akka.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using MyDvpn.Common;
using MyDvpn.DataPlane;
using MyDvpn.HostOs;
using MyDvpn.Logging;
using MyDvpn.Peer.Commands;
using MyDvpn.Peer.Control;
using MyDvpn.Peer.LocalStatus;
using MyDvpn.Peer.Tunnel;
using MyDvpn.Protocol.Control;
using MyDvpn.Security;
using MyDvpn.Telemetry;

namespace MyDvpn.Peer;

/// <summary>
/// <c>mydvpn peer</c>: a generic host with a local (non-clustered) actor system holding the peer's
/// <see cref="ControlChannel"/> and <see cref="CommandExecutor"/>, and the <see cref="StatusSocket"/>. The state
/// directory holds the peer's WireGuard key (<c>wireguard.key</c>, made on first start) and its
/// <see cref="TunnelState"/> (<c>tunnel.json</c>).
/// </summary>
public static class PeerHost
{
    public const string ActorSystemName = "mydvpn-peer";
    public const string WireGuardKeyFileName = "wireguard.key";

    /// <param name="handler">The command handler; the agent's <see cref="AgentCommands.Registry"/> if null.</param>
    /// <param name="logging">Replaces the JSON console logging (the CLI chooses the format, tests send logs elsewhere).</param>
    /// <param name="time">The agent's clock, for its timers and deadlines; the system's if null (tests move a manual one).</param>
    /// <exception cref="ConfigurationException">The state directory is in use by another agent, or its store, WireGuard key or tunnel state cannot be read.</exception>
    public static PeerAgent Build(PeerSettings settings, ICommandHandler? handler = null, Action<ILoggingBuilder>? logging = null, TimeProvider? time = null)
    {
        var stateLock = StateDirectoryLock.Acquire(settings.StateDir);
        AppliedCommandStore? store = null;
        TunnelStateStore? tunnel = null;
        try
        {
            var wireGuardKey = LoadWireGuardKey(settings.StateDir);
            tunnel = OpenTunnelState(settings.StateDir);
            try
            {
                store = AppliedCommandStore.Open(settings.StateDir);
            }
            catch (Exception ex) when (ex is Microsoft.Data.Sqlite.SqliteException or IOException or UnauthorizedAccessException)
            {
                throw new ConfigurationException("--state-dir",
                    $"cannot open {Path.Combine(settings.StateDir, AppliedCommandStore.FileName)} ({ex.Message})", ex);
            }

            var status = new PeerStatus();
            status.Update(s => s with { ExitRequest = ExitRequestMachine.InitialStatus(settings) });
            var outcome = new PeerOutcome();
            var host = BuildHost(settings, handler, logging, time ?? TimeProvider.System, store, status, outcome, wireGuardKey, tunnel);
            return new PeerAgent(host, status, outcome, store, tunnel, wireGuardKey, stateLock);
        }
        catch
        {
            store?.Dispose();
            tunnel?.Dispose();
            stateLock.Dispose();
            throw;
        }
    }

    private static WireGuardKey LoadWireGuardKey(string stateDir)
    {
        var path = Path.Combine(stateDir, WireGuardKeyFileName);
        try
        {
            return WireGuardKey.LoadOrCreate(path);
        }
        catch (CertificateException ex)
        {
            throw new ConfigurationException("--state-dir",
                $"{ex.Message} If nothing else uses this key, delete it to make a new key: the SuperNode learns it with the next exit request.", ex);
        }
    }

    private static TunnelStateStore OpenTunnelState(string stateDir)
    {
        try
        {
            return TunnelStateStore.Open(stateDir);
        }
        catch (Exception ex) when (ex is InvalidDataException or IOException or UnauthorizedAccessException)
        {
            throw new ConfigurationException("--state-dir",
                $"cannot read the tunnel state {TunnelStateStore.PathIn(stateDir)} ({ex.Message}); delete it to start without tunnels: the SuperNode sets them up again", ex);
        }
    }

    private static IHost BuildHost(PeerSettings settings, ICommandHandler? handler, Action<ILoggingBuilder>? logging, TimeProvider time,
        AppliedCommandStore store, PeerStatus status, PeerOutcome outcome, WireGuardKey wireGuardKey, TunnelStateStore tunnel)
    {
        var enrolled = EnrollmentRecord.IsEnrolled(settings.StateDir, settings.Id, settings.Key.PublicKeyBase64);
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings
        {
            EnvironmentName = "Production",
            ContentRootPath = settings.StateDir,
        });
        if (logging is null)
            ConsoleLogging.Use(builder.Logging, LogFormat.Json);
        else
            logging(builder.Logging);
        if (settings.Otlp is { } otlp)
            builder.Services.AddTracing("mydvpn-peer", settings.Id, otlp);

        builder.Services.AddSingleton(settings);
        builder.Services.AddSingleton(status);
        builder.Services.AddSingleton(outcome);
        builder.Services.AddSingleton(store);
        builder.Services.AddSingleton(tunnel);
        if (settings.DataPlane.Mode == DataPlaneMode.WireGuard)
        {
            // The actor behind it is made with the actor system (StartDataPlane).
            builder.Services.AddSingleton(new WireGuardTunnel(settings.DataPlane, wireGuardKey, DataPlaneTimeout,
                servesClients: settings.Role is PeerRole.Exit or PeerRole.Both));
        }
        builder.Services.AddSingleton(wireGuardKey);
        builder.Services.AddSingleton(time);
        // Counted whether or not they are served: --metrics serves them with the process's own series.
        var metrics = new PeerMetrics(settings.Metrics is null ? Prometheus.Metrics.NewCustomRegistry() : ProcessMetrics.NewRegistry());
        builder.Services.AddSingleton(metrics);
        if (handler is null)
        {
            builder.Services.AddSingleton<ICommandHandler>(services => AgentCommands.Registry(
                settings.StateDir, TunnelSettings.Of(settings, wireGuardKey), tunnel, services.GetRequiredService<TimeProvider>()));
        }
        else
        {
            builder.Services.AddSingleton(handler);
        }
        // PeerAgent.RunAsync decides when the agent stops (its token, which the CLI cancels on SIGINT and SIGTERM); the host
        // installs no signal handlers.
        builder.Services.AddSingleton<IHostLifetime, CallerLifetime>();

        builder.Services.AddAkka(ActorSystemName, (akka, services) =>
        {
            akka.AddHocon("""
                akka.log-dead-letters = off
                akka.log-dead-letters-during-shutdown = off
                # The agent stops through the host (RunAsync handles SIGINT and SIGTERM), not on process exit.
                akka.coordinated-shutdown.run-by-clr-shutdown-hook = off
                """, HoconAddMode.Prepend);
            // Akka's own events as one clean record each (Akka.Hosting's AddLoggerFactory put Akka's timestamp in the message).
            AkkaLogBridge.Use(akka, services.GetRequiredService<ILoggerFactory>(), Akka.Event.LogLevel.WarningLevel);
            akka.WithActors((system, registry) =>
            {
                var loggers = services.GetRequiredService<ILoggerFactory>();
                var time = services.GetRequiredService<TimeProvider>();
                var wireGuard = services.GetService<WireGuardTunnel>() is { } dataPlane ? StartDataPlane(system, services, settings, dataPlane, tunnel) : null;
                var executor = system.ActorOf(CommandExecutor.Props(
                    store,
                    services.GetRequiredService<ICommandHandler>(),
                    time,
                    loggers.CreateLogger<CommandExecutor>(),
                    settings.Id,
                    settings.Region,
                    metrics), "commands");
                registry.Register<CommandExecutor>(executor);
                var control = system.ActorOf(ControlChannel.Props(
                    settings, executor, status, outcome, time, loggers.CreateLogger<ControlChannel>(), Random.Shared, enrolled,
                    wireGuardKey, tunnel), "control");
                registry.Register<ControlChannel>(control);
                if (wireGuard is not null)
                    system.ActorOf(InterfaceMonitor.Props(wireGuard, control, settings.Timings, time, () => tunnel.Current.Exit, new IcmpPathProber()),
                        "interface-monitor");

                // Before the actors stop, a held exit is given back while the stream is still up (best effort, bounded).
                var releaseTimeout = settings.Timings.ExitReleaseTimeout + TimeSpan.FromSeconds(1);
                CoordinatedShutdown.Get(system).AddTask(CoordinatedShutdown.PhaseBeforeServiceUnbind, "release-exit", async () =>
                {
                    if (!status.Current.Connected || tunnel.Current.Exit is null)
                        return Akka.Done.Instance;
                    try
                    {
                        await control.Ask<ExitReleased>(ReleaseExit.Instance, releaseTimeout);
                    }
                    catch (Exception ex) when (ex is AskTimeoutException or TaskCanceledException)
                    {
                        // The channel logs what it could not do; the SuperNode notices the stream is gone.
                    }
                    return Akka.Done.Instance;
                });
            });
        });
        if (settings.Metrics is { } endpoint)
        {
            builder.Services.AddHostedService(services =>
            {
                var dataPlane = services.GetService<WireGuardTunnel>();
                var clock = services.GetRequiredService<TimeProvider>();
                metrics.Registry.AddBeforeCollectCallback(() => metrics.Show(status.Current, tunnel.Current, dataPlane?.Latest, clock.GetUtcNow()));
                return new MetricsEndpoint(endpoint, "--metrics", metrics.Registry);
            });
        }
        // Started after the actor system, stopped before it.
        builder.Services.AddHostedService(services => new StatusSocket(
            settings, wireGuardKey, status, tunnel, services.GetService<WireGuardTunnel>(), services.GetRequiredService<ILogger<StatusSocket>>()));

        return builder.Build();
    }

    /// <summary>How long one reconciliation of the interface may take before a command fails with a data-plane error.</summary>
    private static readonly TimeSpan DataPlaneTimeout = TimeSpan.FromSeconds(30);

    /// <summary>
    /// The WireGuardActor owning the interface: every tunnel change is made true through it before it is written; the
    /// state kept from the last run is applied again at once; a clean stop tears the interface down.
    /// </summary>
    private static WireGuardTunnel StartDataPlane(ActorSystem system, IServiceProvider services, PeerSettings settings, WireGuardTunnel wireGuard,
        TunnelStateStore tunnel)
    {
        var loggers = services.GetRequiredService<ILoggerFactory>();
        var actor = system.ActorOf(WireGuardActor.Props(HostCommand.Host, loggers.CreateLogger<WireGuardActor>()), "wireguard");
        wireGuard.Attach(actor);
        tunnel.UseDataPlane(wireGuard.ApplyAsync);
        var logger = loggers.CreateLogger<WireGuardTunnel>();
        tunnel.ApplyCurrentAsync(CancellationToken.None).ContinueWith(applied =>
        {
            if (applied.Exception?.GetBaseException() is { } problem)
                logger.LogError("Could not bring the WireGuard interface {Interface} back to the kept tunnel state: {Problem}; it is retried",
                    settings.DataPlane.WireGuardInterface, problem.Message);
        }, TaskScheduler.Default);
        CoordinatedShutdown.Get(system).AddTask(CoordinatedShutdown.PhaseServiceStop, "wireguard-teardown", async () =>
        {
            try
            {
                var done = await actor.Ask<TornDown>(Teardown.Instance, TimeSpan.FromSeconds(20));
                foreach (var problem in done.Problems)
                    logger.LogWarning("Tearing down {Interface}: {Problem}", settings.DataPlane.WireGuardInterface, problem);
            }
            catch (AskTimeoutException)
            {
                logger.LogWarning("The WireGuard interface {Interface} was not torn down within 20 s", settings.DataPlane.WireGuardInterface);
            }
            return Akka.Done.Instance;
        });
        return wireGuard;
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

    internal PeerAgent(IHost host, PeerStatus status, PeerOutcome outcome, AppliedCommandStore store, TunnelStateStore tunnel,
        WireGuardKey wireGuardKey, StateDirectoryLock stateLock)
    {
        this.host = host;
        this.outcome = outcome;
        this.store = store;
        this.stateLock = stateLock;
        Status = status;
        Tunnel = tunnel;
        WireGuardKey = wireGuardKey;
    }

    public PeerStatus Status { get; }

    /// <summary>The tunnel state the SuperNode's commands set up.</summary>
    public TunnelStateStore Tunnel { get; }

    /// <summary>This peer's WireGuard key (<c>wireguard.key</c> in the state directory).</summary>
    public WireGuardKey WireGuardKey { get; }

    /// <summary>Completes when the agent decides to stop by itself (a permanent refusal).</summary>
    public Task<PeerStop> Stopped => outcome.Stopped;

    public IServiceProvider Services => host.Services;

    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        Interlocked.Exchange(ref started, 1);
        await host.StartAsync(cancellationToken);
    }

    /// <summary>
    /// Runs until <paramref name="cancellationToken"/> is cancelled (exit code 0; the CLI cancels it on SIGINT and SIGTERM),
    /// the agent stops by itself (its <see cref="PeerStop.ExitCode"/>) or the host stops for another reason (1).
    /// </summary>
    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        var requested = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
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
            Tunnel.Dispose();
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
            var stream = OwnerOnly.Open(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
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
