using System.Text.Json;
using Google.Protobuf.WellKnownTypes;
using MyDvpn.BaseNode.Web;
using MyDvpn.Protocol.Directory;
using MyDvpn.Protocol.SuperNode;

namespace MyDvpn.BaseNode.Tests.Web;

public sealed class TopologyViewTests
{
    private static readonly DateTimeOffset Now = new(2030, 1, 1, 12, 0, 0, TimeSpan.Zero);

    [Fact]
    public void Regions_show_their_SuperNodes_with_status_load_and_the_streams_each_holds_and_their_exits()
    {
        var view = TopologyView.From(Regions(), Answer(Sessions()), Pools(), Now);

        Assert.Equal(["a", "b"], view.Regions.Select(r => r.Name));
        var a = view.Regions[0];
        Assert.Equal(["sn-a1", "sn-a2"], a.SuperNodes.Select(n => n.Id));
        Assert.Equal(new SuperNodeTopology("sn-a1", "up", "10.0.0.1:7000", 2, 50, 0, 2, Now.AddSeconds(-3)), a.SuperNodes[0]);
        // A SuperNode that is down is not asked for its streams: unknown, not zero.
        Assert.Equal("down", a.SuperNodes[1].Status);
        Assert.Null(a.SuperNodes[1].Streams);
        Assert.Empty(a.Exits!);

        var b = view.Regions[1];
        Assert.Equal(1, Assert.Single(b.SuperNodes).Streams);
        var exit = Assert.Single(b.Exits!);
        Assert.Equal(new ExitTopology("exit-1", "online", true, 10, 2, "100.96.0.0/24", "192.0.2.10", 1.5), exit);
        Assert.Empty(view.Problems);
    }

    [Fact]
    public void A_clients_assignment_comes_from_its_session_with_its_path_and_relay_legs_and_shows_once()
    {
        var view = TopologyView.From(Regions(), Answer(Sessions()), Pools(), Now);

        Assert.Equal(["client-1", "client-2", "client-3"], view.Assignments.Select(a => a.ClientPeerId));
        Assert.Equal(new AssignmentTopology("as-1", "client-1", "a", "sn-a1", "exit-1", "b", "100.96.0.2/32", "active", "direct", null, null),
            view.Assignments[0]);
        Assert.Equal(new AssignmentTopology("as-2", "client-2", "a", "sn-a1", "exit-1", "b", "100.96.0.3/32", "active", "relay",
            "127.0.0.1:42001", "127.0.0.1:42050"), view.Assignments[1]);
        // Held by the pool, its client's session not seen: shown from the pool, its path unknown.
        Assert.Equal(new AssignmentTopology("as-3", "client-3", "a", null, "exit-1", "b", "100.96.0.4/32", "setting-up", "unknown", null, null),
            view.Assignments[2]);
    }

    [Fact]
    public void A_part_that_did_not_answer_is_named_and_the_rest_is_shown()
    {
        var pools = new Dictionary<string, Answered<ExitPoolView>>
        {
            ["a"] = new(new ExitPoolView { Region = "a" }, null),
            ["b"] = new(null, "the exits of region b did not come: no SuperNode is up for the exits of region b"),
        };
        var view = TopologyView.From(Regions(), new Answered<SessionList>(null, "the sessions did not come: the region index did not answer"), pools, Now);

        Assert.Null(view.Regions[1].Exits);
        Assert.Equal("the exits of region b did not come: no SuperNode is up for the exits of region b", view.Regions[1].ExitsProblem);
        Assert.All(view.Regions.SelectMany(r => r.SuperNodes), n => Assert.Null(n.Streams));
        Assert.Empty(view.Assignments);
        Assert.Equal(
            ["the sessions did not come: the region index did not answer", "the exits of region b did not come: no SuperNode is up for the exits of region b"],
            view.Problems);
    }

    [Fact]
    public void SuperNodes_that_did_not_answer_are_listed()
    {
        var sessions = Sessions();
        sessions.UnreachableSupernodes.Add("sn-b");
        var view = TopologyView.From(Regions(), Answer(sessions), Pools(), Now);
        Assert.Equal(["sn-b"], view.UnreachableSuperNodes);
    }

    [Fact]
    public void The_json_has_the_fields_the_page_reads_in_camel_case()
    {
        var json = JsonDocument.Parse(TopologyView.From(Regions(), Answer(Sessions()), Pools(), Now).ToJson()).RootElement;

        Assert.Equal("2030-01-01T12:00:00+00:00", json.GetProperty("generatedAt").GetString());
        var sn = json.GetProperty("regions")[0].GetProperty("superNodes")[0];
        Assert.Equal("sn-a1", sn.GetProperty("id").GetString());
        Assert.Equal("up", sn.GetProperty("status").GetString());
        Assert.Equal(2, sn.GetProperty("streams").GetInt32());
        Assert.Equal(JsonValueKind.Null, json.GetProperty("regions")[0].GetProperty("superNodes")[1].GetProperty("streams").ValueKind);
        var exit = json.GetProperty("regions")[1].GetProperty("exits")[0];
        Assert.Equal("exit-1", exit.GetProperty("peerId").GetString());
        Assert.Equal(10u, exit.GetProperty("capacity").GetUInt32());
        var relayed = json.GetProperty("assignments")[1];
        Assert.Equal("relay", relayed.GetProperty("path").GetString());
        Assert.Equal("127.0.0.1:42001", relayed.GetProperty("clientRelayLeg").GetString());
        Assert.Equal("127.0.0.1:42050", relayed.GetProperty("exitRelayLeg").GetString());
        Assert.Equal(0, json.GetProperty("problems").GetArrayLength());
    }

    private static Answered<SessionList> Answer(SessionList sessions) => new(sessions, null);

    private static RegionList Regions()
    {
        var list = new RegionList();
        // Given out of order: the view sorts.
        list.Regions.Add(new RegionEntry { Region = "b", Supernodes = { SuperNode("sn-b", "b", "10.0.1.1:7000", SuperNodeStatus.Up, 1) } });
        list.Regions.Add(new RegionEntry
        {
            Region = "a",
            Supernodes =
            {
                SuperNode("sn-a2", "a", "10.0.0.2:7000", SuperNodeStatus.Down, 0),
                SuperNode("sn-a1", "a", "10.0.0.1:7000", SuperNodeStatus.Up, 2),
            },
        });
        return list;
    }

    private static SuperNodeEntry SuperNode(string id, string region, string endpoint, SuperNodeStatus status, uint peers) => new()
    {
        Registration = new SuperNodeRegistration { SupernodeId = id, Region = region, GrpcEndpoint = endpoint, Capacity = 50 },
        Load = new SuperNodeLoad { ConnectedPeers = peers },
        Status = status,
        LastReportAt = Timestamp.FromDateTimeOffset(Now.AddSeconds(-3)),
    };

    private static ExitAssignment Assignment(string id, string client, string address, string state, string path = "direct",
        string clientLeg = "", string exitLeg = "") => new()
        {
            AssignmentId = id,
            Region = "b",
            ExitPeerId = "exit-1",
            ClientPeerId = client,
            ClientRegion = "a",
            ClientAddress = address,
            State = state,
            Path = path,
            ClientRelayLeg = clientLeg,
            ExitRelayLeg = exitLeg,
        };

    private static SessionList Sessions()
    {
        var list = new SessionList();
        list.Sessions.Add(new Session { PeerId = "client-1", Region = "a", SupernodeId = "sn-a1", Assignments = { Assignment("as-1", "client-1", "100.96.0.2/32", "active") } });
        list.Sessions.Add(new Session
        {
            PeerId = "client-2",
            Region = "a",
            SupernodeId = "sn-a1",
            Assignments = { Assignment("as-2", "client-2", "100.96.0.3/32", "active", "relay", "127.0.0.1:42001", "127.0.0.1:42050") },
        });
        // The exit's session holds its clients' assignments too: they are the clients' to show, once.
        list.Sessions.Add(new Session
        {
            PeerId = "exit-1",
            Region = "b",
            SupernodeId = "sn-b",
            Assignments = { Assignment("as-1", "client-1", "100.96.0.2/32", "active"), Assignment("as-2", "client-2", "100.96.0.3/32", "active", "relay") },
        });
        return list;
    }

    private static Dictionary<string, Answered<ExitPoolView>> Pools()
    {
        var b = new ExitPoolView
        {
            Region = "b",
            Exits = { new ExitView { PeerId = "exit-1", Online = true, State = "online", Capacity = 10, Clients = 2, Subnet = "100.96.0.0/24", RttMicros = 1500, PublicAddress = "192.0.2.10" } },
            Assignments =
            {
                Assignment("as-1", "client-1", "100.96.0.2/32", "active", path: ""),
                Assignment("as-3", "client-3", "100.96.0.4/32", "setting-up", path: ""),
            },
        };
        return new Dictionary<string, Answered<ExitPoolView>> { ["a"] = new(new ExitPoolView { Region = "a" }, null), ["b"] = new(b, null) };
    }
}
