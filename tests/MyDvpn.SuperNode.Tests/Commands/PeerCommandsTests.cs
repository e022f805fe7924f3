using System.Reflection;
using MyDvpn.Protocol.Control;
using MyDvpn.SuperNode.Commands;
using MyDvpn.SuperNode.Exits;

namespace MyDvpn.SuperNode.Tests.Commands;

public sealed class PeerCommandsTests
{
    private static readonly DateTimeOffset Deadline = new(2030, 1, 1, 12, 0, 0, TimeSpan.Zero);

    private static readonly ExitAssignmentRecord Assignment = new("a-1", "us-east", "exit-1", Key(0xE1), "198.51.100.7:51820",
        "100.96.0.2/32", "100.96.0.1/24", "client-1", "eu-west", Key(0xC1), ExitAssignmentRecord.Active);

    public static TheoryData<Command.BodyOneofCase> EveryKind()
    {
        var kinds = new TheoryData<Command.BodyOneofCase>();
        foreach (var kind in Enum.GetValues<Command.BodyOneofCase>().Where(k => k != Command.BodyOneofCase.None))
            kinds.Add(kind);
        return kinds;
    }

    [Theory]
    [MemberData(nameof(EveryKind))]
    public void Every_kind_of_command_has_a_builder(Command.BodyOneofCase kind)
    {
        Assert.Contains(kind, typeof(PeerCommands).GetMethods(BindingFlags.Public | BindingFlags.Static)
            .Select(m => m.GetCustomAttribute<BuildsAttribute>()?.Kind));
    }

    /// <summary>Each builder, called, makes the kind it says it builds, with a fresh id.</summary>
    public static TheoryData<string, Command> Built() => new()
    {
        { nameof(PeerCommands.ServeClient), PeerCommands.ServeClient(Assignment, Deadline) },
        { nameof(PeerCommands.UseExit), PeerCommands.UseExit(Assignment, ExitSettings.Default, Deadline) },
        { nameof(PeerCommands.RemoveExit), PeerCommands.RemoveExit("a-1", Key(0xE1), ExitSide.Client, "released", Deadline) },
        { nameof(PeerCommands.RotateExit), PeerCommands.RotateExit(Assignment, "a-0", Key(0xE0), "exit exit-0 lost", ExitSettings.Default, Deadline) },
        { nameof(PeerCommands.RelaySetup), PeerCommands.RelaySetup("a-1", Key(0xE1), "192.0.2.1:40000") },
        { nameof(PeerCommands.RelayTeardown), PeerCommands.RelayTeardown("a-1", Key(0xE1), "198.51.100.7:51820") },
        { nameof(PeerCommands.Disconnect), PeerCommands.Disconnect("operator") },
    };

    [Theory]
    [MemberData(nameof(Built))]
    public void A_builder_makes_the_kind_it_names(string builder, Command command)
    {
        var declared = typeof(PeerCommands).GetMethod(builder)!.GetCustomAttribute<BuildsAttribute>()!.Kind;

        Assert.Equal(declared, command.BodyCase);
        Assert.Equal(32, command.CommandId.Length);
    }

    [Fact]
    public void A_client_is_told_its_exit_and_an_exit_its_client()
    {
        var toClient = PeerCommands.UseExit(Assignment, ExitSettings.Default, Deadline).SetupExit;
        var toExit = PeerCommands.ServeClient(Assignment, Deadline).SetupExit;

        Assert.Equal((ExitSide.Client, "exit-1", "us-east", "198.51.100.7:51820", "100.96.0.2/32", 25u),
            (toClient.Side, toClient.CounterpartPeerId, toClient.CounterpartRegion, toClient.Peer.Endpoint, toClient.TunnelAddresses.Single(),
                toClient.Peer.PersistentKeepaliveSeconds));
        Assert.Equal(["0.0.0.0/0"], toClient.Peer.AllowedIps);
        Assert.Equal(Key(0xE1), toClient.Peer.PublicKey.ToByteArray());
        Assert.Equal((ExitSide.Exit, "client-1", "eu-west", "100.96.0.2/32", "100.96.0.1/24"),
            (toExit.Side, toExit.CounterpartPeerId, toExit.CounterpartRegion, toExit.Peer.AllowedIps.Single(), toExit.TunnelAddresses.Single()));
        Assert.Equal(Key(0xC1), toExit.Peer.PublicKey.ToByteArray());
        Assert.Equal(("100.96.0.0/24", "100.96.0.0/24"), (toClient.TunnelSubnet, toExit.TunnelSubnet));
    }

    [Fact]
    public void A_rotation_names_the_new_exit_the_old_key_and_why()
    {
        var rotate = PeerCommands.RotateExit(Assignment, "a-0", Key(0xE0), "exit exit-0 lost", ExitSettings.Default, Deadline);

        Assert.Equal(Deadline, rotate.Deadline.ToDateTimeOffset());
        var body = rotate.RotatePeer;
        Assert.Equal(("a-1", "a-0", "exit-1", "us-east", "exit exit-0 lost", "100.96.0.2/32"),
            (body.AssignmentId, body.PreviousAssignmentId, body.CounterpartPeerId, body.CounterpartRegion, body.Reason, body.TunnelAddresses.Single()));
        Assert.Equal(Key(0xE0), body.OldPeerPublicKey.ToByteArray());
        Assert.Equal(Key(0xE1), body.NewPeer.PublicKey.ToByteArray());
        Assert.Equal("100.96.0.0/24", body.TunnelSubnet);
    }

    [Fact]
    public void Commands_built_without_a_deadline_leave_it_to_the_session()
    {
        Assert.Null(PeerCommands.RelaySetup("a-1", Key(0xE1), "192.0.2.1:40000").Deadline);
        Assert.NotEqual(PeerCommands.Disconnect("x").CommandId, PeerCommands.Disconnect("x").CommandId);
    }

    private static byte[] Key(byte fill) => Enumerable.Repeat(fill, 32).ToArray();
}
