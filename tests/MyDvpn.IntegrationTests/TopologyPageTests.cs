using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using MyDvpn.Cli.Demo;
using MyDvpn.Common;
using Xunit.Abstractions;

namespace MyDvpn.IntegrationTests;

/// <summary>
/// The BaseNode's web topology page (<c>mydvpn base --web</c>) against real nodes — a BaseNode, SuperNodes of regions a
/// (clients) and b (exits), an exit agent and a client agent — in a real browser: Debian's chromium, headless.
/// </summary>
public sealed class TopologyPageTests(ITestOutputHelper output)
{
    private const string ClientRegion = "a", ExitRegion = "b";
    private const string ExitId = "web-exit-1", ClientId = "web-client-1";

    /// <summary>Where the screenshots go: the test output, next to the test assembly.</summary>
    private static string ScreenshotDir => Path.Combine(AppContext.BaseDirectory, "test-output");

    [Fact]
    public async Task The_page_shows_both_regions_the_exit_and_the_clients_assignment_in_chromium_and_drops_it_when_the_client_disconnects()
    {
        await using var network = new TestNetwork(output);
        var web = new HostPort("127.0.0.1", NodeProcess.FreeTcpPort());
        var (baseNode, superA, superB) = await network.StartRegionsAsync(ClientRegion, ExitRegion,
            configureBase: node => node with { Arguments = [.. node.Arguments, "--web", web.ToString()] });
        await network.StartAgentAsync(baseNode, superB, ExitId, "exit", ExitRegion);
        await network.StartAgentAsync(baseNode, superA, ClientId, "client", ClientRegion, "--exit-region", ExitRegion);

        // Without a credential: 401, saying how to get one.
        using var http = Client();
        foreach (var path in new[] { "/", "/api/topology" })
        {
            using var refused = await http.GetAsync($"https://{web}{path}");
            var said = await refused.Content.ReadAsStringAsync();
            Assert.True(refused.StatusCode == HttpStatusCode.Unauthorized, $"{path} without a credential answered {(int)refused.StatusCode}: {said}");
            Assert.Contains("mydvpn admin web-token", said, StringComparison.Ordinal);
            Assert.DoesNotContain(ExitId, said, StringComparison.Ordinal);
        }

        // The operator's way in: `mydvpn admin web-token` prints the address with the token.
        var (exitCode, text) = await network.RunAsync("admin", "--base", baseNode.Listen.ToString(), "--tls", network.AdminTls, "web-token", "--ttl", "15m");
        Assert.True(exitCode == 0, $"admin web-token failed ({exitCode}): {text}");
        var url = text.Split('\n')[0].Trim();
        Assert.StartsWith($"https://{web}/?token=", url, StringComparison.Ordinal);
        var token = Uri.UnescapeDataString(url[(url.IndexOf("token=", StringComparison.Ordinal) + "token=".Length)..]);

        // The JSON, with the token as a bearer, until the client's assignment is active.
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        await Eventually.Async(async () =>
        {
            var view = await TopologyAsync(http, web);
            return Assignments(view).Any(a => a.GetProperty("clientPeerId").GetString() == ClientId
                                              && a.GetProperty("exitPeerId").GetString() == ExitId
                                              && a.GetProperty("state").GetString() == "active");
        }, $"/api/topology shows {ClientId}'s active assignment to {ExitId}", TimeSpan.FromSeconds(90));
        var shown = await TopologyAsync(http, web);
        output.WriteLine($"/api/topology: {shown}");
        Assert.Equal([ClientRegion, ExitRegion], shown.GetProperty("regions").EnumerateArray().Select(r => r.GetProperty("name").GetString()));
        var regionB = shown.GetProperty("regions")[1];
        var exit = Assert.Single(regionB.GetProperty("exits").EnumerateArray());
        Assert.Equal(ExitId, exit.GetProperty("peerId").GetString());
        Assert.Equal("online", exit.GetProperty("state").GetString());
        Assert.Equal(1u, exit.GetProperty("clients").GetUInt32());
        var snB = Assert.Single(regionB.GetProperty("superNodes").EnumerateArray());
        Assert.Equal("up", snB.GetProperty("status").GetString());
        Assert.Equal(1, snB.GetProperty("streams").GetInt32());
        var assignment = Assert.Single(Assignments(shown));
        Assert.Equal("direct", assignment.GetProperty("path").GetString());
        Assert.Equal("sn-a", assignment.GetProperty("clientSuperNode").GetString());

        // chromium's --dump-dom: the DOM once the page's script fetched /api/topology and drew it.
        var dom = await HeadlessChromium.DumpDomAsync(url);
        Assert.Contains($"data-region=\"{ClientRegion}\"", dom, StringComparison.Ordinal);
        Assert.Contains($"data-region=\"{ExitRegion}\"", dom, StringComparison.Ordinal);
        Assert.Contains($"<td>{ExitId}</td>", dom, StringComparison.Ordinal);
        Assert.Contains($"data-client=\"{ClientId}\" data-exit=\"{ExitId}\"", dom, StringComparison.Ordinal);
        Assert.DoesNotContain(token, dom, StringComparison.Ordinal);

        // The page in a real browser left open: the token in the address once, then the cookie; the page's own script draws it.
        await using (var chromium = await HeadlessChromium.OpenAsync(url))
        {
            try
            {
                await chromium.WaitUntilAsync(
                    $"document.querySelector('#regions .region[data-region=\"{ClientRegion}\"]') !== null"
                    + $" && document.querySelector('#regions .region[data-region=\"{ExitRegion}\"]') !== null"
                    + $" && document.querySelector('#regions .region[data-region=\"{ExitRegion}\"]').innerText.includes('{ExitId}')"
                    + $" && document.querySelector('#assignments tr[data-client=\"{ClientId}\"][data-exit=\"{ExitId}\"]') !== null",
                    "the page shows both regions, the exit and the client's assignment", TimeSpan.FromSeconds(60));
                Assert.Equal("/", (string?)await chromium.EvaluateAsync("location.pathname + location.search"));
                // HttpOnly: the page's script cannot read the token.
                Assert.Equal("", (string?)await chromium.EvaluateAsync("document.cookie"));
                var row = (string?)await chromium.EvaluateAsync($"document.querySelector('#assignments tr[data-client=\"{ClientId}\"]').innerText");
                output.WriteLine($"assignment row: {row}");
                Assert.Contains("direct", row, StringComparison.Ordinal);
                Assert.Contains("active", row, StringComparison.Ordinal);
                var shot = Path.Combine(ScreenshotDir, "topology-page.png");
                await chromium.ScreenshotAsync(shot);
                output.WriteLine($"screenshot of the page with the assignment: {shot}");

                // The operator disconnects the client: the page, left open, drops the assignment on its own.
                var (disconnected, said) = await network.RunAsync("admin", "--base", baseNode.Listen.ToString(), "--tls", network.AdminTls,
                    "disconnect", ClientId, "--region", ClientRegion);
                Assert.True(disconnected == 0, said);
                await chromium.WaitUntilAsync(
                    $"document.querySelector('#assignments tr[data-client=\"{ClientId}\"]') === null"
                    + " && document.getElementById('no-assignments').hidden === false"
                    + $" && document.querySelector('#regions .region[data-region=\"{ExitRegion}\"]').innerText.includes('{ExitId}')",
                    "the page no longer shows the client's assignment", TimeSpan.FromSeconds(60));
                var after = Path.Combine(ScreenshotDir, "topology-page-after-disconnect.png");
                await chromium.ScreenshotAsync(after);
                output.WriteLine($"screenshot after the client disconnected: {after}");
            }
            catch
            {
                output.WriteLine($"--- chromium ---\n{chromium.Log}");
                throw;
            }
        }

        // A token altered (its payload: another admin, a later expiry): 401 naming why.
        var altered = token.ToCharArray();
        altered[10] = altered[10] == 'A' ? 'B' : 'A';
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", new string(altered));
        using var tampered = await http.GetAsync($"https://{web}/api/topology");
        Assert.Equal(HttpStatusCode.Unauthorized, tampered.StatusCode);
        Assert.Contains("signature does not match", await tampered.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_page_lets_in_an_admin_certificate_and_refuses_a_node_certificate_and_a_bad_cookie_and_tokens_live_at_most_a_day()
    {
        await using var network = new TestNetwork(output);
        var web = new HostPort("127.0.0.1", NodeProcess.FreeTcpPort());
        var baseNode = network.BaseNode();
        baseNode = baseNode with { Arguments = [.. baseNode.Arguments, "--web", web.ToString()] };
        await network.StartAsync(baseNode);

        using (var admin = Client(Path.Combine(network.AdminTls, "tls.crt"), Path.Combine(network.AdminTls, "tls.key")))
        {
            var view = await TopologyAsync(admin, web);
            Assert.Equal(0, view.GetProperty("regions").GetArrayLength());
            using var page = await admin.GetAsync($"https://{web}/");
            Assert.Equal(HttpStatusCode.OK, page.StatusCode);
            Assert.Contains("<script src=\"/topology.js\"", await page.Content.ReadAsStringAsync(), StringComparison.Ordinal);
            Assert.Contains("default-src 'none'", page.Headers.GetValues("Content-Security-Policy").Single(), StringComparison.Ordinal);
        }

        var nodeTls = network.IssueNodeCertificate(Security.NodeIdentity.Base("base"));
        using (var node = Client(Path.Combine(nodeTls, "tls.crt"), Path.Combine(nodeTls, "tls.key")))
        {
            using var refused = await node.GetAsync($"https://{web}/api/topology");
            Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
            Assert.Contains("not an admin certificate", await refused.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        var (tooLong, said) = await network.RunAsync("admin", "--base", baseNode.Listen.ToString(), "--tls", network.AdminTls, "web-token", "--ttl", "25h");
        Assert.NotEqual(0, tooLong);
        Assert.Contains("a web token lives at most 24 h", said, StringComparison.Ordinal);

        using var anonymous = Client();
        using var request = new HttpRequestMessage(HttpMethod.Get, $"https://{web}/api/topology");
        request.Headers.Add("Cookie", "mydvpn_web=v1.bm90.bm90");
        using var badCookie = await anonymous.SendAsync(request);
        Assert.Equal(HttpStatusCode.Unauthorized, badCookie.StatusCode);
        Assert.Contains("the login cookie is not valid", await badCookie.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        // The bad cookie is deleted.
        Assert.Contains(badCookie.Headers.GetValues("Set-Cookie"), c => c.StartsWith("mydvpn_web=;", StringComparison.Ordinal));
    }

    /// <summary>An HTTPS client that takes the node's certificate (the operator CA is not the system's) and presents the given one.</summary>
    private static HttpClient Client(string? certificate = null, string? key = null)
    {
        var handler = new HttpClientHandler { ServerCertificateCustomValidationCallback = HttpClientHandler.DangerousAcceptAnyServerCertificateValidator };
        if (certificate is not null && key is not null)
            handler.ClientCertificates.Add(System.Security.Cryptography.X509Certificates.X509Certificate2.CreateFromPemFile(certificate, key));
        return new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(20) };
    }

    [Fact]
    public async Task A_BaseNode_without_web_makes_no_web_token_and_says_how_to_serve_the_page()
    {
        await using var network = new TestNetwork(output);
        var baseNode = network.BaseNode();
        await network.StartAsync(baseNode);
        var (exitCode, text) = await network.RunAsync("admin", "--base", baseNode.Listen.ToString(), "--tls", network.AdminTls, "web-token");
        Assert.NotEqual(0, exitCode);
        Assert.Contains("--web HOST:PORT", text, StringComparison.Ordinal);
    }

    private static async Task<JsonElement> TopologyAsync(HttpClient http, HostPort web)
    {
        using var response = await http.GetAsync($"https://{web}/api/topology");
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"/api/topology answered {(int)response.StatusCode}: {body}");
        return JsonDocument.Parse(body).RootElement.Clone();
    }

    private static IEnumerable<JsonElement> Assignments(JsonElement view) => view.GetProperty("assignments").EnumerateArray();
}
