using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using MyDvpn.Security;

namespace MyDvpn.Cli.Tests;

/// <summary>
/// Base of the tests of what <c>mydvpn admin</c> sends and prints: a fresh <typeparamref name="TAdmin"/> per test,
/// serving fixed replies and recording the requests, as the admin API of a BaseNode <c>base-1</c> on real Kestrel with
/// mutual TLS, and an admin certificate <c>ops</c> of the same operator CA to call it with.
/// </summary>
public abstract class FixedAdminApiTestKit<TAdmin> : IAsyncLifetime
    where TAdmin : MyDvpn.Protocol.Admin.Admin.AdminBase, new()
{
    private readonly TempDirectory temp = new();
    private TlsGrpcTestServer? server;
    private string baseAddress = "";

    /// <summary>The admin API the commands talk to.</summary>
    protected TAdmin Service { get; } = new();

    public async Task InitializeAsync()
    {
        CertificateAuthority.Init(temp.Sub("ca")).Dispose();
        CertificateAuthority.IssueNode(temp.Sub("ca"), NodeIdentity.Base("base-1"), [IPAddress.Loopback], [], temp.Sub("base")).Dispose();
        CertificateAuthority.IssueAdmin(temp.Sub("ca"), "ops", [], [], temp.Sub("admin")).Dispose();
        var tls = TlsMaterial.Load(temp.Sub("base"));

        server = await TlsGrpcTestServer.StartAsync(
            tls,
            ClientCertificateMode.RequireCertificate,
            services => services.AddSingleton(Service),
            app => app.MapGrpcService<TAdmin>(),
            clientCertificateKind: CertificateKind.Admin);
        baseAddress = server.Address.ToString();
    }

    public async Task DisposeAsync()
    {
        if (server is not null)
            await server.DisposeAsync();
        temp.Dispose();
    }

    /// <summary>Runs <c>mydvpn admin --base … --tls … <paramref name="command"/></c> in-process.</summary>
    protected Task<(int ExitCode, string Output, string Error)> Admin(params string[] command) =>
        AdminVia(baseAddress, command);

    /// <summary>Runs <c>mydvpn admin --base <paramref name="bases"/> --tls … <paramref name="command"/></c> in-process.</summary>
    protected Task<(int ExitCode, string Output, string Error)> AdminVia(string bases, params string[] command) =>
        CliRunner.RunAsync(["admin", "--base", bases, "--tls", temp.Sub("admin"), .. command]);

    /// <summary>The test BaseNode's HOST:PORT.</summary>
    protected string BaseAddress => baseAddress;

    /// <summary>A loopback HOST:PORT nothing listens on.</summary>
    protected static string Nowhere() => $"127.0.0.1:{Demo.NodeProcess.FreeTcpPort()}";
}
