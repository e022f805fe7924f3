using System.Collections.Immutable;
using Akka.Actor;
using Akka.Cluster.Sharding;
using Akka.Event;
using Akka.Persistence;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using MyDvpn.Hosting;
using MyDvpn.Protocol.Control;
using MyDvpn.SuperNode.Sessions;

namespace MyDvpn.SuperNode.Exits;

/// <summary>
/// A region's exits and who uses them (sharded entity type <see cref="ExitPoolEntityTypes.ExitPool"/>, entity id =
/// region; ARCHITECTURE §2 ExitPool). Exits' sessions announce them (<see cref="ExitOnline"/>, in memory); the pool
/// persists which subnet each exit owns and every assignment.
/// <para>
/// <b>Allocation</b>: pick an exit (<see cref="ExitPoolState.DecideReservation"/>), persist the reservation, issue
/// SetupExit (side exit) through the exit's <c>PeerSession</c> with a deadline of <see cref="ExitSettings.AckTimeout"/>,
/// and answer <see cref="ExitAllocated"/> once the exit acked with its key. An exit that refuses or does not answer
/// is rolled back (reservation cancelled, RemoveExit sent in case it applied late), kept out for the failure cooldown,
/// and the next one is tried, up to <see cref="ExitSettings.MaxExitAttempts"/>.
/// </para>
/// <para>
/// <b>Release</b> frees the client's address at once and sends the exit RemoveExit: commands to one exit are applied
/// in issue order, so a later SetupExit that reuses the address comes after it. A pool that restarts with setups
/// under way cancels them the same way; their callers, whose calls ended with the restart, ask again.
/// </para>
/// </summary>
public sealed class ExitPool : ReceivePersistentActor, IWithTimers
{
    public const string PersistenceIdPrefix = "exit-pool/";
    private const int SnapshotEvery = 100;

    private readonly ExitSettings _settings;
    private readonly TunnelAddressing _addressing;
    private readonly IActorRef _peers;
    private readonly TimeProvider _time;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly Snapshots _snapshots;

    // In memory only: rebuilt from the exits' announcements within a heartbeat.
    private readonly Dictionary<string, ExitPresence> _presence = new(StringComparer.Ordinal);
    private readonly Dictionary<string, ExitFailures> _failures = new(StringComparer.Ordinal);
    private readonly Dictionary<string, PendingSetup> _pending = new(StringComparer.Ordinal);
    private ExitPoolState _state;

    public ExitPool(string region, ExitSettings settings, IActorRef peers, TimeProvider time)
    {
        _settings = settings;
        _addressing = settings.Addressing();
        _peers = peers;
        _time = time;
        _state = ExitPoolState.Empty(region);
        PersistenceId = PersistenceIdPrefix + region;
        _snapshots = new Snapshots(this, SnapshotEvery, _log, $"Exit pool of region {region}");

        Recover<SnapshotOffer>(offer =>
            _snapshots.Restore<ExitPoolSnapshot>(offer, snapshot => _state = ExitPoolState.FromSnapshot(snapshot)));
        Recover<IExitPoolEvent>(evt => _state = _state.Apply(evt));
        Recover<RecoveryCompleted>(_ => CancelSetupsCutShort());

        Command<AllocateExit>(HandleAllocate);
        Command<CommandAccepted>(_ => { });
        Command<CommandOutcome>(HandleOutcome);
        Command<SetupOverdue>(overdue =>
        {
            if (_pending.TryGetValue(overdue.AssignmentId, out var pending) && pending.CommandId == overdue.CommandId)
                SetupFailed(pending, $"{pending.ExitPeerId} did not answer SetupExit within {_settings.AckTimeout.TotalSeconds:0.#} s");
        });
        Command<ReleaseExit>(HandleRelease);
        Command<ExitOnline>(online =>
            _presence[online.PeerId] = new ExitPresence(online.Capacity, online.PublicAddress, online.Rtt, _time.GetUtcNow()));
        Command<ExitOffline>(offline =>
        {
            if (_presence.Remove(offline.PeerId))
                _log.Info("Exit pool of region {0}: exit {1} went offline", Region, offline.PeerId);
        });
        Command<GetExitPool>(_ => Sender.Tell(View()));
        Command<GetAssignment>(get =>
        {
            var held = _state.Assignments.GetValueOrDefault(get.AssignmentId);
            Sender.Tell(new AssignmentDetails(held is { Active: true } ? _state.Record(held, _addressing) : null,
                held is not null && _presence.TryGetValue(held.ExitPeerId, out var presence) ? presence.PublicAddress : ""));
        });
        Command<StopExitPool>(_ => Context.Stop(Self));
        Command<ISnapshotResponse>(_snapshots.Handle);
    }

    public override string PersistenceId { get; }

    public ITimerScheduler Timers { get; set; } = null!;

    private string Region => _state.Region;

    /// <param name="peers">The region's <c>peers</c> shard region, through which exits get their commands.</param>
    public static Props Props(string region, ExitSettings settings, IActorRef peers, TimeProvider? time = null)
    {
        settings.Validate();
        return Akka.Actor.Props.Create(() => new ExitPool(region, settings, peers, time ?? TimeProvider.System));
    }

    private void HandleAllocate(AllocateExit request)
    {
        var sender = Sender;
        if (request.Region != Region)
        {
            sender.Tell(new ExitAllocationRefused(RefusalReason.WrongRegion,
                $"the exit pool of region {Region} got a request for region {request.Region}"));
            return;
        }

        if (_state.Assignments.TryGetValue(request.AssignmentId, out var existing))
        {
            if (existing.ClientPeerId != request.ClientPeerId || existing.ClientRegion != request.ClientRegion)
            {
                sender.Tell(new ExitAllocationRefused(RefusalReason.MalformedMessage,
                    $"assignment {request.AssignmentId} belongs to another client"));
            }
            else if (existing.Active)
            {
                sender.Tell(new ExitAllocated(_state.Record(existing, _addressing)));
            }
            else if (_pending.TryGetValue(request.AssignmentId, out var pending))
            {
                pending.Waiters.Add(sender);
            }
            else
            {
                sender.Tell(new ExitAllocationRefused(RefusalReason.Unavailable,
                    $"assignment {request.AssignmentId} is being rolled back; ask again"));
            }
            return;
        }

        var setup = new PendingSetup(request);
        setup.Waiters.Add(sender);
        _pending[request.AssignmentId] = setup;

        // A client holds one exit: an older assignment of the same client is superseded (its session lost track of it).
        var superseded = $"superseded by assignment {request.AssignmentId}";
        var older = _state.Assignments.Values
            .Where(a => a.ClientPeerId == request.ClientPeerId && a.ClientRegion == request.ClientRegion && a.AssignmentId != request.AssignmentId)
            .ToList();
        foreach (var setUp in older.Where(a => _pending.ContainsKey(a.AssignmentId)))
        {
            var olderSetup = _pending[setUp.AssignmentId];
            olderSetup.ReleaseRequested = true;
            olderSetup.ReleaseReason ??= superseded;
        }

        var releases = older.Where(a => !_pending.ContainsKey(a.AssignmentId))
            .Select(a => new AssignmentReleased(a.AssignmentId, superseded, _time.GetUtcNow()))
            .ToList();
        if (releases.Count == 0)
        {
            Reserve(setup);
            return;
        }

        // Reserved once the releases are applied, so the places they free count.
        var remaining = releases.Count;
        var released = older.ToDictionary(a => a.AssignmentId, StringComparer.Ordinal);
        PersistAll(releases, evt =>
        {
            Apply(evt);
            _log.Info("Exit pool of region {0}: assignment {1} of client {2}@{3} released: {4}", Region, evt.AssignmentId,
                request.ClientPeerId, request.ClientRegion, evt.Reason);
            SendRemove(released[evt.AssignmentId], evt.Reason);
            if (--remaining == 0)
                Reserve(setup);
        });
    }

    /// <summary>Reserves the best exit not tried yet and sends it SetupExit, or answers why none is left.</summary>
    private void Reserve(PendingSetup setup)
    {
        ForgetStaleExits();
        var decision = _state.DecideReservation(setup.Request, _presence, setup.Tried, _failures, _time.GetUtcNow(), _settings, _addressing);
        switch (decision)
        {
            case ReservationDecision.Refuse refuse:
                var refusal = setup.Failures.Count == 0
                    ? refuse.Refusal
                    : new ExitAllocationRefused(RefusalReason.ExitSetupFailed,
                        $"{string.Join("; ", setup.Failures)}; then {refuse.Refusal.Detail}");
                _log.Info("Exit pool of region {0}: no exit for client {1}@{2}: {3}", Region, setup.Request.ClientPeerId,
                    setup.Request.ClientRegion, refusal.Detail);
                Finish(setup, refusal);
                break;
            case ReservationDecision.Reserve reserve:
                setup.Tried.Add(reserve.ExitPeerId);
                PersistAll(reserve.Events, evt =>
                {
                    Apply(evt);
                    if (evt is AssignmentReserved reserved)
                        SendSetup(setup, reserved);
                });
                break;
        }
    }

    private void SendSetup(PendingSetup setup, AssignmentReserved reserved)
    {
        var assignment = _state.Assignments[reserved.AssignmentId];
        var record = _state.Record(assignment, _addressing);
        var command = new Command
        {
            CommandId = Guid.NewGuid().ToString("N"),
            Deadline = Timestamp.FromDateTimeOffset(_time.GetUtcNow() + _settings.AckTimeout),
            SetupExit = new SetupExit
            {
                AssignmentId = reserved.AssignmentId,
                Side = ExitSide.Exit,
                Peer = new WireGuardPeer { PublicKey = ByteString.CopyFrom(reserved.ClientPublicKey), AllowedIps = { record.ClientAddress } },
                TunnelAddresses = { record.ExitAddress },
                CounterpartPeerId = reserved.ClientPeerId,
                CounterpartRegion = reserved.ClientRegion,
            },
        };
        setup.ExitPeerId = reserved.ExitPeerId;
        setup.CommandId = command.CommandId;
        _log.Info("Exit pool of region {0}: exit {1} picked for client {2}@{3} (assignment {4}, address {5})", Region,
            reserved.ExitPeerId, reserved.ClientPeerId, reserved.ClientRegion, reserved.AssignmentId, record.ClientAddress);
        _peers.Tell(new IssueCommand(reserved.ExitPeerId, command));
        // The session answers at its deadline at the latest; this covers a session that is gone (node crash).
        Timers.StartSingleTimer("setup:" + reserved.AssignmentId, new SetupOverdue(reserved.AssignmentId, command.CommandId),
            _settings.AckTimeout + ExitSettings.OverdueGrace);
    }

    private void HandleOutcome(CommandOutcome outcome)
    {
        var setup = _pending.Values.FirstOrDefault(p => p.CommandId == outcome.CommandId);
        if (setup is null)
        {
            if (!outcome.Succeeded)
                _log.Info("Exit pool of region {0}: RemoveExit {1} on {2} ended: {3}", Region, outcome.CommandId, outcome.PeerId,
                    outcome.FailureReason ?? outcome.Response?.Failure?.Reason);
            return;
        }

        if (outcome.Response?.Result?.SetupExit is not { PublicKey.Length: 32 } result)
        {
            var why = outcome.FailureReason
                      ?? (outcome.Response?.Failure is { } failure
                          ? $"{CommandErrorName(failure.Code)}: {failure.Reason}"
                          : "it answered without its WireGuard public key");
            SetupFailed(setup, $"{setup.ExitPeerId} did not set up the client: {why}");
            return;
        }

        var endpoint = EndpointOf(setup.ExitPeerId!, result);
        if (endpoint is null)
        {
            SetupFailed(setup, $"{setup.ExitPeerId} gave no endpoint and its public address is unknown");
            return;
        }

        Timers.Cancel("setup:" + setup.Request.AssignmentId);
        Persist(new AssignmentActivated(setup.Request.AssignmentId, result.PublicKey.ToByteArray(), endpoint, _time.GetUtcNow()), evt =>
        {
            Apply(evt);
            var record = _state.Record(_state.Assignments[evt.AssignmentId], _addressing);
            _log.Info("Exit pool of region {0}: assignment {1} active: client {2}@{3} → exit {4} at {5}", Region, evt.AssignmentId,
                record.ClientPeerId, record.ClientRegion, record.ExitPeerId, endpoint);
            Finish(setup, new ExitAllocated(record));
        });
    }

    /// <summary>The exit's own endpoint, else the address its stream comes from and its WireGuard port.</summary>
    private string? EndpointOf(string exitPeerId, SetupExitResult result)
    {
        if (!string.IsNullOrEmpty(result.Endpoint))
            return result.Endpoint;
        if (result.ListenPort is 0 or > 65535 || !_presence.TryGetValue(exitPeerId, out var presence) || presence.PublicAddress.Length == 0)
            return null;
        return System.Net.IPAddress.TryParse(presence.PublicAddress, out var ip)
            ? new System.Net.IPEndPoint(ip, (int)result.ListenPort).ToString()
            : $"{presence.PublicAddress}:{result.ListenPort}";
    }

    /// <summary>Rolls the exit's half back and tries the next exit (or answers why not).</summary>
    private void SetupFailed(PendingSetup setup, string why)
    {
        var exit = setup.ExitPeerId!;
        var assignmentId = setup.Request.AssignmentId;
        Timers.Cancel("setup:" + assignmentId);
        setup.CommandId = null;
        setup.Failures.Add(why);
        var now = _time.GetUtcNow();
        _failures[exit] = new ExitFailures((_failures.GetValueOrDefault(exit)?.Count ?? 0) + 1, now);
        _log.Warning("Exit pool of region {0}: setup of assignment {1} on exit {2} failed, rolling it back: {3}", Region, assignmentId, exit, why);
        var reserved = _state.Assignments.GetValueOrDefault(assignmentId);
        Persist(new AssignmentCancelled(assignmentId, why, now), evt =>
        {
            Apply(evt);
            if (reserved is not null)
                SendRemove(reserved, "setup rolled back: " + why);
            if (setup.ReleaseRequested || setup.Tried.Count >= _settings.MaxExitAttempts)
            {
                Finish(setup, new ExitAllocationRefused(RefusalReason.ExitSetupFailed,
                    setup.ReleaseRequested ? $"released during the setup; {why}" : string.Join("; ", setup.Failures)));
                return;
            }
            Reserve(setup);
        });
    }

    /// <summary>Answers everyone waiting on the setup, then carries out a release asked for meanwhile.</summary>
    private void Finish(PendingSetup setup, object answer)
    {
        _pending.Remove(setup.Request.AssignmentId);
        foreach (var waiter in setup.Waiters)
            waiter.Tell(answer);
        if (setup.ReleaseRequested)
        {
            if (answer is ExitAllocated)
            {
                Release(setup.Request.AssignmentId, setup.ReleaseReason ?? "released", setup.ReleaseWaiters);
            }
            else
            {
                foreach (var waiter in setup.ReleaseWaiters)
                    waiter.Tell(new ExitReleased(setup.Request.AssignmentId, true));
            }
        }
    }

    private void HandleRelease(ReleaseExit release)
    {
        var sender = Sender;
        if (_pending.TryGetValue(release.AssignmentId, out var setup))
        {
            setup.ReleaseRequested = true;
            setup.ReleaseReason ??= release.Reason;
            setup.ReleaseWaiters.Add(sender);
            return;
        }

        if (!_state.Assignments.ContainsKey(release.AssignmentId))
        {
            sender.Tell(new ExitReleased(release.AssignmentId, false));
            return;
        }

        Release(release.AssignmentId, release.Reason, [sender]);
    }

    private void Release(string assignmentId, string reason, IReadOnlyList<IActorRef> waiters)
    {
        var assignment = _state.Assignments[assignmentId];
        Persist(new AssignmentReleased(assignmentId, reason, _time.GetUtcNow()), evt =>
        {
            Apply(evt);
            _log.Info("Exit pool of region {0}: assignment {1} of client {2}@{3} on exit {4} released: {5}", Region, assignmentId,
                assignment.ClientPeerId, assignment.ClientRegion, assignment.ExitPeerId, reason);
            SendRemove(assignment, reason);
            foreach (var waiter in waiters)
                waiter.Tell(new ExitReleased(assignmentId, true));
        });
    }

    /// <summary>The exit drops the client's half; a peer away now gets it when it reconnects within the deadline.</summary>
    private void SendRemove(PoolAssignment assignment, string reason) =>
        _peers.Tell(new IssueCommand(assignment.ExitPeerId, new Command
        {
            CommandId = Guid.NewGuid().ToString("N"),
            Deadline = Timestamp.FromDateTimeOffset(_time.GetUtcNow() + _settings.RemoveDeadline),
            RemoveExit = new RemoveExit
            {
                AssignmentId = assignment.AssignmentId,
                PeerPublicKey = ByteString.CopyFrom(assignment.ClientPublicKey),
                Side = ExitSide.Exit,
                Reason = reason,
            },
        }));

    /// <summary>Setups the journal shows under way had their callers and timers die with the last incarnation.</summary>
    private void CancelSetupsCutShort()
    {
        var cutShort = _state.Assignments.Values.Where(a => !a.Active).ToDictionary(a => a.AssignmentId, StringComparer.Ordinal);
        var now = _time.GetUtcNow();
        PersistAll(cutShort.Values.Select(a => new AssignmentCancelled(a.AssignmentId, "the exit pool restarted during the setup", now)), evt =>
        {
            Apply(evt);
            SendRemove(cutShort[evt.AssignmentId], evt.Reason);
        });
        if (cutShort.Count > 0)
            _log.Warning("Exit pool of region {0}: rolled back {1} setups cut short by a restart", Region, cutShort.Count);
    }

    private void ForgetStaleExits()
    {
        var now = _time.GetUtcNow();
        foreach (var (peerId, presence) in _presence.ToList())
        {
            if (now - presence.LastHeard > _settings.ExitOfflineAfter)
            {
                _presence.Remove(peerId);
                _log.Info("Exit pool of region {0}: exit {1} not announced for {2:0} s, counted offline", Region, peerId,
                    (now - presence.LastHeard).TotalSeconds);
            }
        }
    }

    private ExitPoolSnapshotView View()
    {
        ForgetStaleExits();
        var now = _time.GetUtcNow();
        var exits = _state.Subnets.Keys.Union(_presence.Keys)
            .Order(StringComparer.Ordinal)
            .Select(peerId =>
            {
                var presence = _presence.GetValueOrDefault(peerId);
                var failures = _failures.GetValueOrDefault(peerId);
                return new ExitView(peerId, presence is not null, presence?.Capacity ?? 0, _state.ClientsOf(peerId),
                    _state.Subnets.TryGetValue(peerId, out var subnet) ? _addressing.Subnet(subnet) : "",
                    presence?.Rtt, failures is not null && now - failures.Last < _settings.FailureCooldown ? failures.Count : 0,
                    presence?.PublicAddress ?? "");
            })
            .ToImmutableList();
        var assignments = _state.Assignments.Values
            .OrderBy(a => a.At).ThenBy(a => a.AssignmentId, StringComparer.Ordinal)
            .Select(a => _state.Record(a, _addressing))
            .ToImmutableList();
        return new ExitPoolSnapshotView(Region, exits, assignments);
    }

    private void Apply(IExitPoolEvent evt)
    {
        _state = _state.Apply(evt);
        _snapshots.AfterPersisted(_state.ToSnapshot);
    }

    private static string CommandErrorName(CommandError code) =>
        ControlReflection.Descriptor.EnumTypes.Single(e => e.ClrType == typeof(CommandError)).FindValueByNumber((int)code)?.Name ?? code.ToString();

    /// <summary>A setup waiting for its exit's answer.</summary>
    private sealed class PendingSetup(AllocateExit request)
    {
        public AllocateExit Request { get; } = request;
        public List<IActorRef> Waiters { get; } = [];
        public HashSet<string> Tried { get; } = new(StringComparer.Ordinal);
        public List<string> Failures { get; } = [];
        public string? ExitPeerId { get; set; }
        public string? CommandId { get; set; }
        public bool ReleaseRequested { get; set; }
        public string? ReleaseReason { get; set; }
        public List<IActorRef> ReleaseWaiters { get; } = [];
    }

    private sealed record SetupOverdue(string AssignmentId, string CommandId);
}
