using System.Net;
using System.Net.Sockets;
using Akka.Actor;

namespace MyDvpn.Hosting.Tests;

public sealed class CrashedMemberDowningTests
{
    private static readonly CrashedMemberDowningSettings Settings = new(true, TimeSpan.FromMilliseconds(500), TimeSpan.FromSeconds(1), 2, 5);

    [Fact]
    public void Refusals_in_a_row_down_the_member()
    {
        var judge = new CrashJudge(Settings);
        Assert.Equal(CrashVerdict.ProbeAgain, judge.Observe(PortProbe.Refused));
        Assert.Equal(CrashVerdict.Down, judge.Observe(PortProbe.Refused));
    }

    [Fact]
    public void One_accepted_connect_leaves_the_member_to_the_resolver_however_many_refusals_came_before()
    {
        var judge = new CrashJudge(Settings);
        Assert.Equal(CrashVerdict.ProbeAgain, judge.Observe(PortProbe.Refused));
        Assert.Equal(CrashVerdict.LeaveItToTheResolver, judge.Observe(PortProbe.Accepted));
    }

    [Fact]
    public void Silence_between_refusals_starts_the_count_again_and_silence_alone_never_downs()
    {
        var judge = new CrashJudge(Settings);
        Assert.Equal(CrashVerdict.ProbeAgain, judge.Observe(PortProbe.Refused));
        Assert.Equal(CrashVerdict.ProbeAgain, judge.Observe(PortProbe.NoAnswer));
        Assert.Equal(CrashVerdict.ProbeAgain, judge.Observe(PortProbe.Refused));
        Assert.Equal(CrashVerdict.Down, judge.Observe(PortProbe.Refused));

        var silent = new CrashJudge(Settings);
        var verdicts = Enumerable.Range(0, Settings.MaxProbes).Select(_ => silent.Observe(PortProbe.NoAnswer)).ToList();
        Assert.All(verdicts[..^1], v => Assert.Equal(CrashVerdict.ProbeAgain, v));
        Assert.Equal(CrashVerdict.LeaveItToTheResolver, verdicts[^1]);
    }

    [Fact]
    public async Task A_closed_port_is_refused_and_a_listening_one_accepted()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var open = ((IPEndPoint)listener.LocalEndpoint).Port;
        var accepted = await CrashedMemberDowning.ProbeAsync(new Address("akka.ssl.tcp", "sys", "127.0.0.1", open), TimeSpan.FromSeconds(5), CancellationToken.None);
        Assert.Equal(PortProbe.Accepted, accepted.Outcome);

        listener.Stop();
        var refused = await CrashedMemberDowning.ProbeAsync(new Address("akka.ssl.tcp", "sys", "127.0.0.1", open), TimeSpan.FromSeconds(5), CancellationToken.None);
        Assert.Equal(PortProbe.Refused, refused.Outcome);
        Assert.Contains($"127.0.0.1:{open} refused", refused.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void The_shipped_tuning_file_turns_it_on_with_valid_settings_and_bad_ones_are_refused_with_the_reason()
    {
        var shipped = Akka.Configuration.ConfigurationFactory.ParseString(File.ReadAllText(ClusterNodeHost.TuningFile));
        var settings = CrashedMemberDowningSettings.From(shipped);
        Assert.True(settings.Enabled);
        Assert.True(settings.RefusalsToDown >= 2);
        Assert.Equal("2s", shipped.GetString("akka.cluster.down-removal-margin"));

        var bad = Akka.Configuration.ConfigurationFactory.ParseString("mydvpn.crashed-member-downing { refusals-to-down = 1 }");
        var error = Assert.Throws<Akka.Configuration.ConfigurationException>(() => CrashedMemberDowningSettings.From(bad));
        Assert.Contains("refusals-to-down at least 2", error.Message, StringComparison.Ordinal);
    }
}
