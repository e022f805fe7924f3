using MyDvpn.Protocol.Control;

namespace MyDvpn.SuperNode.Edge;

/// <summary>How many messages of one kind a peer's stream may send: a burst, and a refill per second (token bucket).</summary>
public sealed class MessageRate
{
    public int Burst { get; init; }
    public double PerSecond { get; init; }

    public void Validate(string name)
    {
        if (Burst < 1)
            throw new ArgumentException($"must be at least 1, was {Burst}", $"{name}:{nameof(Burst)}");
        if (!(PerSecond > 0))
            throw new ArgumentException($"must be above 0, was {PerSecond}", $"{name}:{nameof(PerSecond)}");
    }
}

/// <summary>
/// The message rates an authenticated stream is held to (Super:Edge:Messages:…). The defaults are many times what an
/// agent sends — a Pong per heartbeat and a Ping a second at most, a StatusReport every 5 s and one at each handshake or
/// failed probe, an ExitRequest per 30 s unanswered or per backoff (2 s and up) — so a working peer never meets them.
/// </summary>
public sealed class StreamMessageRates
{
    /// <summary>Pings and Pongs together.</summary>
    public MessageRate Heartbeats { get; init; } = new() { Burst = 30, PerSecond = 10 };
    public MessageRate StatusReports { get; init; } = new() { Burst = 10, PerSecond = 1 };
    public MessageRate ExitRequests { get; init; } = new() { Burst = 10, PerSecond = 0.5 };
    public MessageRate ExitReleases { get; init; } = new() { Burst = 10, PerSecond = 0.5 };
    public MessageRate InfoRequests { get; init; } = new() { Burst = 5, PerSecond = 1 };

    /// <summary>
    /// Answers to no command this stream is waiting for (a duplicate, an unknown id). An answer to a command written to the
    /// stream and not answered yet is never limited: the SuperNode's own commands bound those.
    /// </summary>
    public MessageRate StrayResponses { get; init; } = new() { Burst = 20, PerSecond = 2 };

    /// <summary>
    /// Dropped messages a stream may run up before it is closed with <c>RATE_LIMITED</c>: a burst, and how many drops a
    /// second are forgiven.
    /// </summary>
    public MessageRate Drops { get; init; } = new() { Burst = 100, PerSecond = 1 };

    public void Validate()
    {
        Heartbeats.Validate(nameof(Heartbeats));
        StatusReports.Validate(nameof(StatusReports));
        ExitRequests.Validate(nameof(ExitRequests));
        ExitReleases.Validate(nameof(ExitReleases));
        InfoRequests.Validate(nameof(InfoRequests));
        StrayResponses.Validate(nameof(StrayResponses));
        Drops.Validate(nameof(Drops));
    }
}

/// <summary>
/// One authenticated stream's message limits, on the stream's clock: a token bucket per kind of message
/// (<see cref="StreamMessageRates"/>). A message over its kind's limit is dropped; a stream whose drops outrun
/// <see cref="StreamMessageRates.Drops"/> is to be closed. Owned by one <see cref="EdgeStream"/> actor: not thread-safe.
/// </summary>
public sealed class StreamMessageLimits(StreamMessageRates rates, TimeProvider time)
{
    public enum Verdict { Admit, Drop, Close }

    private readonly Dictionary<string, Bucket> buckets = new(StringComparer.Ordinal);
    private Bucket? drops;

    /// <summary>Messages dropped on this stream so far.</summary>
    public long Dropped { get; private set; }

    /// <summary>The limit of answers to no command the stream waits for, as metrics name it.</summary>
    public const string StrayResponses = "stray_command_response";

    /// <summary>The names of the limits (<see cref="LimitOf"/>, and <see cref="StrayResponses"/>), as metrics label them.</summary>
    public static readonly IReadOnlyList<string> Kinds = ["heartbeat", "status_report", "exit_request", "exit_release", "info_request", StrayResponses];

    /// <summary>The limit a message of <paramref name="payload"/> counts against, and its name in metrics; null: not limited here.</summary>
    public (string Kind, MessageRate Rate)? LimitOf(ControlMessage.PayloadOneofCase payload) => payload switch
    {
        ControlMessage.PayloadOneofCase.Ping or ControlMessage.PayloadOneofCase.Pong => ("heartbeat", rates.Heartbeats),
        ControlMessage.PayloadOneofCase.StatusReport => ("status_report", rates.StatusReports),
        ControlMessage.PayloadOneofCase.ExitRequest => ("exit_request", rates.ExitRequests),
        ControlMessage.PayloadOneofCase.ExitRelease => ("exit_release", rates.ExitReleases),
        ControlMessage.PayloadOneofCase.InfoRequest => ("info_request", rates.InfoRequests),
        _ => null,
    };

    /// <summary>Whether a message of <paramref name="kind"/> (at <paramref name="rate"/>) goes on, is dropped, or ends the stream.</summary>
    public Verdict Admit(string kind, MessageRate rate)
    {
        var now = time.GetUtcNow();
        if (!buckets.TryGetValue(kind, out var bucket))
            buckets[kind] = bucket = new Bucket(rate, now);
        if (bucket.TryTake(now))
            return Verdict.Admit;
        Dropped++;
        drops ??= new Bucket(rates.Drops, now);
        return drops.TryTake(now) ? Verdict.Drop : Verdict.Close;
    }

    /// <summary>A token bucket that starts full.</summary>
    private sealed class Bucket(MessageRate rate, DateTimeOffset now)
    {
        private double tokens = rate.Burst;
        private DateTimeOffset at = now;

        public bool TryTake(DateTimeOffset now)
        {
            var elapsed = Math.Max(0, (now - at).TotalSeconds);
            tokens = Math.Min(rate.Burst, tokens + (elapsed * rate.PerSecond));
            at = now;
            if (tokens < 1)
                return false;
            tokens--;
            return true;
        }
    }
}
