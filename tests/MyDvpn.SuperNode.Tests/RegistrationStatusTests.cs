namespace MyDvpn.SuperNode.Tests;

public sealed class RegistrationStatusTests
{
    private sealed class Clock : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = DateTimeOffset.UnixEpoch;

        public override DateTimeOffset GetUtcNow() => Now;
    }

    [Fact]
    public void A_starting_SuperNode_admits_no_peer_until_its_revocations_are_current()
    {
        var status = new RegistrationStatus(new Clock());
        status.MarkRegistered();
        Assert.False(status.AdmitsPeers);
        status.MarkRevocationsCurrent();
        Assert.True(status.AdmitsPeers);
    }

    [Fact]
    public void Without_a_directory_it_admits_peers_after_the_grace()
    {
        var clock = new Clock();
        var status = new RegistrationStatus(clock);
        clock.Now += RegistrationStatus.CatchUpGrace - TimeSpan.FromSeconds(1);
        Assert.False(status.AdmitsPeers);
        clock.Now += TimeSpan.FromSeconds(2);
        Assert.True(status.AdmitsPeers);
    }
}
