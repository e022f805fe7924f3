using MyDvpn.Protocol.Control;

namespace MyDvpn.Peer.Control;

/// <summary>The agent is stopping: give the exit back (ExitRelease) and reconnect no more. Answered with <see cref="ExitReleased"/>.</summary>
public sealed record ReleaseExit
{
    public static readonly ReleaseExit Instance = new();
}

/// <summary>The answer to <see cref="ReleaseExit"/>: whether an ExitRelease was written to the stream.</summary>
public sealed record ExitReleased(bool Sent);

// What the connection machine decides on (besides CommandAnswered and InterfaceReadingChanged).

/// <summary>
/// A message read from the stream of <paramref name="Generation"/>, which runs over TLS with <paramref name="Server"/>'s
/// certificate (null: none was accepted, which a stream that reads anything never has).
/// </summary>
internal sealed record Incoming(int Generation, ControlMessage Message, ServerCertificate? Server = null);

/// <summary>The stream of <paramref name="Generation"/> ended, for the reason in <paramref name="End"/>.</summary>
internal sealed record StreamEnded(int Generation, StreamEnd End);

/// <summary>Time to open a stream: at start, and when a reconnect's wait is over.</summary>
internal sealed record Connect
{
    public static readonly Connect Instance = new();
}

/// <summary>The stream of <paramref name="Generation"/> has had its time to authenticate.</summary>
internal sealed record AuthDeadline(int Generation);

/// <summary>Time to check whether the stream of <paramref name="Generation"/> has been silent too long.</summary>
internal sealed record SilenceCheck(int Generation);

/// <summary>The channel ends the current stream from its side (e.g. its outbox was full), as if the SuperNode had.</summary>
internal sealed record DropStream(string Why);

/// <summary>The agent stops: no reconnect and no more exit requests.</summary>
internal sealed record ChannelClosing
{
    public static readonly ChannelClosing Instance = new();
}

// What the exit-request machine decides on (besides ExitRequestFailed and the executor's ExitChanged).

/// <summary>The stream of <paramref name="Generation"/> authenticated; its session holds <paramref name="SessionAssignmentId"/> ("" none).</summary>
internal sealed record StreamUp(int Generation, string SessionAssignmentId);

/// <summary>No stream is up any more.</summary>
internal sealed record StreamDown
{
    public static readonly StreamDown Instance = new();
}

/// <summary>The wait before asking for an exit again is over.</summary>
internal sealed record ExitRequestDue
{
    public static readonly ExitRequestDue Instance = new();
}

/// <summary>The ExitRequest sent on the stream of <paramref name="Generation"/> had its time to be answered.</summary>
internal sealed record ExitRequestUnanswered(int Generation);

/// <summary>The exit the session no longer holds was dropped from the tunnel state.</summary>
internal sealed record StaleExitDropped
{
    public static readonly StaleExitDropped Instance = new();
}
