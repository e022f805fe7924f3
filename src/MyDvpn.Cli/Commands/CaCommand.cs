using System.CommandLine;
using System.Net;
using MyDvpn.Common;
using MyDvpn.Security;

namespace MyDvpn.Cli.Commands;

/// <summary><c>mydvpn ca init|issue</c>: the operator CA and the certificates it signs.</summary>
public static class CaCommand
{
    public static Command Build(TextWriter output) => new("ca", "Operator certificate authority for TLS")
    {
        BuildInit(output),
        BuildIssue(output),
    };

    private static Command BuildInit(TextWriter output)
    {
        var dir = new Option<string>("--dir") { Description = "Directory for ca.crt and ca.key (an existing CA is never overwritten)", Required = true };
        var command = new Command("init", "Create an operator CA") { dir };
        command.SetAction(parse =>
        {
            var ca = CertificateAuthority.Init(parse.GetRequiredValue(dir));
            output.WriteLine($"CA created: {Path.Combine(parse.GetRequiredValue(dir), CertificateAuthority.CaCertFile)} ({ca.Subject}, valid until {ca.NotAfter:yyyy-MM-dd})");
            return CliApplication.Success;
        });
        return command;
    }

    /// <summary>What <c>mydvpn ca issue --role</c> takes: a BaseNode, a SuperNode of a region, or an admin.</summary>
    public enum IssueRole
    {
        Base,
        Super,
        Admin,
    }

    private static Command BuildIssue(TextWriter output)
    {
        var dir = new Option<string>("--dir") { Description = "The CA directory (from `mydvpn ca init`)", Required = true };
        var name = new Option<string>("--name")
        {
            Description = "Certificate name (CN): a node's id (a SuperNode's --id) or an admin's name",
            Required = true,
        };
        var role = new Option<IssueRole>("--role")
        {
            Description = "base (a BaseNode), super (a SuperNode of --region) or admin (mydvpn admin); a node certificate names " +
                "its role, id and region in a SAN URI (mydvpn://base/NAME, mydvpn://super/REGION/NAME)",
            Required = true,
        };
        var region = new Option<string>("--region") { Description = "The SuperNode's region (--role super only)" };
        var ips = new Option<string[]>("--ip") { Description = "IP address SAN (repeatable)", AllowMultipleArgumentsPerToken = false };
        var dnsNames = new Option<string[]>("--dns") { Description = "DNS name SAN (repeatable)" };
        var outDir = new Option<string>("--out") { Description = "Directory for tls.crt, tls.key and ca.crt", Required = true };
        var command = new Command("issue", "Issue a BaseNode, SuperNode or admin certificate signed by the CA") { dir, name, role, region, ips, dnsNames, outDir };
        command.SetAction(parse =>
        {
            var addresses = (parse.GetValue(ips) ?? []).Select(ip => IPAddress.TryParse(ip, out var parsed)
                ? parsed
                : throw new ConfigurationException("--ip", $"'{ip}' is not an IP address")).ToList();
            var caDir = parse.GetRequiredValue(dir);
            var certificateName = parse.GetRequiredValue(name);
            var destination = parse.GetRequiredValue(outDir);
            var dns = parse.GetValue(dnsNames) ?? [];
            var regionName = parse.GetValue(region);
            var chosen = parse.GetValue(role);
            if (chosen != IssueRole.Super && regionName is not null)
                throw new ConfigurationException("--region", $"only a SuperNode's certificate names a region; --role {chosen.ToString().ToLowerInvariant()} takes none");
            using var certificate = chosen switch
            {
                IssueRole.Base => CertificateAuthority.IssueNode(caDir, NodeIdentity.Base(certificateName), addresses, dns, destination),
                IssueRole.Super => CertificateAuthority.IssueNode(caDir, NodeIdentity.Super(certificateName,
                    regionName ?? throw new ConfigurationException("--region", "is required with --role super: the region the SuperNode serves (its --region)")),
                    addresses, dns, destination),
                _ => CertificateAuthority.IssueAdmin(caDir, certificateName, addresses, dns, destination),
            };
            var identity = NodeIdentity.TryRead(certificate, out var node, out _) ? $" ({node.Uri})" : "";
            output.WriteLine($"{chosen.ToString().ToLowerInvariant()} certificate issued: {certificate.Subject}{identity} -> {destination}");
            return CliApplication.Success;
        });
        return command;
    }
}
