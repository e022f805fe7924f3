using System.Text.Json;
using Google.Protobuf.WellKnownTypes;
using MyDvpn.Cli.Commands;
using MyDvpn.Protocol.Directory;
using MyDvpn.Protocol.SuperNode;

namespace MyDvpn.Cli.Tests;

/// <summary><c>--json</c> of the admin commands: protobuf's JSON, with enums in lower case as the tables show them.</summary>
public sealed class AdminJsonTests
{
    [Fact]
    public void Enums_are_lower_case_without_their_prefix_also_nested_and_in_lists()
    {
        var regions = new RegionList
        {
            Regions =
            {
                new RegionEntry
                {
                    Region = "eu-west",
                    Supernodes =
                    {
                        new SuperNodeEntry { Status = SuperNodeStatus.Up, LastReportAt = Timestamp.FromDateTimeOffset(new DateTimeOffset(2030, 1, 1, 0, 0, 0, TimeSpan.Zero)) },
                        new SuperNodeEntry { Status = SuperNodeStatus.Left },
                    },
                },
            },
        };

        var json = JsonDocument.Parse(AdminJson.Format(regions)).RootElement;

        var nodes = json.GetProperty("regions")[0].GetProperty("supernodes");
        Assert.Equal(["up", "left"], nodes.EnumerateArray().Select(n => n.GetProperty("status").GetString()));
        // Well-known types keep their own form.
        Assert.Equal("2030-01-01T00:00:00Z", nodes[0].GetProperty("lastReportAt").GetString());
    }

    [Fact]
    public void A_name_of_several_words_keeps_them_apart_with_an_underscore()
    {
        var view = new ExitRotationView { Reason = RotationReason.ExitLost };

        Assert.Equal("exit_lost", JsonDocument.Parse(AdminJson.Format(view)).RootElement.GetProperty("reason").GetString());
        Assert.Equal("unspecified", JsonDocument.Parse(AdminJson.Format(new ExitRotationView())).RootElement.GetProperty("reason").GetString());
    }

    [Fact]
    public void Enums_of_another_proto_file_inside_a_message_are_lower_case_too()
    {
        var token = new MyDvpn.Protocol.Admin.TokenView { Role = MyDvpn.Protocol.Control.PeerRole.Both, State = MyDvpn.Protocol.Admin.TokenState.UsedUp };

        var json = JsonDocument.Parse(AdminJson.Format(new MyDvpn.Protocol.Admin.TokenList { Tokens = { token } })).RootElement.GetProperty("tokens")[0];

        Assert.Equal(("both", "used_up"), (json.GetProperty("role").GetString(), json.GetProperty("state").GetString()));
    }
}
