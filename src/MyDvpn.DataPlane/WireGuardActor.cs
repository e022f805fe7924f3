using System.Collections.Immutable;
using Akka.Actor;
using Akka.Event;
using Microsoft.Extensions.Logging;
using MyDvpn.DataPlane.Devices;
using MyDvpn.DataPlane.Os;
using MyDvpn.DataPlane.Reconciliation;
using MyDvpn.HostOs;

namespace MyDvpn.DataPlane;

/// <summary>
/// Owns one WireGuard interface on this host (or in the runner's network namespace) and everything that goes with it:
/// addresses, routes, full-tunnel policy rules, the exit's nft table, the sysctls it changed. It works by
/// reconciliation: <see cref="Reconcile"/> gives the desired state; the actor reads the host, applies the difference
/// (peers one by one), re-reads and answers. One operation runs at a time (every OS call is async and piped back to
/// the actor); newer desired states arriving meanwhile are coalesced into one next run.
/// <para>A periodic timer re-reconciles, which repairs drift. When wireguard-go exits (crash, kill -9) the actor notices
/// the process exit and starts the device again after a backoff (a timer, doubling from
/// <see cref="WireGuardActorOptions.RestartBackoffMin"/> to <see cref="WireGuardActorOptions.RestartBackoffMax"/>, reset
/// when the device had run for <see cref="WireGuardActorOptions.RestartBackoffResetAfter"/>); the actor itself does not
/// restart, so what it remembers about the host (sysctl values to restore) survives.</para>
/// <para>On <see cref="Teardown"/>, or when stopped, it removes everything it created.</para>
/// </summary>
public sealed class WireGuardActor : ReceiveActor, IWithTimers
{
    private const string ReconcileTimer = "reconcile";
    private const string RestartTimer = "restart";

    private readonly InterfaceReconciler reconciler;
    private readonly WireGuardActorOptions options;
    private readonly TimeProvider time;
    private readonly ILogger logger;
    private readonly CancellationTokenSource stopping = new();
    private readonly Action<DeviceExit> deviceExited;

    private readonly List<IActorRef> reconcileWaiters = [];
    private readonly List<IActorRef> readWaiters = [];
    private readonly List<IActorRef> teardownWaiters = [];

    private InterfaceSpec? desired;
    private string? boundName;
    private HostMemory memory = HostMemory.Empty;
    private IWireGuardDevice? device;
    private DateTimeOffset deviceStartedAt;

    private Task<OperationResult>? running;
    private CancellationTokenSource? runningCancellation;
    private bool reconcileQueued;
    private bool teardownQueued;
    private bool restartScheduled;
    private int restartAttempt;

    /// <summary>The actor for one interface, driving the host through <paramref name="runner"/> (its namespace, if any).</summary>
    /// <exception cref="ArgumentException">The options are inconsistent.</exception>
    public static Props Props(HostCommand runner, ILogger logger, TimeProvider? timeProvider = null, WireGuardActorOptions? options = null)
    {
        options ??= WireGuardActorOptions.Default;
        if (options.Problem() is { } problem)
            throw new ArgumentException($"WireGuardActorOptions: {problem}", nameof(options));
        return Props(new IpHostNetwork(runner, options.SocketDirectory), new WireGuardDevices(runner, options, logger), logger,
            timeProvider ?? TimeProvider.System, options);
    }

    /// <summary>The actor over any host and device factory (tests give in-memory ones).</summary>
    internal static Props Props(IHostNetwork host, IWireGuardDeviceFactory devices, ILogger logger, TimeProvider time, WireGuardActorOptions options) =>
        Akka.Actor.Props.CreateBy(new Producer(() => new WireGuardActor(host, devices, logger, time, options)));

    private WireGuardActor(IHostNetwork host, IWireGuardDeviceFactory devices, ILogger logger, TimeProvider time, WireGuardActorOptions options)
    {
        reconciler = new InterfaceReconciler(host, devices, logger, time);
        this.options = options;
        this.time = time;
        this.logger = logger;
        var self = Self;
        deviceExited = exit => self.Tell(new DeviceExited(exit));

        Receive<Reconcile>(OnReconcile);
        Receive<ReadInterface>(_ =>
        {
            readWaiters.Add(Sender);
            StartNext();
        });
        Receive<Teardown>(_ => OnTeardown());
        Receive<OperationDone>(OnOperationDone);
        Receive<DeviceExited>(OnDeviceExited);
        Receive<Tick>(_ =>
        {
            if (desired is not null || device is not null || memory.HoldsHostState)
            {
                reconcileQueued = true;
                StartNext();
            }
        });
        Receive<RestartDevice>(_ =>
        {
            restartScheduled = false;
            reconcileQueued = true;
            StartNext();
        });
    }

    public ITimerScheduler Timers { get; set; } = null!;

    protected override void PreStart() => Timers.StartPeriodicTimer(ReconcileTimer, Tick.Instance, options.ReconcileInterval);

    private void OnReconcile(Reconcile message)
    {
        var problem = message.Desired is null ? null : SpecValidation.Problem(message.Desired);
        if (problem is null && message.Desired is { } spec && boundName is not null && boundName != spec.Name)
            problem = $"this actor owns interface {boundName}; reconcile it to absent before asking for {spec.Name}";
        if (problem is not null)
        {
            Sender.Tell(new ReconcileFailed(problem));
            return;
        }
        desired = message.Desired;
        if (desired is not null)
        {
            boundName = desired.Name;
        }
        else
        {
            // Nothing to restart any more: removing the interface need not wait for a restart's backoff.
            Timers.Cancel(RestartTimer);
            restartScheduled = false;
        }
        reconcileQueued = true;
        if (!Sender.IsNobody())
            reconcileWaiters.Add(Sender);
        StartNext();
    }

    private void OnTeardown()
    {
        desired = null;
        teardownQueued = true;
        teardownWaiters.Add(Sender);
        foreach (var waiter in reconcileWaiters)
            waiter.Tell(new ReconcileFailed("superseded by Teardown"));
        reconcileWaiters.Clear();
        reconcileQueued = false;
        Timers.Cancel(RestartTimer);
        restartScheduled = false;
        StartNext();
    }

    private void StartNext()
    {
        if (running is not null)
            return;
        if (teardownQueued)
        {
            teardownQueued = false;
            Start(Operation.Teardown, Take(teardownWaiters));
        }
        else if (reconcileQueued && !restartScheduled)
        {
            reconcileQueued = false;
            Start(desired is null ? Operation.ReconcileAbsent : Operation.Reconcile, Take(reconcileWaiters));
        }
        else if (readWaiters.Count > 0)
        {
            Start(Operation.Read, Take(readWaiters));
        }
    }

    private void Start(Operation operation, ImmutableArray<IActorRef> waiters)
    {
        var cancellation = CancellationTokenSource.CreateLinkedTokenSource(stopping.Token);
        cancellation.CancelAfter(options.OperationTimeout);
        var token = cancellation.Token;
        var (spec, name, hostMemory, current, exited) = (desired, boundName, memory, device, deviceExited);
        var task = operation switch
        {
            Operation.Reconcile => reconciler.ReconcileAsync(spec!, hostMemory, current, exited, token),
            Operation.Read => reconciler.ReadAsync(hostMemory, current, token),
            _ => reconciler.TeardownAsync(name, hostMemory, current, token),
        };
        running = task;
        runningCancellation = cancellation;
        task.PipeTo(Self,
            success: result => new OperationDone(operation, result, waiters),
            failure: e => new OperationDone(operation, new OperationResult(hostMemory, current, null, e.Message, []), waiters));
    }

    private void OnOperationDone(OperationDone done)
    {
        running = null;
        runningCancellation?.Dispose();
        runningCancellation = null;

        var result = done.Result;
        if (result.Device is not null && !ReferenceEquals(result.Device, device))
            deviceStartedAt = time.GetUtcNow();
        memory = result.Memory;
        device = result.Device;

        switch (done.Operation)
        {
            case Operation.Reconcile:
                if (result.Failure is null)
                {
                    Reply(done.Waiters, new Reconciled(result.Reading));
                }
                else
                {
                    logger.LogWarning("WireGuard interface {Interface}: reconciliation failed: {Reason}", boundName, result.Failure);
                    Reply(done.Waiters, new ReconcileFailed(result.Failure));
                }
                break;
            case Operation.ReconcileAbsent:
                ForgetNameIfClean();
                Reply(done.Waiters, result.Failure is null ? new Reconciled(null) : new ReconcileFailed(result.Failure));
                break;
            case Operation.Teardown:
                ForgetNameIfClean();
                if (!result.Problems.IsEmpty)
                    logger.LogWarning("WireGuard interface {Interface}: teardown left problems: {Problems}", boundName, string.Join("; ", result.Problems));
                Reply(done.Waiters, new TornDown(result.Problems));
                break;
            case Operation.Read:
                Reply(done.Waiters, new InterfaceRead(result.Reading));
                break;
        }

        if (device is { HasExited: true })
            ScheduleRestart(null);
        StartNext();
    }

    private void OnDeviceExited(DeviceExited message)
    {
        var exit = message.Exit;
        if (device is null || device.Id != exit.DeviceId)
            return; // an older device, or one the running operation is replacing
        logger.LogWarning("WireGuard interface {Interface}: wireguard-go exited (code {ExitCode}): {Output}", exit.Name, exit.ExitCode, exit.LastOutput);
        if (running is null)
            ScheduleRestart(exit);
        // Otherwise the running operation's result carries the exited device, and OnOperationDone schedules the restart.
    }

    private void ScheduleRestart(DeviceExit? exit)
    {
        if (restartScheduled || desired is null)
            return;
        if (time.GetUtcNow() - deviceStartedAt >= options.RestartBackoffResetAfter)
            restartAttempt = 0;
        var delay = RestartDelay(restartAttempt, options.RestartBackoffMin, options.RestartBackoffMax);
        restartAttempt++;
        restartScheduled = true;
        Timers.StartSingleTimer(RestartTimer, RestartDevice.Instance, delay);
        logger.LogWarning("WireGuard interface {Interface}: starting the device again in {Delay} (restart {Attempt}{Reason})",
            boundName, delay, restartAttempt, exit is null ? "" : $", exit code {exit.ExitCode}");
    }

    /// <summary>The wait before restart number <paramref name="attempt"/> (0-based): min · 2^attempt, at most max.</summary>
    internal static TimeSpan RestartDelay(int attempt, TimeSpan min, TimeSpan max) =>
        TimeSpan.FromTicks(Math.Min(max.Ticks, min.Ticks * (1L << Math.Clamp(attempt, 0, 20))));

    private void ForgetNameIfClean()
    {
        if (desired is null && device is null && !memory.HoldsHostState)
            boundName = null;
    }

    /// <summary>Stopped without <see cref="Teardown"/>: removes what the actor created, waiting at most
    /// <see cref="WireGuardActorOptions.StopCleanupTimeout"/> (PostStop cannot await; it blocks this one time).</summary>
    protected override void PostStop()
    {
        stopping.Cancel();
        var (lastMemory, lastDevice) = (memory, device);
        if (running is not null)
        {
            try
            {
                // Its result is newer than what the actor holds (a device it replaced was already destroyed by it).
                if (running.Wait(options.StopCleanupTimeout / 3))
                    (lastMemory, lastDevice) = (running.Result.Memory, running.Result.Device);
            }
            catch (AggregateException)
            {
                // The operation failed; what the actor knew before it is all there is.
            }
        }

        if (boundName is not null && (lastDevice is not null || lastMemory.HoldsHostState || desired is not null))
        {
            var name = boundName;
            try
            {
                using var timeout = new CancellationTokenSource(options.StopCleanupTimeout);
                var cleanup = Task.Run(() => reconciler.TeardownAsync(name, lastMemory, lastDevice, timeout.Token));
                if (!cleanup.Wait(options.StopCleanupTimeout))
                    logger.LogWarning("WireGuard interface {Interface}: cleanup on stop did not finish within {Timeout}", name, options.StopCleanupTimeout);
                else if (!cleanup.Result.Problems.IsEmpty)
                    logger.LogWarning("WireGuard interface {Interface}: cleanup on stop left problems: {Problems}", name, string.Join("; ", cleanup.Result.Problems));
            }
            catch (AggregateException e)
            {
                logger.LogWarning("WireGuard interface {Interface}: cleanup on stop failed: {Error}", name, e.InnerException?.Message ?? e.Message);
            }
        }
        else
        {
            lastDevice?.Dispose();
        }
        runningCancellation?.Dispose();
        stopping.Dispose();
        base.PostStop();
    }

    private static ImmutableArray<IActorRef> Take(List<IActorRef> waiters)
    {
        var taken = waiters.ToImmutableArray();
        waiters.Clear();
        return taken;
    }

    private static void Reply(ImmutableArray<IActorRef> waiters, object message)
    {
        foreach (var waiter in waiters)
        {
            if (!waiter.IsNobody())
                waiter.Tell(message);
        }
    }

    private enum Operation
    {
        Reconcile,
        ReconcileAbsent,
        Read,
        Teardown,
    }

    // Arriving after the actor stopped (an operation cancelled by PostStop, a device it ended) is expected: no dead-letter noise.
    private sealed record OperationDone(Operation Operation, OperationResult Result, ImmutableArray<IActorRef> Waiters) : IDeadLetterSuppression;

    private sealed record DeviceExited(DeviceExit Exit) : IDeadLetterSuppression;

    private sealed record Tick
    {
        public static readonly Tick Instance = new();
    }

    private sealed record RestartDevice
    {
        public static readonly RestartDevice Instance = new();
    }

    private sealed class Producer(Func<WireGuardActor> create) : IIndirectActorProducer
    {
        public Type ActorType => typeof(WireGuardActor);

        public ActorBase Produce() => create();

        public void Release(ActorBase actor)
        {
        }
    }
}
