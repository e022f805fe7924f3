namespace MyDvpn.Common;

/// <summary>
/// Keyed single and periodic timers on a <see cref="TimeProvider"/>, for an actor whose time a test moves by hand: the
/// clock that says "now" also fires the timers. A timer's message reaches the actor wrapped in <see cref="Fired"/>
/// (through <c>deliver</c>, the actor's <c>Self.Tell</c>); <see cref="Accept"/> unwraps it only while that timer is still
/// the current one under its key, so a timer cancelled or restarted after its message was sent is ignored (the guarantee
/// of Akka's <c>IWithTimers</c>). Start, cancel and accept on the actor's thread only.
/// </summary>
public sealed class ClockTimers(TimeProvider time, Action<object> deliver) : IDisposable
{
    private readonly Dictionary<string, Entry> _timers = new(StringComparer.Ordinal);
    private long _generation;

    /// <summary>A timer's message, as the actor receives it.</summary>
    public sealed record Fired(string Key, long Generation, object Message);

    public void StartSingle(string key, object message, TimeSpan delay) => Arm(key, message, delay, Timeout.InfiniteTimeSpan);

    public void StartPeriodic(string key, object message, TimeSpan interval) => Arm(key, message, interval, interval);

    /// <summary>A single or periodic timer, as a decision's timer effect names it.</summary>
    public void Start(string key, object message, TimeSpan delay, bool periodic)
    {
        if (periodic)
            StartPeriodic(key, message, delay);
        else
            StartSingle(key, message, delay);
    }

    public bool IsActive(string key) => _timers.ContainsKey(key);

    public void Cancel(string key)
    {
        if (_timers.Remove(key, out var entry))
            entry.Timer.Dispose();
    }

    /// <summary>The timer's message if it is still current (a single timer is then done), else null.</summary>
    public object? Accept(Fired fired)
    {
        if (!_timers.TryGetValue(fired.Key, out var entry) || entry.Generation != fired.Generation)
            return null;
        if (!entry.Periodic)
            Cancel(fired.Key);
        return fired.Message;
    }

    public void Dispose()
    {
        foreach (var entry in _timers.Values)
            entry.Timer.Dispose();
        _timers.Clear();
    }

    private void Arm(string key, object message, TimeSpan due, TimeSpan period)
    {
        Cancel(key);
        var fired = new Fired(key, ++_generation, message);
        var timer = time.CreateTimer(static state => ((Action)state!)(), (Action)(() => deliver(fired)),
            due > TimeSpan.Zero ? due : TimeSpan.Zero, period);
        _timers[key] = new Entry(timer, fired.Generation, period != Timeout.InfiniteTimeSpan);
    }

    private sealed record Entry(ITimer Timer, long Generation, bool Periodic);
}
