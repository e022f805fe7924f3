using System.Collections.Concurrent;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using MyDvpn.Protocol.Directory;
using MyDvpn.Security;

namespace MyDvpn.SuperNode.Tests;

/// <summary>
/// A BaseNode's directory service as a SuperNode sees it: it records every report, answers ListRegions
/// with a fixed list, and can be told to answer Unavailable.
/// </summary>
internal sealed class FakeDirectory(RegionList regions) : SuperNodeDirectory.SuperNodeDirectoryBase
{
    private readonly ConcurrentQueue<SuperNodeReport> reports = new();
    private int refusedReports;
    private volatile bool unavailable;

    public IReadOnlyCollection<SuperNodeReport> Reports => reports;

    public int RefusedReports => Volatile.Read(ref refusedReports);

    /// <summary>While true every call fails with <see cref="StatusCode.Unavailable"/>, as a BaseNode leaving does.</summary>
    public bool Unavailable
    {
        get => unavailable;
        set => unavailable = value;
    }

    /// <summary>What the acks tell the SuperNode: how long to wait before the next report.</summary>
    public uint ReportIntervalMs { get; set; } = 60_000;

    /// <summary>Revoked peers the directory hands out, in version order (version = index + 1).</summary>
    public List<string> RevokedPeers { get; } = [];

    /// <summary>The versions of <see cref="RevokedPeers"/> that take a peer's revocation back instead.</summary>
    public HashSet<ulong> UnrevokedVersions { get; } = [];

    public override Task<ReportAck> Report(SuperNodeReport request, ServerCallContext context)
    {
        if (unavailable)
        {
            Interlocked.Increment(ref refusedReports);
            throw Down();
        }
        reports.Enqueue(request);
        return Task.FromResult(new ReportAck { ReportIntervalMs = ReportIntervalMs, RevocationVersion = (ulong)RevokedPeers.Count });
    }

    public override Task<DeregisterAck> Deregister(DeregisterRequest request, ServerCallContext context) =>
        unavailable ? throw Down() : Task.FromResult(new DeregisterAck());

    public override Task<RegionList> ListRegions(ListRegionsRequest request, ServerCallContext context) =>
        unavailable ? throw Down() : Task.FromResult(regions);

    public override Task<RevocationList> GetRevocations(GetRevocationsRequest request, ServerCallContext context)
    {
        var list = new RevocationList { Version = (ulong)RevokedPeers.Count };
        list.Revocations.AddRange(RevokedPeers.Select((peer, index) => new Revocation
        {
            PeerId = peer,
            Version = (ulong)index + 1,
            Unrevoked = UnrevokedVersions.Contains((ulong)index + 1),
        })
            .Where(r => r.Version > request.AfterVersion));
        return unavailable ? throw Down() : Task.FromResult(list);
    }

    private static RpcException Down() => new(new Status(StatusCode.Unavailable, "test directory is down"));
}

/// <summary>
/// Real Kestrel on loopback serving a <see cref="FakeDirectory"/> over TLS with a node certificate, client
/// certificates required and checked against the operator CA, as a BaseNode serves its directory.
/// </summary>
internal static class DirectoryServer
{
    /// <param name="port">0 for any free port; a given port to come back where a stopped server was.</param>
    public static Task<TlsGrpcTestServer> StartAsync(TlsMaterial tls, FakeDirectory directory, int port = 0) =>
        TlsGrpcTestServer.StartAsync(
            tls,
            ClientCertificateMode.RequireCertificate,
            services => services.AddSingleton(directory),
            app => app.MapGrpcService<FakeDirectory>(),
            clientCertificateKind: CertificateKind.Node,
            port: port);
}
