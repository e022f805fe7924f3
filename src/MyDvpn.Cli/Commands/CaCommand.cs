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

    private static Command BuildIssue(TextWriter output)
    {
        var dir = new Option<string>("--dir") { Description = "The CA directory (from `mydvpn ca init`)", Required = true };
        var name = new Option<string>("--name") { Description = "Certificate name (CN): the node or admin it identifies", Required = true };
        var ips = new Option<string[]>("--ip") { Description = "IP address SAN (repeatable)", AllowMultipleArgumentsPerToken = false };
        var dnsNames = new Option<string[]>("--dns") { Description = "DNS name SAN (repeatable)" };
        var kind = new Option<CertificateKind>("--kind") { Description = "node (BaseNode/SuperNode) or admin (mydvpn admin)", DefaultValueFactory = _ => CertificateKind.Node };
        var outDir = new Option<string>("--out") { Description = "Directory for tls.crt, tls.key and ca.crt", Required = true };
        var command = new Command("issue", "Issue a node or admin certificate signed by the CA") { dir, name, ips, dnsNames, kind, outDir };
        command.SetAction(parse =>
        {
            var addresses = (parse.GetValue(ips) ?? []).Select(ip => IPAddress.TryParse(ip, out var parsed)
                ? parsed
                : throw new ConfigurationException("--ip", $"'{ip}' is not an IP address")).ToList();
            var certificate = CertificateAuthority.Issue(
                parse.GetRequiredValue(dir), parse.GetRequiredValue(name), parse.GetValue(kind), addresses,
                parse.GetValue(dnsNames) ?? [], parse.GetRequiredValue(outDir));
            output.WriteLine($"{parse.GetValue(kind).ToString().ToLowerInvariant()} certificate issued: {certificate.Subject} -> {parse.GetRequiredValue(outDir)}");
            return CliApplication.Success;
        });
        return command;
    }
}
