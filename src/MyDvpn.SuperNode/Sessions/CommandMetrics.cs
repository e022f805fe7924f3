using MyDvpn.Protocol.Control;
using Prometheus;

namespace MyDvpn.SuperNode.Sessions;

/// <summary>What a session counts of a command it issued to its peer (<see cref="SessionEffect.CountCommand"/>).</summary>
public enum CommandStage
{
    /// <summary>Persisted, before its first delivery.</summary>
    Issued,

    /// <summary>Delivered again: no answer in time, or to a stream that attached later.</summary>
    Retried,

    /// <summary>The peer answered (with a result or an error of its own): timed from its issue.</summary>
    Answered,

    /// <summary>The session gave up on it (deadline, no answer after the last delivery, a rollback).</summary>
    Failed,
}

/// <summary>
/// The commands the sessions issue to their peers, by kind: <c>mydvpn_commands_issued_total</c>,
/// <c>mydvpn_commands_retried_total</c>, <c>mydvpn_commands_failed_total</c>, and <c>mydvpn_command_seconds</c> from issue to
/// answer. Counted by the session that runs the command, after its decision is persisted (live, never while a journal is
/// replayed); every kind is at zero from the start. <see cref="Default"/> is the one <c>/metrics</c> serves.
/// </summary>
public sealed class CommandMetrics
{
    /// <summary>From 10 ms (a peer next to the SuperNode) to two minutes (a command that waited for its peer to come back).</summary>
    public static readonly double[] Buckets = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

    public static readonly CommandMetrics Default = new(Metrics.DefaultFactory);

    private readonly Counter _issued;
    private readonly Counter _retried;
    private readonly Counter _failed;
    private readonly Histogram _seconds;

    public CommandMetrics(IMetricFactory factory)
    {
        var kind = new[] { "kind" };
        _issued = factory.CreateCounter("mydvpn_commands_issued_total", "Commands sessions issued to their peers, by kind.",
            new CounterConfiguration { LabelNames = kind });
        _retried = factory.CreateCounter("mydvpn_commands_retried_total",
            "Deliveries of a command after its first (no answer in time, or a stream that attached later), by kind.",
            new CounterConfiguration { LabelNames = kind });
        _failed = factory.CreateCounter("mydvpn_commands_failed_total",
            "Commands sessions gave up on without an answer (deadline, no answer after the last delivery, rolled back), by kind.",
            new CounterConfiguration { LabelNames = kind });
        _seconds = factory.CreateHistogram("mydvpn_command_seconds", "Time from a command's issue to its peer's answer, by kind.",
            new HistogramConfiguration { LabelNames = kind, Buckets = Buckets });
        foreach (var label in CommandKinds.All)
        {
            _issued.WithLabels(label);
            _retried.WithLabels(label);
            _failed.WithLabels(label);
            _seconds.WithLabels(label);
        }
    }

    public void Count(Command.BodyOneofCase kind, CommandStage stage, TimeSpan took)
    {
        var label = CommandKinds.Label(kind);
        switch (stage)
        {
            case CommandStage.Issued:
                _issued.WithLabels(label).Inc();
                break;
            case CommandStage.Retried:
                _retried.WithLabels(label).Inc();
                break;
            case CommandStage.Failed:
                _failed.WithLabels(label).Inc();
                break;
            case CommandStage.Answered:
                _seconds.WithLabels(label).Observe(Math.Max(0, took.TotalSeconds));
                break;
        }
    }
}
