using System.CommandLine;
using System.Globalization;
using System.Net;
using MyDvpn.Common;
using MyDvpn.Protocol.Admin;

namespace MyDvpn.Cli.Commands;

/// <summary><c>mydvpn admin web-token</c>: a login token for the BaseNode's web topology page (docs/web-topology.md).</summary>
public static partial class AdminCommand
{
    private static Command WebTokenCommand(TextWriter output, Option<string> baseNode, Option<string> tls, Option<bool> json)
    {
        var ttl = new Option<TimeSpan>("--ttl")
        {
            Description = "How long the token stays valid, e.g. 15m, 1h, 8h; at most 24h [default: 1h]",
            HelpName = "DURATION",
            CustomParser = ParseTtl,
        };
        var command = new Command("web-token",
            "Make a short-lived login token for the BaseNode's web topology page (`mydvpn base --web HOST:PORT`) with this admin certificate, "
            + "and print the page's address with it: open it once in a browser (the page then keeps the token in an HttpOnly cookie), "
            + "or send the token as `Authorization: Bearer TOKEN` to /api/topology. The token is valid only on the BaseNode that made it, "
            + "until it expires or that BaseNode restarts") { ttl };
        // The token is valid on the BaseNode that made it: the one that answered, which may not be the first one listed.
        command.SetAction((parse, ct) => WithClient(parse, baseNode, tls, async (client, answering) =>
        {
            var token = await client.CreateWebTokenAsync(new CreateWebTokenRequest { TtlSeconds = (uint)parse.GetValue(ttl).TotalSeconds }, Deadline(ct));
            if (parse.GetValue(json))
            {
                await output.WriteLineAsync(AdminJson.Format(token));
                return;
            }
            await output.WriteLineAsync(WebUrl(token.WebAddress, answering, token.Token));
            await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                $"Valid until {token.ExpiresAt.ToDateTimeOffset():u}, on BaseNode {answering} only. Anyone holding it sees the topology until then: keep it to yourself."));
        }));
        return command;
    }

    /// <summary>
    /// The page's address with the token: <c>https://WEB/?token=…</c>; a page bound to every address (<c>0.0.0.0</c>,
    /// <c>[::]</c>) is named by the host the admin reached the BaseNode at.
    /// </summary>
    public static string WebUrl(string webAddress, HostPort baseNode, string token)
    {
        var web = HostPort.Parse(webAddress, "web_address");
        var host = IPAddress.TryParse(web.Host, out var ip) && (ip.Equals(IPAddress.Any) || ip.Equals(IPAddress.IPv6Any)) ? baseNode.Host : web.Host;
        return $"https://{new HostPort(host, web.Port)}/?token={Uri.EscapeDataString(token)}";
    }
}
