using System.Collections.Immutable;
using MyDvpn.DataPlane;
using MyDvpn.Peer.Tunnel;
using Prometheus;

namespace MyDvpn.Peer.Tests;

/// <summary>The agent's metrics as its <c>/metrics</c> prints them, read from its status, tunnel and interface.</summary>
public sealed class PeerMetricsTests
{
    private static readonly DateTimeOffset T0 = new(2030, 1, 1, 12, 0, 0, TimeSpan.Zero);
    private static readonly byte[] ExitKey = [.. Enumerable.Repeat((byte)7, 32)];
    private static readonly byte[] ClientKey = [.. Enumerable.Repeat((byte)9, 32)];

    private readonly PeerMetrics metrics = new(Metrics.NewCustomRegistry());

    [Fact]
    public async Task An_agent_that_has_done_nothing_shows_every_series_at_zero_and_passes_promtool()
    {
        var scraped = await MetricsText.ScrapeAsync(metrics.Registry);

        Assert.Equal(0, MetricsText.Value(scraped, "mydvpn_peer_connected"));
        Assert.Equal(0, MetricsText.Value(scraped, "mydvpn_peer_reconnects_total"));
        Assert.Equal(0, MetricsText.Value(scraped, "mydvpn_peer_received_bytes_total"));
        Assert.Equal(0, MetricsText.Value(scraped, "mydvpn_peer_handshake_age_seconds"));
        Assert.Equal(1, MetricsText.Value(scraped, """mydvpn_peer_tunnel{state="none"}"""));
        Assert.Equal(0, MetricsText.Value(scraped, """mydvpn_peer_commands_total{kind="setup_exit",outcome="applied"}"""));
        Assert.Equal(0, MetricsText.Value(scraped, """mydvpn_peer_commands_total{kind="rotate_peer",outcome="dataplane"}"""));
        await Promtool.AssertPassesAsync(scraped, "the agent's metrics");
    }

    [Fact]
    public async Task The_stream_the_tunnel_and_the_handshake_are_read_as_they_are()
    {
        var status = PeerStatusSnapshot.Initial with { Connected = true, Attempts = 5, Authentications = 3 };
        var tunnel = TunnelState.Empty with { Exit = Exit() with { RelayEndpoint = "203.0.113.1:42000" } };

        metrics.Show(status, tunnel, Reading(handshake: T0.AddSeconds(-30), rx: 100, tx: 50), T0);

        var scraped = await MetricsText.ScrapeAsync(metrics.Registry);
        Assert.Equal(1, MetricsText.Value(scraped, "mydvpn_peer_connected"));
        Assert.Equal(5, MetricsText.Value(scraped, "mydvpn_peer_stream_attempts_total"));
        Assert.Equal(2, MetricsText.Value(scraped, "mydvpn_peer_reconnects_total"));
        Assert.Equal(1, MetricsText.Value(scraped, """mydvpn_peer_tunnel{state="relayed"}"""));
        Assert.Equal(0, MetricsText.Value(scraped, """mydvpn_peer_tunnel{state="direct"}"""));
        Assert.Equal(0, MetricsText.Value(scraped, """mydvpn_peer_tunnel{state="none"}"""));
        Assert.Equal(30, MetricsText.Value(scraped, "mydvpn_peer_handshake_age_seconds"));

        // No handshake yet: the age runs from the exit's set-up.
        metrics.Show(status, tunnel, Reading(handshake: null, rx: 100, tx: 50), T0.AddMinutes(2));
        Assert.Equal(120 + 60, MetricsText.Value(await MetricsText.ScrapeAsync(metrics.Registry), "mydvpn_peer_handshake_age_seconds"));
    }

    [Fact]
    public async Task Bytes_are_counted_from_each_reading_and_a_peer_made_anew_starts_from_zero()
    {
        var tunnel = TunnelState.Empty with { Exit = Exit() };

        metrics.Show(PeerStatusSnapshot.Initial, tunnel, Reading(null, rx: 1000, tx: 400), T0);
        metrics.Show(PeerStatusSnapshot.Initial, tunnel, Reading(null, rx: 1500, tx: 600), T0);
        metrics.Show(PeerStatusSnapshot.Initial, tunnel, Reading(null, rx: 300, tx: 100), T0);

        var scraped = await MetricsText.ScrapeAsync(metrics.Registry);
        Assert.Equal(1800, MetricsText.Value(scraped, "mydvpn_peer_received_bytes_total"));
        Assert.Equal(700, MetricsText.Value(scraped, "mydvpn_peer_sent_bytes_total"));
        Assert.Equal(1, MetricsText.Value(scraped, """mydvpn_peer_tunnel{state="direct"}"""));
    }

    [Fact]
    public async Task An_exit_shows_the_clients_it_serves()
    {
        var client = new ServedClient("as-1", "client-1", "eu-west", Convert.ToBase64String(ClientKey), ["100.96.0.2/32"], T0);
        var tunnel = TunnelState.Empty with { Clients = [client] };

        metrics.Show(PeerStatusSnapshot.Initial, tunnel, null, T0);

        Assert.Equal(1, MetricsText.Value(await MetricsText.ScrapeAsync(metrics.Registry), "mydvpn_peer_clients"));
    }

    private static ClientExit Exit() =>
        new("as-1", "exit-1", "us-east", Convert.ToBase64String(ExitKey), "198.51.100.7:51820", ["0.0.0.0/0"], 25, ["100.96.0.2/32"],
            T0.AddMinutes(-1));

    private static InterfaceReading Reading(DateTimeOffset? handshake, ulong rx, ulong tx) =>
        new("mydvpn0", ClientKey, 51820, [new PeerReading(ExitKey, "198.51.100.7:51820", handshake, rx, tx, ImmutableArray.Create("0.0.0.0/0"))],
            "wireguard-go");
}
