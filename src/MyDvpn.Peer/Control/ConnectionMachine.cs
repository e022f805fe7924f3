using Google.Protobuf;
using Microsoft.Extensions.Logging;
using MyDvpn.Common;
using MyDvpn.Peer.Commands;
using MyDvpn.Peer.Tunnel;
using MyDvpn.Protocol.Control;

namespace MyDvpn.Peer.Control;

/// <summary>Where the control stream stands.</summary>
internal enum ConnectionPhase
{
    /// <summary>No stream: the next opens when its wait is over.</summary>
    Waiting,
    AwaitingChallenge,
    AwaitingAuthResponse,
    Connected,

    /// <summary>Refused for good: the agent stops.</summary>
    Stopped,
}

/// <summary>
/// The control stream's machine, as a value: open a stream to the current SuperNode, answer its challenge, and once
/// authenticated answer pings, hand commands to the executor and send their answers and the interface's readings. A
/// stream that ends is opened again after a jittered exponential backoff — to the same SuperNode if it had been
/// authenticated, to the next known one if the attempt failed; one authenticated for <see cref="PeerTimings.StableAfter"/>
/// resets the backoff. No AuthResponse within <see cref="PeerTimings.AuthTimeout"/>, or nothing heard for
/// <see cref="PeerTimings.MissedHeartbeats"/> heartbeat intervals, ends the stream. A refusal the
/// <see cref="RefusalCatalogue"/> calls permanent stops the agent, saying why. <see cref="Decide"/> is a pure function of
/// the state, the message, the time and a random sample for the backoff's jitter.
/// </summary>
internal sealed record ConnectionMachine
{
    public const string ConnectTimer = "connect", AuthTimer = "auth-deadline", SilenceTimer = "silence";

    public required PeerSettings Settings { get; init; }

    public ConnectionPhase Phase { get; init; }

    /// <summary>The current (or last) stream's number: messages of older streams are ignored.</summary>
    public int Generation { get; init; }

    /// <summary>The SuperNode of the current (or last) stream.</summary>
    public HostPort? Endpoint { get; init; }

    public required SuperNodeRotation Rotation { get; init; }

    public required ReconnectBackoff Backoff { get; init; }

    /// <summary>The SuperNode whose challenge the current stream answered.</summary>
    public string? ChallengedBy { get; init; }

    /// <summary>The SuperNode that authenticated the last stream.</summary>
    public string? SuperNodeId { get; init; }

    public string? SessionId { get; init; }

    public DateTimeOffset LastHeard { get; init; }

    public DateTimeOffset AuthenticatedAt { get; init; }

    public TimeSpan Heartbeat { get; init; }

    /// <summary>Whether this identity has enrolled (the token is presented until it has).</summary>
    public bool Enrolled { get; init; }

    public bool TokenPresented { get; init; }

    /// <summary>The agent is stopping: no reconnect.</summary>
    public bool Closing { get; init; }

    /// <summary>Streams opened since the agent started.</summary>
    public int Attempts { get; init; }

    /// <summary>Streams authenticated since the agent started.</summary>
    public int Authentications { get; init; }

    /// <summary>Why the last stream ended or failed.</summary>
    public string? LastProblem { get; init; }

    public static ConnectionMachine Initial(PeerSettings settings, bool enrolled) => new()
    {
        Settings = settings,
        Rotation = new SuperNodeRotation(settings.SuperNodes),
        Backoff = new ReconnectBackoff(settings.Timings.ReconnectBase, settings.Timings.ReconnectCap),
        Enrolled = enrolled,
    };

    private PeerTimings Timings => Settings.Timings;

    /// <summary>Whether a message of stream <paramref name="generation"/> is for the stream that is open now.</summary>
    public bool IsCurrent(int generation) =>
        Phase is ConnectionPhase.AwaitingChallenge or ConnectionPhase.AwaitingAuthResponse or ConnectionPhase.Connected && Generation == generation;

    /// <param name="jitter">A uniform sample in [0, 1] for the backoff, should the decision need one.</param>
    public Decision<ConnectionMachine> Decide(object message, DateTimeOffset now, double jitter) => message switch
    {
        Connect => Open(now),
        Incoming incoming when IsCurrent(incoming.Generation) => Receive(incoming.Message, incoming.Server, now, jitter),
        StreamEnded ended when IsCurrent(ended.Generation) => Ended(Decision<ConnectionMachine>.Of(this), ended.End, now, jitter),
        AuthDeadline deadline when IsCurrent(deadline.Generation) && Phase != ConnectionPhase.Connected =>
            Drop($"no AuthResponse within {Timings.AuthTimeout.TotalMilliseconds:F0} ms", now, jitter),
        SilenceCheck check when IsCurrent(check.Generation) && Phase == ConnectionPhase.Connected => CheckSilence(now, jitter),
        DropStream drop when Phase is not (ConnectionPhase.Waiting or ConnectionPhase.Stopped) => Drop(drop.Why, now, jitter),
        CommandAnswered answered => Answer(answered.Response),
        InterfaceReadingChanged { Reading: { } reading } changed when Phase == ConnectionPhase.Connected =>
            Decision<ConnectionMachine>.Of(this).Do(new ChannelEffect.Send(new ControlMessage { StatusReport = StatusReportOf(reading, changed.ProbeFailed) })),
        ChannelClosing => Decision<ConnectionMachine>.Of(this with { Closing = true }).Do(new ChannelEffect.CancelTimer(ConnectTimer)),
        _ => Decision<ConnectionMachine>.Of(this),
    };

    private Decision<ConnectionMachine> Open(DateTimeOffset now)
    {
        if (Phase != ConnectionPhase.Waiting || Closing)
            return Decision<ConnectionMachine>.Of(this);
        var endpoint = Rotation.Current;
        var generation = Generation + 1;
        var opened = this with
        {
            Phase = ConnectionPhase.AwaitingChallenge,
            Generation = generation,
            Endpoint = endpoint,
            ChallengedBy = null,
            SuperNodeId = null,
            SessionId = null,
            LastHeard = now,
            Attempts = Attempts + 1,
        };
        return Decision<ConnectionMachine>.Of(opened)
            .Log(LogLevel.Information, "Connecting to SuperNode {Endpoint} (attempt {Attempt})", endpoint.ToString(), opened.Attempts)
            .Do(new ChannelEffect.OpenStream(generation, endpoint),
                new ChannelEffect.StartTimer(AuthTimer, new AuthDeadline(generation), Timings.AuthTimeout));
    }

    private Decision<ConnectionMachine> Receive(ControlMessage message, ServerCertificate? server, DateTimeOffset now, double jitter)
    {
        var d = Decision<ConnectionMachine>.Of(this with { LastHeard = now });
        switch (Phase, message.PayloadCase)
        {
            case (ConnectionPhase.AwaitingChallenge, ControlMessage.PayloadOneofCase.AuthChallenge):
                var challenge = message.AuthChallenge;
                // The SuperNode that challenges must be the one its certificate names: a certificate of another
                // SuperNode (leaked, or a relay in between) gets no answer, and the peer tries the next SuperNode.
                if (server is null)
                    return d.State.Drop("the stream's TLS handshake accepted no SuperNode certificate", now, jitter);
                if (server.Identity.Id != challenge.SupernodeId)
                {
                    return d.State.Drop(
                        $"the server challenged as SuperNode '{challenge.SupernodeId}' but its certificate names {server.Identity} ({server.Identity.Uri})",
                        now, jitter);
                }
                var presentToken = !Enrolled && Settings.Token is not null;
                return d.With(s => s with { Phase = ConnectionPhase.AwaitingAuthResponse, ChallengedBy = challenge.SupernodeId, TokenPresented = presentToken })
                    .Log(LogLevel.Debug, "Answering the challenge of SuperNode {SuperNodeId}{Enrollment}", challenge.SupernodeId,
                        presentToken ? " with the enrollment token" : "")
                    .Do(new ChannelEffect.AnswerChallenge(challenge, presentToken, server));
            case (ConnectionPhase.AwaitingAuthResponse, ControlMessage.PayloadOneofCase.AuthResponse):
                return d.State.Authenticated(d, message.AuthResponse, now);
            case (ConnectionPhase.Connected, ControlMessage.PayloadOneofCase.Ping):
                return d.Do(new ChannelEffect.Send(new ControlMessage { Pong = new Pong { Sequence = message.Ping.Sequence, PingSentAt = message.Ping.SentAt } }));
            case (ConnectionPhase.Connected, ControlMessage.PayloadOneofCase.Command):
                return d.Do(new ChannelEffect.Execute(message.Command));
            case (ConnectionPhase.Connected, ControlMessage.PayloadOneofCase.ExitRequestFailed):
                return d.Do(new ChannelEffect.TellExitRequestMachine(message.ExitRequestFailed));
            case (ConnectionPhase.Connected, _):
                return d.Log(LogLevel.Debug, "Ignoring {Payload} from the SuperNode", message.PayloadCase.ToString());
            default:
                var waitedFor = Phase == ConnectionPhase.AwaitingChallenge ? "an AuthChallenge" : "an AuthResponse";
                return d.State.Drop($"the SuperNode sent {message.PayloadCase} while the peer waited for {waitedFor}", now, jitter);
        }
    }

    private Decision<ConnectionMachine> Authenticated(Decision<ConnectionMachine> d, AuthResponse response, DateTimeOffset now)
    {
        var superNodeId = string.IsNullOrEmpty(response.SupernodeId) ? ChallengedBy : response.SupernodeId;
        var (heartbeat, clamped) = HeartbeatFor(response.HeartbeatIntervalMs, Timings);
        if (clamped)
        {
            d = d.Log(LogLevel.Warning,
                "SuperNode {SuperNodeId} asked for a heartbeat interval of {OfferedMs} ms, outside {MinMs}-{MaxMs} ms; using {HeartbeatMs} ms",
                superNodeId, (long)response.HeartbeatIntervalMs, (long)Timings.MinHeartbeat.TotalMilliseconds, (long)Timings.MaxHeartbeat.TotalMilliseconds,
                (long)heartbeat.TotalMilliseconds);
        }
        var learned = new List<HostPort>();
        foreach (var superNode in response.RegionSupernodes)
        {
            try
            {
                learned.Add(HostPort.Parse(superNode.GrpcEndpoint, "region_supernodes"));
            }
            catch (ConfigurationException ex)
            {
                d = d.Log(LogLevel.Warning, "Ignoring SuperNode {SuperNodeId} of the region's list: {Problem}", superNode.SupernodeId, ex.Message);
            }
        }
        var rotation = Rotation.Learn(learned);
        var enroll = TokenPresented && !Enrolled;
        // Checked twice an interval: a silent stream is noticed within 3 to 3.5 intervals.
        var check = TimeSpan.FromTicks(Math.Max(heartbeat.Ticks / 2, TimeSpan.FromMilliseconds(10).Ticks));
        var connected = d.State with
        {
            Phase = ConnectionPhase.Connected,
            SessionId = response.SessionId,
            SuperNodeId = superNodeId,
            AuthenticatedAt = now,
            Heartbeat = heartbeat,
            Rotation = rotation,
            Endpoint = rotation.Current,
            Authentications = Authentications + 1,
            Enrolled = Enrolled || enroll,
        };
        d = d.With(_ => connected)
            .Do(new ChannelEffect.CancelTimer(AuthTimer))
            .Log(LogLevel.Information,
                "Control stream authenticated by SuperNode {SuperNodeId} at {Endpoint}; heartbeat {HeartbeatMs} ms; {Known} SuperNodes known in region {Region}",
                superNodeId, rotation.Current.ToString(), (long)heartbeat.TotalMilliseconds, rotation.Endpoints.Count, Settings.Region)
            .Do(new ChannelEffect.StartTimer(SilenceTimer, new SilenceCheck(Generation), check, Periodic: true));
        if (enroll)
            d = d.Do(new ChannelEffect.SaveEnrollment(superNodeId ?? "", now));
        return d.Do(new ChannelEffect.TellExitRequestMachine(new StreamUp(Generation, response.ExitAssignmentId)));
    }

    /// <summary>
    /// The heartbeat interval to use for the <paramref name="offeredMs"/> an AuthResponse carries: the default for none
    /// (0), otherwise the offer held within <see cref="PeerTimings.MinHeartbeat"/> … <see cref="PeerTimings.MaxHeartbeat"/>;
    /// <c>Clamped</c> when the offer lay outside.
    /// </summary>
    public static (TimeSpan Heartbeat, bool Clamped) HeartbeatFor(uint offeredMs, PeerTimings timings)
    {
        if (offeredMs == 0)
            return (timings.DefaultHeartbeat, false);
        var offered = TimeSpan.FromMilliseconds(offeredMs);
        var heartbeat = offered < timings.MinHeartbeat ? timings.MinHeartbeat : offered > timings.MaxHeartbeat ? timings.MaxHeartbeat : offered;
        return (heartbeat, heartbeat != offered);
    }

    private Decision<ConnectionMachine> CheckSilence(DateTimeOffset now, double jitter)
    {
        var silent = now - LastHeard;
        var limit = Heartbeat * Timings.MissedHeartbeats;
        return silent > limit
            ? Drop($"nothing heard for {silent.TotalMilliseconds:F0} ms ({Timings.MissedHeartbeats} heartbeat intervals of {Heartbeat.TotalMilliseconds:F0} ms)", now, jitter)
            : Decision<ConnectionMachine>.Of(this);
    }

    private Decision<ConnectionMachine> Answer(CommandResponse response) =>
        Phase == ConnectionPhase.Connected
            ? Decision<ConnectionMachine>.Of(this).Do(new ChannelEffect.Send(new ControlMessage { CommandResponse = response }))
            : Decision<ConnectionMachine>.Of(this).Log(LogLevel.Information,
                "Answer to command {CommandId} not sent: no stream is up; the SuperNode resends the command and gets the same answer", response.CommandId);

    /// <summary>Ends the current stream from this side, as if the SuperNode had ended it.</summary>
    private Decision<ConnectionMachine> Drop(string why, DateTimeOffset now, double jitter) =>
        Ended(Decision<ConnectionMachine>.Of(this), new StreamEnd(null, null, false, why), now, jitter);

    private Decision<ConnectionMachine> Ended(Decision<ConnectionMachine> d, StreamEnd end, DateTimeOffset now, double jitter)
    {
        var wasAuthenticated = Phase == ConnectionPhase.Connected;
        var upFor = wasAuthenticated ? now - AuthenticatedAt : TimeSpan.Zero;
        var endpoint = Rotation.Current;
        d = d.With(s => s with { Phase = ConnectionPhase.Waiting, SessionId = null, LastProblem = end.Description })
            .Do(ChannelEffect.EndStream.Instance, new ChannelEffect.CancelTimer(AuthTimer), new ChannelEffect.CancelTimer(SilenceTimer),
                new ChannelEffect.TellExitRequestMachine(StreamDown.Instance));
        if (Closing)
            return d;
        if (end.Permanent)
        {
            // Permanent only for a reason the catalogue knows.
            // One line, the reason named once: what happened, then the fix.
            var explanation = Refusals.Explain(end.Reason!.Value, Settings, Enrolled);
            var refusal = $"the SuperNode at {endpoint} refused peer {Settings.Id} with {end.ReasonName} ({end.Detail})";
            return d.With(s => s with { Phase = ConnectionPhase.Stopped })
                .Log(LogLevel.Error, "Stopping: the SuperNode at {Endpoint} refused peer {PeerId} with {Reason} ({Detail}); {Explanation}",
                    endpoint.ToString(), Settings.Id, end.ReasonName, end.Detail, explanation)
                .Do(new ChannelEffect.StopAgent(new PeerStop(1, $"{refusal}; {explanation}")));
        }

        var backoff = wasAuthenticated && upFor >= Timings.StableAfter ? Backoff.Reset() : Backoff;
        // A stream that had been authenticated is retried where it was; a failed attempt moves on.
        var rotation = wasAuthenticated ? Rotation : Rotation.MoveNext();
        var (delay, next) = backoff.Next(jitter);
        return d.With(s => s with { Backoff = next, Rotation = rotation })
            .Log(LogLevel.Warning, "Control stream to {Endpoint} ended: {Why}; reconnecting to {Next} in {DelayMs} ms",
                endpoint.ToString(), end.Description, rotation.Current.ToString(), (long)delay.TotalMilliseconds)
            .Do(new ChannelEffect.StartTimer(ConnectTimer, Connect.Instance, delay));
    }

    /// <summary>What the SuperNode learns of this peer's WireGuard interface: each peer's endpoint, handshake and bytes.</summary>
    private static StatusReport StatusReportOf(MyDvpn.DataPlane.InterfaceReading reading, PathProbeFailed? probeFailed)
    {
        var report = new StatusReport
        {
            ProbeFailed = probeFailed is null
                ? null
                : new PathProbeFailure { PublicKey = ByteString.CopyFrom(probeFailed.PublicKey), SilentMs = (uint)Math.Min(probeFailed.SilentFor.TotalMilliseconds, uint.MaxValue) },
        };
        report.Peers.AddRange(reading.Peers.Select(p => new WireGuardPeerStatus
        {
            PublicKey = ByteString.CopyFrom(p.PublicKey),
            Endpoint = p.Endpoint ?? "",
            LastHandshake = p.LastHandshake is { } at ? Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(at) : null,
            RxBytes = p.RxBytes,
            TxBytes = p.TxBytes,
        }));
        return report;
    }
}
