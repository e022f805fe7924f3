using System.Net;
using System.Net.Sockets;
using MyDvpn.BaseNode.Web;
using MyDvpn.Common;

namespace MyDvpn.BaseNode.Tests.Web;

public sealed class BaseNodeOptionsTests : IDisposable
{
    private readonly TempDirectory temp = new();
    private readonly Pki pki;

    public BaseNodeOptionsTests() => pki = new Pki(temp);

    public void Dispose() => temp.Dispose();

    [Fact]
    public void Without_web_the_page_is_off()
    {
        var (node, web) = Options(web: null).ValidateBase();
        using (node.Tls)
            Assert.Equal(WebSettings.Off, web);
    }

    [Fact]
    public void With_web_the_page_is_served_there()
    {
        var port = FreePort();
        var (node, web) = Options($"127.0.0.1:{port}").ValidateBase();
        using (node.Tls)
            Assert.Equal(new HostPort("127.0.0.1", port), web.Address);
    }

    [Theory]
    [InlineData("nope", "is not HOST:PORT")]
    [InlineData("127.0.0.1:0", "has no valid port")]
    public void A_web_address_that_is_not_one_is_refused_naming_web(string value, string expected)
    {
        var error = Assert.Throws<ConfigurationException>(() => Options(value).ValidateBase());
        Assert.Equal("--web", error.Setting);
        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_web_port_another_listener_has_is_refused_naming_both()
    {
        var options = Options(web: null);
        options.Web = options.Listen;
        var error = Assert.Throws<ConfigurationException>(() => options.ValidateBase());
        Assert.Equal("--web", error.Setting);
        Assert.Contains("--listen", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_web_port_in_use_is_refused_naming_web()
    {
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        var error = Assert.Throws<ConfigurationException>(() => Options($"127.0.0.1:{((IPEndPoint)taken.LocalEndpoint).Port}").ValidateBase());
        Assert.Equal("--web", error.Setting);
        Assert.Contains("already in use", error.Message, StringComparison.Ordinal);
    }

    private BaseNodeOptions Options(string? web) => new()
    {
        DataDir = temp.Sub("data"),
        Cluster = $"127.0.0.1:{FreePort()}",
        Listen = $"127.0.0.1:{FreePort()}",
        Tls = pki.IssueBase("base-1"),
        Web = web,
    };

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
