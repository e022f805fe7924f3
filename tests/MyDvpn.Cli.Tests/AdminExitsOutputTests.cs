using System.Collections.Concurrent;
using System.Text.Json;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using MyDvpn.Cli.Commands;
using MyDvpn.Protocol.Admin;
using MyDvpn.Protocol.SuperNode;

namespace MyDvpn.Cli.Tests;

/// <summary>
/// What <c>mydvpn admin exits</c> sends and prints, and the exit column of <c>admin sessions</c>, against an admin
/// API served by real Kestrel with mutual TLS that answers with fixed replies.
/// </summary>
public sealed class AdminExitsOutputTests : FixedAdminApiTestKit<AdminExitsOutputTests.FixedAdmin>
{
    [Fact]
    public async Task Exits_table_shows_each_exit_and_each_assignment_of_the_region()
    {
        var (exitCode, output, error) = await Admin("exits", "--region", "eu-west");

        Assert.Equal((0, ""), (exitCode, error));
        Assert.Equal("eu-west", Assert.Single(Service.ExitRequests).Region);
        var lines = output.Split('\n');
        foreach (var header in new[] { "peer id", "online", "clients/capacity", "subnet", "RTT ms", "recent failures", "public address" })
            Assert.Contains(header, output, StringComparison.Ordinal);
        foreach (var header in new[] { "assignment id", "client", "exit peer id", "client address", "endpoint", "state" })
            Assert.Contains(header, output, StringComparison.Ordinal);
        Assert.Contains(lines, line => ContainsInOrder(line, "exit-1", "yes", "2/50", "100.96.0.0/24", "2.5", "0", "203.0.113.7:51820"));
        Assert.Contains(lines, line => ContainsInOrder(line, "exit-2", "no", "0/10", "-", "-", "3", "-"));
        Assert.Contains(lines, line => ContainsInOrder(line, "as-1", "client-1@us-east", "exit-1", "100.96.0.2/32", "203.0.113.7:51820", "active"));
        Assert.Contains(lines, line => ContainsInOrder(line, "as-2", "client-2@eu-west", "exit-1", "100.96.0.3/32", "203.0.113.7:51820", "setting-up"));
    }

    [Fact]
    public async Task Exits_as_json_is_the_exit_pool_view()
    {
        var (exitCode, output, _) = await Admin("exits", "--region", "eu-west", "--json");

        Assert.Equal(0, exitCode);
        var json = JsonDocument.Parse(output).RootElement;
        Assert.Equal("eu-west", json.GetProperty("region").GetString());
        var exit = json.GetProperty("exits")[0];
        Assert.Equal(("exit-1", true, 50, 2500), (exit.GetProperty("peerId").GetString(), exit.GetProperty("online").GetBoolean(),
            exit.GetProperty("capacity").GetInt32(), exit.GetProperty("rttMicros").GetInt32()));
        // Default values are written out too, as by the other admin commands.
        Assert.False(json.GetProperty("exits")[1].GetProperty("online").GetBoolean());
        var assignment = json.GetProperty("assignments")[0];
        Assert.Equal(("as-1", "client-1", "us-east", "active"), (assignment.GetProperty("assignmentId").GetString(),
            assignment.GetProperty("clientPeerId").GetString(), assignment.GetProperty("clientRegion").GetString(), assignment.GetProperty("state").GetString()));
    }

    [Fact]
    public async Task Exits_refused_by_the_base_exit_1_with_its_status_and_detail()
    {
        var (exitCode, output, error) = await Admin("exits", "--region", "ap-south");

        Assert.Equal(1, exitCode);
        Assert.Empty(output);
        Assert.Equal("error: Unavailable: no SuperNode is up for the exits of region ap-south", error.TrimEnd());
    }

    [Theory]
    [InlineData("exits")]
    [InlineData("exits", "--region", "EU_West")]
    public async Task Exits_without_a_valid_region_exit_2_naming_region(params string[] command)
    {
        var (exitCode, _, error) = await Admin(command);

        Assert.Equal(2, exitCode);
        Assert.Contains("--region", error, StringComparison.Ordinal);
        Assert.Empty(Service.ExitRequests);
    }

    [Fact]
    public async Task Sessions_table_shows_a_clients_exit_and_the_clients_an_exit_serves()
    {
        var (exitCode, output, _) = await Admin("sessions");

        Assert.Equal(0, exitCode);
        var lines = output.Split('\n');
        Assert.Contains("exit / clients", output, StringComparison.Ordinal);
        Assert.Contains(lines, line => ContainsInOrder(line, "client-1", "client", "us-east", "exit-1@eu-west 100.96.0.2 active"));
        Assert.Contains(lines, line => ContainsInOrder(line, "exit-1", "exit", "eu-west", "2 clients: client-1@us-east, client-2@eu-west"));
        Assert.Contains(lines, line => ContainsInOrder(line, "idle-1", "client", "eu-west", "connected", "0", "-"));
    }

    [Fact]
    public async Task Sessions_as_json_carry_the_assignments()
    {
        var (exitCode, output, _) = await Admin("sessions", "--json");

        Assert.Equal(0, exitCode);
        var sessions = JsonDocument.Parse(output).RootElement.GetProperty("sessions");
        var own = Assert.Single(sessions[0].GetProperty("assignments").EnumerateArray());
        Assert.Equal(("exit-1", "100.96.0.2/32", "active"),
            (own.GetProperty("exitPeerId").GetString(), own.GetProperty("clientAddress").GetString(), own.GetProperty("state").GetString()));
        Assert.Equal(2, sessions[1].GetProperty("assignments").GetArrayLength());
        Assert.Equal(0, sessions[2].GetProperty("assignments").GetArrayLength());
    }

    [Fact]
    public async Task Sessions_table_shows_a_moved_clients_last_rotation_from_which_exit_to_which_why_and_when()
    {
        var (exitCode, output, _) = await Admin("sessions", "--region", "ap-south");

        Assert.Equal(0, exitCode);
        Assert.Contains(output.Split('\n'), line => ContainsInOrder(line, "moved-1", "client", "ap-south",
            "exit-2@ap-south 100.98.0.7 active, moved from exit-3 to exit-2 at 2030-01-02 03:04:05Z (exit lost)"));
        // A client that asked for its exit shows no rotation.
        Assert.DoesNotContain("moved from", (await Admin("sessions")).Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Sessions_as_json_carry_a_moved_clients_last_rotation()
    {
        var (exitCode, output, _) = await Admin("sessions", "--region", "ap-south", "--json");

        Assert.Equal(0, exitCode);
        var own = Assert.Single(JsonDocument.Parse(output).RootElement.GetProperty("sessions")[0].GetProperty("assignments").EnumerateArray());
        Assert.Equal("exit-2", own.GetProperty("exitPeerId").GetString());
        var rotation = own.GetProperty("lastRotation");
        Assert.Equal(("as-3", "exit-3", "exit_lost", "exit exit-3 is lost: its stream ended 30 s ago and did not come back"),
            (rotation.GetProperty("fromAssignmentId").GetString(), rotation.GetProperty("fromExitPeerId").GetString(),
                rotation.GetProperty("reason").GetString(), rotation.GetProperty("detail").GetString()));
        Assert.Equal(Moved, rotation.GetProperty("at").GetDateTimeOffset());
    }

    [Fact]
    public void Exit_serving_many_clients_shows_how_many_and_a_peer_of_both_roles_shows_both()
    {
        var busy = new Session { PeerId = "exit-9", Region = "eu-west", Role = "exit" };
        busy.Assignments.AddRange(Enumerable.Range(1, 5).Select(i => Assignment($"as-{i}", $"client-{i}", "us-east", "exit-9", "eu-west", "active")));
        var both = new Session { PeerId = "both-1", Region = "eu-west", Role = "both" };
        both.Assignments.Add(Assignment("as-a", "both-1", "eu-west", "exit-3", "us-east", "releasing", clientAddress: "100.97.0.5/32"));
        both.Assignments.Add(Assignment("as-b", "client-7", "us-east", "both-1", "eu-west", "requested"));

        Assert.Equal("5 clients", AdminCommand.ExitOrClientsText(busy));
        Assert.Equal("exit-3@us-east 100.97.0.5 releasing; 1 client: client-7@us-east", AdminCommand.ExitOrClientsText(both));
    }

    [Fact]
    public async Task Disconnect_help_says_a_clients_exit_is_released_on_both_sides()
    {
        var (exitCode, output, _) = await Admin("disconnect", "--help");

        Assert.Equal(0, exitCode);
        Assert.Contains("releases its exit, on the client's side and on the exit's", output, StringComparison.Ordinal);
    }

    /// <summary>The parts appear in the line in this order (cells of one table row).</summary>
    private static bool ContainsInOrder(string line, params string[] parts)
    {
        var at = 0;
        foreach (var part in parts)
        {
            var found = line.IndexOf(part, at, StringComparison.Ordinal);
            if (found < 0)
                return false;
            at = found + part.Length;
        }
        return true;
    }

    private static ExitAssignment Assignment(
        string id, string client, string clientRegion, string exit, string exitRegion, string state, string clientAddress = "100.96.0.2/32") => new()
        {
            AssignmentId = id,
            ClientPeerId = client,
            ClientRegion = clientRegion,
            ExitPeerId = exit,
            Region = exitRegion,
            ExitEndpoint = "203.0.113.7:51820",
            ClientAddress = clientAddress,
            ExitAddress = "100.96.0.1/24",
            State = state,
        };

    private static readonly DateTimeOffset Moved = new(2030, 1, 2, 3, 4, 5, TimeSpan.Zero);

    public sealed class FixedAdmin : MyDvpn.Protocol.Admin.Admin.AdminBase
    {
        public ConcurrentQueue<ListExitsRequest> ExitRequests { get; } = new();

        public override Task<ExitPoolView> ListExits(ListExitsRequest request, ServerCallContext context)
        {
            ExitRequests.Enqueue(request);
            if (request.Region != "eu-west")
                throw new RpcException(new Status(StatusCode.Unavailable, $"no SuperNode is up for the exits of region {request.Region}"));
            return Task.FromResult(new ExitPoolView
            {
                Region = "eu-west",
                Exits =
                {
                    new ExitView
                    {
                        PeerId = "exit-1",
                        Online = true,
                        Capacity = 50,
                        Clients = 2,
                        Subnet = "100.96.0.0/24",
                        RttMicros = 2500,
                        PublicAddress = "203.0.113.7:51820",
                    },
                    new ExitView { PeerId = "exit-2", Capacity = 10, RecentFailures = 3 },
                },
                Assignments =
                {
                    Assignment("as-1", "client-1", "us-east", "exit-1", "eu-west", "active"),
                    Assignment("as-2", "client-2", "eu-west", "exit-1", "eu-west", "setting-up", clientAddress: "100.96.0.3/32"),
                },
            });
        }

        public override Task<SessionList> ListSessions(ListSessionsRequest request, ServerCallContext context)
        {
            var since = Timestamp.FromDateTimeOffset(new DateTimeOffset(2030, 1, 1, 0, 0, 0, TimeSpan.Zero));
            if (request.Region == "ap-south")
            {
                // A client its session moved from a lost exit to another of the region.
                var moved = Assignment("as-4", "moved-1", "ap-south", "exit-2", "ap-south", "active", clientAddress: "100.98.0.7/32");
                moved.LastRotation = new ExitRotationView
                {
                    FromAssignmentId = "as-3",
                    FromExitPeerId = "exit-3",
                    Reason = RotationReason.ExitLost,
                    Detail = "exit exit-3 is lost: its stream ended 30 s ago and did not come back",
                    At = Timestamp.FromDateTimeOffset(Moved),
                };
                return Task.FromResult(new SessionList
                {
                    Sessions =
                    {
                        new Session
                        {
                            PeerId = "moved-1", Role = "client", Region = "ap-south", SupernodeId = "sn-ap", ConnectedSince = since, State = "connected",
                            Assignments = { moved },
                        },
                    },
                });
            }

            return Task.FromResult(new SessionList
            {
                Sessions =
                {
                    new Session
                    {
                        PeerId = "client-1", Role = "client", Region = "us-east", SupernodeId = "sn-us", ConnectedSince = since, State = "connected",
                        Assignments = { Assignment("as-1", "client-1", "us-east", "exit-1", "eu-west", "active") },
                    },
                    new Session
                    {
                        PeerId = "exit-1", Role = "exit", Region = "eu-west", SupernodeId = "sn-eu", ConnectedSince = since, State = "connected",
                        Assignments =
                        {
                            Assignment("as-1", "client-1", "us-east", "exit-1", "eu-west", "active"),
                            Assignment("as-2", "client-2", "eu-west", "exit-1", "eu-west", "setting-up", clientAddress: "100.96.0.3/32"),
                        },
                    },
                    new Session { PeerId = "idle-1", Role = "client", Region = "eu-west", SupernodeId = "sn-eu", ConnectedSince = since, State = "connected" },
                },
            });
        }
    }
}
