using Akka.Actor;
using Microsoft.Extensions.Logging;
using MyDvpn.Protocol.Directory;
using MyDvpn.Security;
using Xunit.Abstractions;

namespace MyDvpn.SuperNode.Tests;

/// <summary>
/// The registrar against a real gRPC directory on loopback, with mutual TLS from a temporary CA. Its timers run on a manual
/// clock: a test waits only for real I/O, and moves the clock for the next report, a retry or a deadline.
/// </summary>
public sealed class DirectoryRegistrarTests : Akka.TestKit.Xunit2.TestKit
{
    // A registrar that throws is stopped rather than restarted, so a crash shows as a dead actor.
    private const string Config = """akka.actor.guardian-supervisor-strategy = "Akka.Actor.StoppingSupervisorStrategy" """;

    /// <summary>How long a test waits for real I/O (gRPC, files): only a failing test waits it out.</summary>
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(15);

    private static readonly SuperNodeRegistration Registration = new()
    {
        SupernodeId = "super-1",
        Region = "eu-west",
        GrpcEndpoint = "203.0.113.7:7443",
        PublicIp = "203.0.113.7",
        RelayPortLow = 40000,
        RelayPortHigh = 40999,
        Capacity = 500,
    };

    private static readonly SuperNodeLoad Load = new() { ConnectedPeers = 7, ExitsAvailable = 2 };

    private readonly TempDirectory temp = new();
    private readonly TlsMaterial baseTls;
    private readonly TlsMaterial superTls;
    private readonly RegionList regions = DirectoryCacheTests.SampleRegions();
    private readonly RegistrationStatus status = new();
    private readonly ManualTimeProvider clock = new();
    private readonly RecordingLogger log;

    public DirectoryRegistrarTests(ITestOutputHelper output)
        : base(Config, nameof(DirectoryRegistrarTests), output)
    {
        log = new RecordingLogger(output, nameof(DirectoryRegistrar));
        var pki = new Pki(temp);
        baseTls = TlsMaterial.Load(pki.IssueBase("base-1"));
        superTls = TlsMaterial.Load(pki.IssueSuper("super-1", "eu-west"));
    }

    [Fact]
    public async Task Registrar_reports_its_registration_and_load_and_becomes_registered()
    {
        var directory = new FakeDirectory(regions);
        await using var server = await DirectoryServer.StartAsync(baseTls, directory);
        using var client = new DirectoryClient([server.Address], superTls);
        Assert.False(status.IsRegistered);

        var registrar = StartRegistrar(client, new DirectoryCache(temp.Path));

        await AwaitAssertAsync(() => Assert.True(status.IsRegistered), Patience);
        var report = Assert.Single(directory.Reports);
        Assert.Equal(Registration, report.Registration);
        Assert.Equal(Load, report.Load);
        await StopAsync(registrar);
    }

    [Fact]
    public async Task Registrar_saves_the_directory_it_lists_to_the_cache_file()
    {
        var directory = new FakeDirectory(regions);
        await using var server = await DirectoryServer.StartAsync(baseTls, directory);
        using var client = new DirectoryClient([server.Address], superTls);
        var cache = new DirectoryCache(temp.Path);

        var registrar = StartRegistrar(client, cache);

        await AwaitAssertAsync(() =>
        {
            Assert.Equal(regions, cache.Regions);
            Assert.Equal(regions, new DirectoryCache(temp.Path).Regions);
        }, Patience);
        await StopAsync(registrar);
    }

    [Fact]
    public async Task Registrar_reports_again_when_the_directory_says_and_not_before()
    {
        var directory = new FakeDirectory(regions) { ReportIntervalMs = 5_000 };
        await using var server = await DirectoryServer.StartAsync(baseTls, directory);
        using var client = new DirectoryClient([server.Address], superTls);
        var registrar = StartRegistrar(client, new DirectoryCache(temp.Path));
        await AwaitAssertAsync(() => Assert.True(status.IsRegistered), Patience);
        await AssertAliveAsync(registrar); // the registrar has handled the answer: the next report's timer is armed

        clock.Advance(TimeSpan.FromMilliseconds(4_999));
        await AssertAliveAsync(registrar); // a round trip: a report due by now would have been sent before it answers
        Assert.Single(directory.Reports);

        clock.Advance(TimeSpan.FromMilliseconds(1));
        await AwaitAssertAsync(() => Assert.Equal(2, directory.Reports.Count), Patience);
        await StopAsync(registrar);
    }

    [Fact]
    public async Task Registrar_keeps_retrying_while_the_directory_is_unavailable_and_stays_registered()
    {
        var directory = new FakeDirectory(regions) { ReportIntervalMs = 200 };
        await using var server = await DirectoryServer.StartAsync(baseTls, directory);
        using var client = new DirectoryClient([server.Address], superTls);
        var registrar = StartRegistrar(client, new DirectoryCache(temp.Path));
        await AwaitAssertAsync(() => Assert.True(status.IsRegistered), Patience);

        directory.Unavailable = true;

        await AdvanceUntilAsync(() => Assert.True(directory.RefusedReports >= 2));
        Assert.True(status.IsRegistered);
        await AssertAliveAsync(registrar);
        // One warning for the outage, not one per refused report.
        Assert.Single(log.Entries, e => e.Level == LogLevel.Warning && e.Message.StartsWith("Directory report failed", StringComparison.Ordinal));

        var reportsBefore = directory.Reports.Count;
        directory.ReportIntervalMs = 60_000;
        directory.Unavailable = false;

        await AdvanceUntilAsync(() => Assert.True(directory.Reports.Count > reportsBefore));
        Assert.True(status.IsRegistered);
        await StopAsync(registrar);
    }

    [Fact]
    public async Task Registrar_survives_a_stopped_directory_and_reports_again_when_it_is_back()
    {
        var directory = new FakeDirectory(regions) { ReportIntervalMs = 200 };
        var server = await DirectoryServer.StartAsync(baseTls, directory);
        var address = server.Address;
        using var client = new DirectoryClient([address], superTls);
        var cache = new DirectoryCache(temp.Path);
        IActorRef registrar;
        try
        {
            registrar = StartRegistrar(client, cache);
            await AwaitAssertAsync(() => Assert.Equal(regions, cache.Regions), Patience);

            await server.DisposeAsync();
            await AdvanceUntilAsync(() => Assert.Contains(log.Entries, e =>
                e.Level == LogLevel.Warning && e.Message.StartsWith("Directory report failed", StringComparison.Ordinal)
                && e.Scopes.Contains("region=eu-west, supernode_id=super-1")));
        }
        finally
        {
            await server.DisposeAsync();
        }

        Assert.True(status.IsRegistered);
        await AssertAliveAsync(registrar);
        var reportsBefore = directory.Reports.Count;
        directory.ReportIntervalMs = 60_000;
        await using var restarted = await DirectoryServer.StartAsync(baseTls, directory, address.Port);

        await AdvanceUntilAsync(() => Assert.True(directory.Reports.Count > reportsBefore));
        Assert.True(status.IsRegistered);
        Assert.Equal(regions, new DirectoryCache(temp.Path).Regions);
        await StopAsync(registrar);
    }

    [Fact]
    public async Task Registrar_is_not_registered_until_the_directory_accepts_a_report()
    {
        var directory = new FakeDirectory(regions) { Unavailable = true };
        await using var server = await DirectoryServer.StartAsync(baseTls, directory);
        using var client = new DirectoryClient([server.Address], superTls);

        var registrar = StartRegistrar(client, new DirectoryCache(temp.Path));

        await AwaitAssertAsync(() => Assert.True(directory.RefusedReports >= 1), Patience);
        Assert.False(status.IsRegistered);
        await AssertAliveAsync(registrar);

        directory.Unavailable = false;

        await AdvanceUntilAsync(() => Assert.True(status.IsRegistered));
        await StopAsync(registrar);
    }

    [Fact]
    public async Task Not_being_registered_yet_while_starting_is_said_once_without_a_warning_and_past_the_grace_it_warns()
    {
        var directory = new FakeDirectory(regions) { Unavailable = true };
        await using var server = await DirectoryServer.StartAsync(baseTls, directory);
        using var client = new DirectoryClient([server.Address], superTls);
        var starting = new RegistrationStatus(clock);

        var registrar = StartRegistrar(client, new DirectoryCache(temp.Path), registration: starting);

        await AwaitAssertAsync(() => Assert.Contains(log.Entries, e => e.Message.StartsWith("Not registered with the directory yet", StringComparison.Ordinal)),
            Patience);
        // The retry timer is armed once the refused report has come back, which may be after the line above: the clock
        // moves a retry's wait at a time until the second report, never past the grace.
        var moved = TimeSpan.Zero;
        await AwaitAssertAsync(() =>
        {
            if (moved + DirectoryRegistrar.RetryAfterFailure < RegistrationStatus.CatchUpGrace)
            {
                clock.Advance(DirectoryRegistrar.RetryAfterFailure);
                moved += DirectoryRegistrar.RetryAfterFailure;
            }
            Assert.True(directory.RefusedReports >= 2);
        }, Patience, TimeSpan.FromMilliseconds(200));
        await AssertAliveAsync(registrar);
        Assert.Single(log.Entries, e => e.Message.StartsWith("Not registered with the directory yet", StringComparison.Ordinal) && e.Level == LogLevel.Information);
        Assert.DoesNotContain(log.Entries, e => e.Level >= LogLevel.Warning);

        clock.Advance(RegistrationStatus.CatchUpGrace);

        await AdvanceUntilAsync(() => Assert.Single(log.Entries, e => e.Level == LogLevel.Warning && e.Message.StartsWith("Directory report failed", StringComparison.Ordinal)));
        await StopAsync(registrar);
    }

    protected override void Dispose(bool disposing)
    {
        try
        {
            base.Dispose(disposing);
        }
        finally
        {
            if (disposing)
            {
                baseTls.Dispose();
                superTls.Dispose();
                temp.Dispose();
            }
        }
    }

    private IActorRef StartRegistrar(DirectoryClient client, DirectoryCache cache, IActorRef? sessions = null, RegistrationStatus? registration = null,
        MyDvpn.SuperNode.Edge.PeerSightings? sightings = null) =>
        Sys.ActorOf(DirectoryRegistrar.Props(Registration, client, cache, registration ?? status, () => Load, new RevocationCursor(temp.Path),
            sessions ?? CreateTestProbe().Ref, clock, log, sightings: sightings), "directory-registrar");

    [Fact]
    public async Task A_revocation_taken_back_while_away_reaches_the_session_as_its_last_change_only()
    {
        var directory = new FakeDirectory(regions) { ReportIntervalMs = 300 };
        directory.RevokedPeers.AddRange(["peer-a", "peer-b", "peer-a"]);
        directory.UnrevokedVersions.Add(3);
        await using var server = await DirectoryServer.StartAsync(baseTls, directory);
        using var client = new DirectoryClient([server.Address], superTls);
        var sessions = CreateTestProbe();

        var registrar = StartRegistrar(client, new DirectoryCache(temp.Path), sessions.Ref);

        var changes = new[] { sessions.ExpectMsg<object>(Patience), sessions.ExpectMsg<object>(Patience) };
        Assert.Contains(new MyDvpn.SuperNode.Sessions.UnrevokePeer("peer-a"), changes);
        Assert.Contains(new MyDvpn.SuperNode.Sessions.RevokePeer("peer-b"), changes);
        sessions.ExpectNoMsg(TimeSpan.FromMilliseconds(200));
        registrar.Tell(new MyDvpn.SuperNode.Sessions.PeerRevoked("peer-b"), sessions.Ref);
        Assert.Equal(0ul, new RevocationCursor(temp.Path).Version);
        registrar.Tell(new MyDvpn.SuperNode.Sessions.PeerUnrevoked("peer-a"), sessions.Ref);
        await AwaitAssertAsync(() => Assert.Equal(3ul, new RevocationCursor(temp.Path).Version), Patience);
        await StopAsync(registrar);
    }

    [Fact]
    public async Task Peers_seen_go_with_the_next_report_and_wait_for_a_later_one_when_it_fails()
    {
        var directory = new FakeDirectory(regions) { Unavailable = true };
        await using var server = await DirectoryServer.StartAsync(baseTls, directory);
        using var client = new DirectoryClient([server.Address], superTls);
        var sightings = new MyDvpn.SuperNode.Edge.PeerSightings();
        var at = clock.GetUtcNow();
        sightings.Seen("peer-a", Protocol.Control.PeerRole.Client, at, connected: true);
        sightings.Seen("peer-b", Protocol.Control.PeerRole.Exit, at, connected: false);

        var registrar = StartRegistrar(client, new DirectoryCache(temp.Path), sightings: sightings);
        await AwaitAssertAsync(() => Assert.True(directory.RefusedReports > 0), Patience);
        // The failed report gave them back: they wait for the next one.
        await AwaitAssertAsync(() => Assert.Equal(2, sightings.Pending), Patience);
        directory.Unavailable = false;
        await AdvanceUntilAsync(() => Assert.NotEmpty(directory.Reports));

        var seen = directory.Reports.First().PeersSeen.OrderBy(s => s.PeerId, StringComparer.Ordinal).ToList();
        Assert.Equal([("peer-a", 1, true), ("peer-b", 2, false)], seen.Select(s => (s.PeerId, s.Role, s.Connected)));
        Assert.Equal(at, seen[0].At.ToDateTimeOffset());
        Assert.Equal(0, sightings.Pending);
        await StopAsync(registrar);
    }

    /// <summary>
    /// Moves the clock on by <see cref="DirectoryRegistrar.RetryAfterFailure"/> until <paramref name="assertion"/> holds: for
    /// a timer the registrar arms only once a call it made (real gRPC) has come back.
    /// </summary>
    private Task AdvanceUntilAsync(Action assertion) =>
        AwaitAssertAsync(() =>
        {
            clock.Advance(DirectoryRegistrar.RetryAfterFailure);
            assertion();
        }, Patience, TimeSpan.FromMilliseconds(50));

    [Fact]
    public async Task Revocations_missed_while_away_are_applied_and_the_cursor_moves_only_after_every_session_confirmed()
    {
        var directory = new FakeDirectory(regions) { ReportIntervalMs = 300 };
        directory.RevokedPeers.AddRange(["peer-a", "peer-b"]);
        await using var server = await DirectoryServer.StartAsync(baseTls, directory);
        using var client = new DirectoryClient([server.Address], superTls);
        var sessions = CreateTestProbe();

        var registrar = StartRegistrar(client, new DirectoryCache(temp.Path), sessions.Ref);

        var first = sessions.ExpectMsg<MyDvpn.SuperNode.Sessions.RevokePeer>(Patience);
        var second = sessions.ExpectMsg<MyDvpn.SuperNode.Sessions.RevokePeer>(Patience);
        Assert.Equal(["peer-a", "peer-b"], new[] { first.PeerId, second.PeerId });
        sessions.Reply(new MyDvpn.SuperNode.Sessions.PeerRevoked("peer-b"));
        // One session has not confirmed: the cursor stays where it was.
        Assert.Equal(0ul, new RevocationCursor(temp.Path).Version);
        registrar.Tell(new MyDvpn.SuperNode.Sessions.PeerRevoked("peer-a"), sessions.Ref);
        await AwaitAssertAsync(() => Assert.Equal(2ul, new RevocationCursor(temp.Path).Version), Patience);
        await StopAsync(registrar);
    }

    [Fact]
    public async Task Revocations_the_sessions_do_not_confirm_in_time_are_fetched_again_on_a_later_report()
    {
        var directory = new FakeDirectory(regions) { ReportIntervalMs = 60_000 };
        directory.RevokedPeers.AddRange(["peer-a"]);
        await using var server = await DirectoryServer.StartAsync(baseTls, directory);
        using var client = new DirectoryClient([server.Address], superTls);
        var sessions = CreateTestProbe();
        var registrar = StartRegistrar(client, new DirectoryCache(temp.Path), sessions.Ref);
        Assert.Equal("peer-a", sessions.ExpectMsg<MyDvpn.SuperNode.Sessions.RevokePeer>(Patience).PeerId);
        await AssertAliveAsync(registrar); // the batch's deadline is armed

        // Nobody confirms: at the deadline the batch is given up, the cursor unmoved.
        clock.Advance(DirectoryRegistrar.RevocationsConfirmWithin);
        await AwaitAssertAsync(() => Assert.Contains(log.Entries, e =>
            e.Level == LogLevel.Warning && e.Message == "Revocations not fetched, retried on the next report: sessions did not confirm revocations in time"),
            Patience);
        Assert.Equal(0ul, new RevocationCursor(temp.Path).Version);

        // The next report finds the directory still ahead and fetches the batch again.
        clock.Advance(TimeSpan.FromMilliseconds(60_000) - DirectoryRegistrar.RevocationsConfirmWithin);
        Assert.Equal("peer-a", sessions.ExpectMsg<MyDvpn.SuperNode.Sessions.RevokePeer>(Patience).PeerId);
        sessions.Reply(new MyDvpn.SuperNode.Sessions.PeerRevoked("peer-a"));
        await AwaitAssertAsync(() => Assert.Equal(1ul, new RevocationCursor(temp.Path).Version), Patience);
        await StopAsync(registrar);
    }

    private async Task AssertAliveAsync(IActorRef registrar)
    {
        var identity = await registrar.Ask<ActorIdentity>(new Identify(null), Patience);
        Assert.Equal(registrar, identity.Subject);
    }

    /// <summary>Stops the registrar and waits until it is gone, so nothing writes to the directory being deleted.</summary>
    private async Task StopAsync(IActorRef registrar) =>
        await registrar.GracefulStop(Patience);
}
