using System.CommandLine;
using System.Globalization;
using System.Net;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using MyDvpn.Common;
using MyDvpn.Security;

namespace MyDvpn.Cli.Commands;

/// <summary><c>mydvpn ca init|issue|revoke|crl</c>: the operator CA, the certificates it signs and its revocation list.</summary>
public static class CaCommand
{
    public static Command Build(TextWriter output) => new("ca", "Operator certificate authority for TLS")
    {
        BuildInit(output),
        BuildIssue(output),
        BuildRevoke(output),
        BuildCrl(output),
    };

    /// <summary>What <c>mydvpn ca revoke --reason</c> takes (RFC 5280 reason codes).</summary>
    public enum RevokeReason
    {
        Unspecified,
        KeyCompromise,
        Superseded,
        CessationOfOperation,
        AffiliationChanged,
    }

    private static Command BuildRevoke(TextWriter output)
    {
        var dir = new Option<string>("--dir") { Description = "The CA directory (from `mydvpn ca init`)", Required = true };
        var cert = new Option<string>("--cert") { Description = "The certificate to revoke (its tls.crt, PEM or DER)" };
        var serial = new Option<string>("--serial") { Description = "The serial (hex) of a certificate this CA issued, as `openssl x509 -noout -serial` prints it" };
        var reason = EnumOption.Create<RevokeReason>("--reason",
            "Why: key-compromise, superseded, cessation-of-operation, affiliation-changed or unspecified (the default)");
        var command = new Command("revoke",
            "Revoke a node or admin certificate: records it in the CA's revocation list (ca.crl, signed, with the next CRL number); "
            + "publish the list with `mydvpn admin crl publish`") { dir, cert, serial, reason };
        command.SetAction(parse =>
        {
            var caDir = parse.GetRequiredValue(dir);
            var (file, hex) = (parse.GetValue(cert), parse.GetValue(serial));
            var why = ToX509(parse.GetValue(reason));
            var now = DateTimeOffset.UtcNow;
            var outcome = (file, hex) switch
            {
                ({ } path, null) => CaRevocations.RevokeCertificate(caDir, path, why, now),
                (null, { } text) => CaRevocations.RevokeSerial(caDir, text, why, now),
                _ => throw new ConfigurationException("--cert/--serial", "give exactly one: the certificate file, or its serial"),
            };
            output.WriteLine(outcome.AlreadyRevoked
                ? $"{outcome.Certificate.Description} (serial {outcome.Revocation.Serial}) was revoked already at {outcome.Revocation.RevokedAt:u}; {outcome.CrlPath} is unchanged (CRL number {outcome.List.Number})."
                : $"Revoked {outcome.Certificate.Description} (serial {outcome.Revocation.Serial}, {outcome.Revocation.ReasonText}).");
            output.WriteLine($"Revocation list: {outcome.CrlPath}, CRL number {outcome.List.Number}, {outcome.List.Revoked.Count} revoked.");
            output.WriteLine($"Publish it: mydvpn admin crl publish {outcome.CrlPath}  (nodes that cannot reach the directory: --crl {outcome.CrlPath})");
            return CliApplication.Success;
        });
        return command;
    }

    private static Command BuildCrl(TextWriter output)
    {
        var dir = new Option<string>("--dir") { Description = "The CA directory (from `mydvpn ca init`)", Required = true };
        var show = new Option<bool>("--show") { Description = "Only print the current list; do not write a new one" };
        var command = new Command("crl",
            "Write the CA's revocation list (ca.crl) again with the next CRL number (an empty one if there is none) and print it") { dir, show };
        command.SetAction(parse =>
        {
            var caDir = parse.GetRequiredValue(dir);
            var path = Path.Combine(caDir, CaRevocations.CrlFile);
            CertificateRevocationList list;
            if (parse.GetValue(show))
            {
                list = CaRevocations.Current(caDir) ?? throw new CertificateException(
                    $"the CA in '{caDir}' has no revocation list yet; write one with `mydvpn ca crl --dir {caDir}`");
            }
            else
            {
                (list, path) = CaRevocations.Reissue(caDir, DateTimeOffset.UtcNow);
            }

            output.Write(Describe(list, path, CaRevocations.Issued(caDir)));
            return CliApplication.Success;
        });
        return command;
    }

    /// <summary>The list in words: number, time, and each revoked certificate with what the CA recorded of it.</summary>
    public static string Describe(CertificateRevocationList list, string path, IReadOnlyList<IssuedCertificate> issued)
    {
        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture, $"{path}: CRL number {list.Number}, written {list.ThisUpdate:u}, {list.Revoked.Count} revoked");
        foreach (var revoked in list.Revoked.OrderBy(r => r.RevokedAt).ThenBy(r => r.Serial, StringComparer.Ordinal))
        {
            var what = issued.LastOrDefault(c => c.Serial == revoked.Serial)?.Description ?? "(not in the CA's record of issued certificates)";
            text.AppendLine(CultureInfo.InvariantCulture, $"  {revoked.Serial}  {revoked.RevokedAt:u}  {revoked.ReasonText}  {what}");
        }

        return text.ToString();
    }

    private static X509RevocationReason? ToX509(RevokeReason reason) => reason switch
    {
        RevokeReason.KeyCompromise => X509RevocationReason.KeyCompromise,
        RevokeReason.Superseded => X509RevocationReason.Superseded,
        RevokeReason.CessationOfOperation => X509RevocationReason.CessationOfOperation,
        RevokeReason.AffiliationChanged => X509RevocationReason.AffiliationChanged,
        _ => null,
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
        var role = EnumOption.Create<IssueRole>("--role",
            "base (a BaseNode), super (a SuperNode of --region) or admin (mydvpn admin); a node certificate names " +
            "its role, id and region in a SAN URI (mydvpn://base/NAME, mydvpn://super/REGION/NAME)");
        role.Required = true;
        var region = new Option<string>("--region") { Description = "The SuperNode's region (--role super only)" };
        var ips = new Option<string[]>("--ip") { Description = "IP address SAN (repeatable)", AllowMultipleArgumentsPerToken = false };
        var dnsNames = new Option<string[]>("--dns") { Description = "DNS name SAN (repeatable)" };
        var outDir = new Option<string>("--out") { Description = "Directory for tls.crt, tls.key and ca.crt", Required = true };
        var days = new Option<int>("--days")
        {
            Description = $"Days the certificate is valid (default {CertificateAuthority.DefaultValidity.TotalDays:0}); renew by issuing again before then",
            DefaultValueFactory = _ => (int)CertificateAuthority.DefaultValidity.TotalDays,
        };
        days.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<int>() is < 1 or > 3650)
                result.AddError("--days must be 1 to 3650");
        });
        var command = new Command("issue", "Issue a BaseNode, SuperNode or admin certificate signed by the CA") { dir, name, role, region, ips, dnsNames, outDir, days };
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
            var validity = TimeSpan.FromDays(parse.GetValue(days));
            if (chosen != IssueRole.Super && regionName is not null)
                throw new ConfigurationException("--region", $"only a SuperNode's certificate names a region; --role {chosen.ToString().ToLowerInvariant()} takes none");
            using var certificate = chosen switch
            {
                IssueRole.Base => CertificateAuthority.IssueNode(caDir, NodeIdentity.Base(certificateName), addresses, dns, destination, validity),
                IssueRole.Super => CertificateAuthority.IssueNode(caDir, NodeIdentity.Super(certificateName,
                    regionName ?? throw new ConfigurationException("--region", "is required with --role super: the region the SuperNode serves (its --region)")),
                    addresses, dns, destination, validity),
                _ => CertificateAuthority.IssueAdmin(caDir, certificateName, addresses, dns, destination, validity),
            };
            var identity = NodeIdentity.TryRead(certificate, out var node, out _) ? $" ({node.Uri})" : "";
            output.WriteLine($"{chosen.ToString().ToLowerInvariant()} certificate issued: {certificate.Subject}{identity} -> {destination}, " +
                $"serial {CertificateRevocationList.SerialOf(certificate)}, valid until {certificate.NotAfter.ToUniversalTime():u}");
            return CliApplication.Success;
        });
        return command;
    }
}
