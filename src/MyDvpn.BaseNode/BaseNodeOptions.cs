using MyDvpn.BaseNode.Web;
using MyDvpn.Common;
using MyDvpn.Hosting;

namespace MyDvpn.BaseNode;

/// <summary>The settings of <c>mydvpn base</c>: a clustered node's, and the web topology page's address (<c>--web</c>, off unless given).</summary>
public sealed class BaseNodeOptions : ClusterNodeOptions
{
    public string? Web { get; set; }

    /// <summary>Validates the node's settings, then the page's address: a port of its own, free now.</summary>
    public (ClusterNodeSettings Node, WebSettings Web) ValidateBase()
    {
        var node = Validate();
        try
        {
            if (string.IsNullOrWhiteSpace(Web))
                return (node, WebSettings.Off);
            var web = HostPort.Parse(Web, "--web");
            var taken = new[] { (node.Cluster, "--cluster"), (node.Listen, "--listen"), (node.Metrics, "--metrics") }
                .FirstOrDefault(other => other.Item1?.Port == web.Port);
            if (taken.Item1 is not null)
                throw new ConfigurationException("--web", $"port {web.Port} is {taken.Item2}'s already; the page needs a port of its own");
            EnsurePortFree(web, "--web");
            return (node, new WebSettings(web));
        }
        catch
        {
            node.Tls.Dispose();
            throw;
        }
    }
}
